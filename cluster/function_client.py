"""`FunctionClient(fn)`: any plain function as a model.

Why: a user's own model (a local pipeline, an in-house endpoint, a deterministic solver
used as a draft) and every test double should plug in without writing a `ModelClient`,
as httpx's ``MockTransport(handler)`` lets a function stand in for a transport.
``fn(prompt, temperature, seed) -> reply text`` may be sync or async; `prompt` is what the
task's `prompt()` returned (a string for completion style, a list of chat messages for
chat style).

What maker cannot know about a function it says it does not know: token counts and cost
are 0 in the log unless `fn` returns a `Sample` (then its numbers are kept), and the
results are *not* labelled simulated unless the caller says ``simulated=True`` (a
function that answers from ground truth is a simulator; one that calls a model is not).

A function that raises does not crash the run: the sample carries the error (one failed
call, which the engine counts like a dead endpoint's) -- as for any `ModelClient`.

    >>> import asyncio
    >>> from maker.cluster.protocol import SampleRequest
    >>> client = FunctionClient(lambda prompt, temperature, seed: "42", name="answer")
    >>> asyncio.run(client.complete([SampleRequest("q?", 0.0, 10, seed=1)]))[0].text
    '42'

`--model py:pkg.module:factory` builds a client from user code on every worker (see
`cluster.clients`); the factory may return a `ModelClient` or a plain function, which is
wrapped in a `FunctionClient`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Union

from .protocol import Prompt, Sample, SampleRequest
from .secrets import redact

#: (prompt, temperature, seed) -> reply text (or a Sample), sync or async
ModelFunction = Callable[[Prompt, float, int], Union[str, Sample, Awaitable[Union[str, Sample]]]]


class FunctionClient:
    """A `ModelClient` whose replies come from ``fn(prompt, temperature, seed)``.

    `name` is the model name the log records (default: the function's name);
    `simulated` says whether its results must be labelled simulated (default False);
    `concurrency` bounds how many calls of an async `fn` run at once (sync functions
    run one at a time, in the worker's event loop)."""

    def __init__(self, fn: ModelFunction, *, name: str | None = None, simulated: bool = False,
                 concurrency: int = 16) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionClient needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or f"fn:{getattr(fn, '__qualname__', type(fn).__name__)}"
        self.simulated = simulated
        self.concurrency = max(1, concurrency)

    async def _one(self, request: SampleRequest, gate: asyncio.Semaphore) -> Sample:
        async with gate:
            started = time.perf_counter()
            try:
                out = self.fn(request.prompt, request.temperature, request.seed)
                if inspect.isawaitable(out):
                    out = await out
            except Exception as exc:  # the user's function: its failure is one failed sample
                return Sample("", self.name, finish_reason="error", latency_s=time.perf_counter() - started,
                              error=redact(f"{type(exc).__name__}: {exc}"), faults=("function_error",))
            latency = time.perf_counter() - started
            if isinstance(out, Sample):
                return out
            if not isinstance(out, str):
                return Sample("", self.name, finish_reason="error", latency_s=latency,
                              error=f"the model function returned {type(out).__name__}, not str", faults=("function_error",))
            return Sample(out, self.name, latency_s=latency)

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        gate = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._one(r, gate) for r in requests)))

    def __repr__(self) -> str:
        return f"FunctionClient({self.name!r})"


__all__ = ["FunctionClient", "ModelFunction"]
