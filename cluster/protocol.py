"""The model boundary: one small protocol every back end implements.

The runner only ever hands a client a batch of `SampleRequest`s and gets back one
`Sample` per request, in order.  Transport failures are data (`Sample.error`), not
exceptions, because a failed sample is one red-flagged vote, not a failed run; a client
raises only when it cannot work at all (`ModelConfigError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from maker.tasks.base import Prompt, StepInput


@dataclass(frozen=True, slots=True)
class SampleRequest:
    """One draw.  `seed` names the draw uniquely within a run, so a seeded simulator gives
    the same reply to the same draw however the run was scheduled, resumed or
    speculated.  `step` carries the premise for back ends that answer from ground truth,
    `variant` which of the task's prompt variants `prompt` is (0: the canonical one)."""

    prompt: Prompt
    temperature: float
    max_tokens: int
    seed: int
    step: StepInput | None = None
    variant: int = 0


@dataclass(slots=True)
class Sample:
    """One reply and what it cost.  `error` is set when the call failed after retries;
    `faults` names, in order, every failed attempt behind this sample (retried or not),
    so a run can say what its endpoint did to it, kind by kind (see `fault_kind`).

    `finish_reason` is the provider's, except ``refusal`` (the message carried a
    `refusal`) and ``tool_calls`` / ``function_call`` (a reply that calls a tool although
    the provider said ``stop``): anything but a normal stop is red-flagged.
    `reasoning_tokens` counts the hidden reasoning tokens among `tokens_out` (billed as
    output).  `shared_request` names the HTTP request when it drew several samples (``n``
    choices): samples with the same value shared one request; None when the sample had its
    own.  `temperature_sent` is False when the client did not send the requested
    temperature (litellm drops it for models that refuse it, e.g. OpenAI's o-series): the
    provider's default applied, and the log records the temperature as null.
    `cost_usd` is what the provider bills for this reply (cached prompt tokens at the
    cache-read rate, `cached_tokens` of `tokens_in`); `abandoned_usd` estimates what calls
    maker gave up on behind this sample were billed (a timed-out attempt, a cancelled
    request: the provider may still serve them) at their prompt's cost, at least."""

    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    cost_usd: float = 0.0
    error: str | None = None
    response_id: str | None = None
    cached: bool = False
    faults: tuple[str, ...] = ()
    cached_tokens: int = 0
    abandoned_usd: float = 0.0
    reasoning_tokens: int = 0
    shared_request: str | None = None
    temperature_sent: bool = True

    def __post_init__(self) -> None:
        # A reply is decoded JSON, where "\\ud800" is a lone surrogate: no log, JSON
        # output or MCP reply can hold one, so it is written as its escape instead.
        if isinstance(self.text, str) and not self.text.isascii():
            self.text = storable(self.text)
        if isinstance(self.error, str) and not self.error.isascii():
            self.error = storable(self.error)


def storable(text: str) -> str:
    """`text` as it can be written as UTF-8: each lone surrogate as its ``\\udXXX`` escape.

        >>> storable("42\\ud800")
        '42\\\\ud800'
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@runtime_checkable
class ModelClient(Protocol):
    """Anything that turns a batch of requests into samples, in request order."""

    name: str

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]: ...
