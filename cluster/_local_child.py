"""Child side of `cluster.local_server`: tie the server's life to maker's, then run it.

``python cluster/_local_child.py PARENT_PID ARGS...`` (run as a script: no package import) asks the kernel to send SIGTERM
when the parent goes away (Linux ``PR_SET_PDEATHSIG``), so even a ``kill -9`` of maker
leaves no server behind, then runs ``python -m llama_cpp.server ARGS...`` in this same
process.  Elsewhere the death signal is unavailable and the parent's own cleanup
(context manager, atexit, process group) has to do.
"""

from __future__ import annotations

import sys

# Run as a script, this file's folder is sys.path[0]; drop it so that sibling modules
# (cluster/secrets.py...) cannot shadow the standard library in the server.
if sys.path and sys.path[0] and __name__ == "__main__":
    sys.path.pop(0)

import os  # noqa: E402
import runpy  # noqa: E402
import signal  # noqa: E402

PR_SET_PDEATHSIG = 1


def tie_to_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        raise SystemExit(1)


def main() -> None:
    parent = int(sys.argv[1])
    tie_to_parent(parent)
    sys.argv = ["llama_cpp.server", *sys.argv[2:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
