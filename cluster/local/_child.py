"""Child side of `cluster.local.server`: tie the server's life to maker's, then run it.

``python cluster/local/_child.py PARENT_PID [--no-extra-buffers] [--bounded-cache] ARGS...`` (run as a script:
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

``--bounded-cache`` makes the RAM prompt cache count what it keeps (`bounded_cache`):
without it each server grew to 3-4 GB over a long run.
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


BOUNDED_CACHE = "--bounded-cache"


def bounded_cache() -> None:
    """Make llama_cpp.server's RAM prompt cache (``--cache_type ram``) keep only what a
    restore reads, and count all it keeps against ``--cache_size``.

    Why: llama-cpp-python's `LlamaRAMCache` counts a cached prompt state as its llama.cpp
    state (the KV cells, ~4 MB for a 200-token chase prompt on SmolLM2-135M) but also keeps
    the logits of every prompt token (`LlamaState.scores`: tokens x 49,152 vocabulary x
    4 bytes, ~35 MB for the same prompt), uncounted; a 256 MB cache held ~60 states and
    ~2.5 GB.  With ``--logits_all False`` (as maker serves) those rows are never read back:
    a restored state is always decoded again before sampling (``_requires_eval``), which
    refreshes the logits.  So each state keeps one row (it broadcasts into the rows
    `load_state` fills) and its size counts every array it holds."""
    import llama_cpp
    from llama_cpp.llama import LlamaState

    class BoundedRAMCache(llama_cpp.LlamaRAMCache):  # type: ignore[misc,name-defined]
        @property
        def cache_size(self) -> int:
            return sum(_state_bytes(key, state) for key, state in self.cache_state.items())

        def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
            if len(value.scores) > 1:
                value = LlamaState(value.input_ids, value.scores[-1:].copy(), value.n_tokens, value.llama_state,
                                   value.llama_state_size, value.seed)
            super().__setitem__(key, value)

    llama_cpp.LlamaRAMCache = BoundedRAMCache


def _state_bytes(key: tuple[int, ...], state) -> int:  # type: ignore[no-untyped-def]
    """What one cached prompt state holds: its llama.cpp state, its logits and token arrays, its key."""
    return int(state.llama_state_size) + state.scores.nbytes + state.input_ids.nbytes + 8 * len(key)


def main() -> None:
    parent = int(sys.argv[1])
    tie_to_parent(parent)
    args = sys.argv[2:]
    while args[:1] and args[0] in (NO_EXTRA_BUFFERS, BOUNDED_CACHE):
        flag, args = args[0], args[1:]
        if flag == NO_EXTRA_BUFFERS:
            without_extra_buffers()
        else:
            bounded_cache()
    sys.argv = ["llama_cpp.server", *args]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
