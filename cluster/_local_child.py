"""Child side of `cluster.local_server`: tie the server's life to maker's, then run it.

``python cluster/_local_child.py PARENT_PID [--no-extra-buffers] ARGS...`` (run as a script:
no package import) asks the kernel to send SIGTERM when the parent goes away (Linux
``PR_SET_PDEATHSIG``), so even a ``kill -9`` of maker leaves no server behind, then runs
``python -m llama_cpp.server ARGS...`` in this same process.  Elsewhere the death signal is
unavailable and the parent's own cleanup (context manager, atexit, process group) has to do.

``--no-extra-buffers`` loads the model with llama.cpp's ``use_extra_bufts = False``: no
weight repacking into "extra" buffer types.  On CPUs with AMX, the AMX buffer type is one
of those, and its matrix multiply dies with a general protection fault at ``ldtilecfg``
(llama.cpp issue #20824); without extra buffer types the model runs on the AVX kernels and
answers.  llama_cpp.server has no option for it, so the child wraps
``llama_model_default_params``, which `llama_cpp.Llama` calls for every model it loads.
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


NO_EXTRA_BUFFERS = "--no-extra-buffers"


def without_extra_buffers() -> None:
    """Make every model llama_cpp loads from now on use ``use_extra_bufts = False``."""
    import llama_cpp.llama_cpp as lib

    default_params = lib.llama_model_default_params

    def model_params():  # type: ignore[no-untyped-def]
        params = default_params()
        params.use_extra_bufts = False
        return params

    if not any(name == "use_extra_bufts" for name, *_ in getattr(lib.llama_model_params, "_fields_", ())):
        print("[maker] this llama_cpp has no use_extra_bufts; extra buffer types stay on", file=sys.stderr)
        return

    lib.llama_model_default_params = model_params


def main() -> None:
    parent = int(sys.argv[1])
    tie_to_parent(parent)
    args = sys.argv[2:]
    if args[:1] == [NO_EXTRA_BUFFERS]:
        args = args[1:]
        without_extra_buffers()
    sys.argv = ["llama_cpp.server", *args]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
