"""What every HTTP model client shares: batching, `n`, retries, Retry-After, faults by kind.

Why one module: the litellm client (any provider string) and the OpenAI-compatible
client (`openai_compatible`, ~10x cheaper in CPU per call) must retry, back off, pace
themselves and account for samples identically, or a run's log would depend on which
client drew it.  A client supplies three things -- the retryable exception tuple, one
call (`call(request, n)`), and how to read a response (`read(response) -> Reply`); the
loop here does the rest.

Drawing with `n`: samples of one batch that share the *same* prompt object, temperature
and token cap (a step's votes after the temperature-0 first one) go out as one request
with ``n`` choices, so the prompt is sent, read and billed once.  Sample i of such a
request gets ``response_id = "<id>#i"`` (distinct draws, visibly from one request), the
prompt's tokens go to sample 0 only (tokens and cost sum to what the provider billed), the
reply tokens are split in proportion to each reply's length, and a failed attempt's fault
is recorded on sample 0 only (fault counts stay one per request the endpoint failed).  A
provider that returns fewer choices than asked ignores ``n``: that is logged once, the
missing samples are drawn one request each, and the client never sends ``n`` again.

Choices of one request must be independent draws.  Each sample of such a request carries
``shared_request`` (one id per HTTP request, in the step log), and the request carries no
``seed`` (OpenAI's API has one seed per request, not per choice, and one seed for n
choices is what makes vLLM (#10852) and TensorRT-LLM (#212) copy one draw into every
choice) unless the server derives one per choice (`EndpointConfig.seed_per_choice`:
`maker sim-server` does).  A request above temperature 0 whose choices come back
byte-identical is a server caught copying: the judge counts the copies as one vote
(`non_independent`), and this client logs it once and draws one request per sample from
then on, each with its own seed.

Example:
    >>> retry_after_s({"retry-after-ms": "1500"})
    1.5
    >>> retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0)
    10.0
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
import random
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maker.errors import one_line

from ..gather import gather
from ..pricing import Price
from ..protocol import Sample, SampleRequest
from .ratelimit import InFlightLimit, RateLimits

log = logging.getLogger("maker.cluster")

#: The longest a server's Retry-After (any form) may make one retry wait, in seconds.
RETRY_AFTER_CAP_S = 60.0


@dataclass(frozen=True)
class EndpointConfig:
    """How to reach a model: its model string plus transport limits (both clients)."""

    model: str
    api_base: str | None = None
    api_bases: tuple[str, ...] = ()  # replicas of api_base (OpenAI-compatible client): variant v goes to v % (1 + len)
    api_key: str | None = None
    concurrency: int = 16  # most HTTP requests in flight at once (a request with n choices is one); fewer while
    # calls miss their deadline (cluster.http.ratelimit.InFlightLimit)
    max_retries: int = 4
    timeout_s: float = 60.0  # each attempt's deadline, headers to last byte (seconds)
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    rpm: float | None = None  # most requests per minute (retries included); None: no limit
    tpm: float | None = None  # most prompt + reply tokens per minute; None: no limit
    send_seed: bool = True  # pass each draw's seed (servers that honour it repeat a draw exactly)
    stop: tuple[str, ...] = ()  # where a reply ends (the task's `stop`, e.g. a newline for one-line answers)
    use_n: bool = True  # draw same-prompt samples of a batch as one request with n choices
    price: Price | None = None  # what the tokens cost (None: litellm's offline table, looked up once)
    #: the server derives a distinct seed per choice of an n-request from its one `seed`
    #: (maker sim-server); otherwise n-requests carry no seed (see the module docstring)
    seed_per_choice: bool = False

    def seed_for(self, request: SampleRequest, n: int) -> int | None:
        """The `seed` to send with a request for `n` choices of `request`, or None for none."""
        if not self.send_seed or (n > 1 and not self.seed_per_choice):
            return None
        return request.seed & 0x7FFFFFFF  # 31 bits: some servers keep seeds in an int32


@dataclass
class Reply:
    """One response, read: each choice's (text, finish reason) (`openai_compatible.choice_text`),
    usage for the whole request (`cached_tokens`: prompt tokens the provider read from its
    cache, billed at the cache-read rate; `reasoning_tokens`: the hidden ones among
    `tokens_out`, billed as output) and identity.  The client prices it (`PooledClient.price`)."""

    choices: list[tuple[str, str]]
    tokens_in: int
    tokens_out: int
    response_id: str | None
    cached: bool = False
    cached_tokens: int = 0
    reasoning_tokens: int = 0


class PooledClient:
    """The shared half of an HTTP `ModelClient`; subclasses set `retryable` and define
    `call(request, n) -> response` and `read(response) -> Reply`."""

    retryable: tuple[type[BaseException], ...] = ()

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.name = config.model
        self.limits = RateLimits(config.rpm, config.tpm)
        self._inflight: InFlightLimit | None = None
        self._inflight_loop: asyncio.AbstractEventLoop | None = None
        self.limit_lowered = False  # said once, when a missed deadline first lowers the in-flight limit
        self.n_ignored = not config.use_n  # set once a provider is seen to ignore n (or to copy draws)
        self.copies_seen = False  # set once a provider copied one draw into several choices
        self._price: Price | None = config.price
        self._chars = 0  # prompt characters and tokens of answered single-prompt requests:
        self._tokens = 0  # how many tokens a character is, for an abandoned call's estimate

    async def call(self, request: SampleRequest, n: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, response: Any) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def unit_price(self) -> Price:
        """This model's `Price`: `EndpointConfig.price`, else litellm's offline table (unknown: 0, `known` False)."""
        if self._price is None:
            from ..pricing import price_of

            self._price = price_of(self.config.model)
        return self._price

    def price(self, tokens_in: int, tokens_out: int, cached: int = 0) -> float:
        """USD the provider bills for these tokens (`cached` prompt tokens at the cache-read rate)."""
        return self.unit_price.cost(tokens_in, tokens_out, cached)

    def prompt_tokens(self, request: SampleRequest) -> int:
        """The prompt's tokens, estimated from its characters at the ratio this client has
        measured on answered requests (4 characters a token before any answer)."""
        chars = prompt_chars(request.prompt)
        ratio = self._tokens / self._chars if self._chars and self._tokens else 0.25
        return max(1, round(chars * ratio))

    def prompt_cost(self, request: SampleRequest) -> float:
        """What a call maker abandoned is billed at least: its prompt, uncached (an estimate)."""
        return self.price(self.prompt_tokens(request), 0)

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """One sample per request, in order; same-prompt requests share one call (see module doc)."""
        loop = asyncio.get_running_loop()
        if self._inflight is None or self._inflight_loop is not loop:  # a limit serves one event loop
            self._inflight = InFlightLimit(self.config.concurrency, self.config.timeout_s)
            self._inflight_loop = loop
        # Before any request is timed: the first lookup imports litellm (seconds, blocking
        # the event loop), which once timed out requests already in flight.
        self.unit_price  # noqa: B018
        groups = self._groups(requests)
        results = await gather(*(self._group(requests, g) for g in groups))
        out: list[Sample | None] = [None] * len(requests)
        for group, samples in zip(groups, results):
            for i, sample in zip(group, samples):
                out[i] = sample
        return out  # type: ignore[return-value]

    def _groups(self, requests: Sequence[SampleRequest]) -> list[list[int]]:
        if self.n_ignored or len(requests) < 2:
            return [[i] for i in range(len(requests))]
        by_key: dict[tuple[int, float, int], list[int]] = {}
        for i, r in enumerate(requests):
            by_key.setdefault((id(r.prompt), r.temperature, r.max_tokens), []).append(i)
        return list(by_key.values())

    async def _group(self, requests: Sequence[SampleRequest], group: list[int]) -> list[Sample]:
        samples = await self._attempts(requests[group[0]], len(group))
        if len(samples) < len(group):  # the provider ignored n: draw the rest one by one
            if not self.n_ignored:
                self.n_ignored = True
                log.warning("%s returned %d of %d choices: it ignores n; drawing one request per sample from now on",
                            self.name, len(samples), len(group))
            rest = await gather(*(self._attempts(requests[i], 1) for i in group[len(samples):]))
            samples += [s[0] for s in rest]
        samples = samples[: len(group)]
        asked = requests[group[0]].temperature
        sent = asked if self.sends_temperature(asked) else None  # None: the provider's default, not 0
        if len(samples) > 1 and not self.copies_seen and copied(samples, sent):
            self.copies_seen = self.n_ignored = True
            log.warning("%s copied one draw into several choices of an n=%d request at temperature %s: the copies "
                        "count as one vote; drawing one request per sample from now on", self.name, len(samples),
                        "not sent" if sent is None else f"{sent:g}")
        return samples

    async def _attempts(self, request: SampleRequest, n: int) -> list[Sample]:
        """Up to 1 + max_retries attempts of one request; failures come back as error samples.

        Each attempt ends by its deadline (`EndpointConfig.timeout_s`), however the server
        sends its answer: a client library's own timeout is per read, so a server that
        trickles one byte every few seconds would hold it forever.  A call past its
        deadline is cancelled, which closes its connection (a server that cancels work
        stops then), and counts against the in-flight limit (`cluster.http.ratelimit.InFlightLimit`)."""
        assert self._inflight is not None
        cfg = self.config
        started = time.perf_counter()
        error = "unknown"
        faults: list[str] = []
        abandoned = 0.0  # attempts given up on after sending (timeouts): billed, estimated
        estimate = prompt_chars(request.prompt) // 4 + 1
        for attempt in range(cfg.max_retries + 1):
            await self.limits.before(estimate)
            wait: float | None = None
            slot = await self._inflight.acquire()
            sent_at = time.perf_counter()
            latency: float | None = None
            missed = False
            try:
                response = await asyncio.wait_for(self.call(request, n), cfg.timeout_s)
                reply = self.read(response)
                if not reply.choices:
                    raise ValueError("the response has no choices")
            except asyncio.TimeoutError:  # the deadline (or the library's own timeout, which is shorter)
                missed = True
                error = f"Timeout: no complete answer within {cfg.timeout_s:g} s"
                faults.append("timeout")
                abandoned += self.prompt_cost(request)  # sent, then abandoned: the provider may serve (and bill) it
            except self.retryable as exc:
                error = f"{type(exc).__name__}: {one_line(exc)}"
                faults.append(fault_kind(exc))
                missed = faults[-1] == "timeout"
                if missed:  # sent, then abandoned: the provider may serve (and bill) it
                    abandoned += self.prompt_cost(request)
                wait = retry_after_s(_headers(exc))
            except Exception as exc:  # not retryable: bad request, auth, parsing...
                error = f"{type(exc).__name__}: {one_line(exc)}"
                faults.append(fault_kind(exc))
                break
            else:
                latency = time.perf_counter() - sent_at
                samples = self._samples(reply, time.perf_counter() - started, n)
                samples[0].faults = tuple(faults)
                samples[0].abandoned_usd = abandoned
                if reply.tokens_in > 0:
                    self._chars += prompt_chars(request.prompt)
                    self._tokens += reply.tokens_in
                if not self.sends_temperature(request.temperature):
                    for sample in samples:
                        sample.temperature_sent = False
                self.limits.after(estimate, (reply.tokens_in or estimate) + reply.tokens_out)
                return samples
            finally:
                busy = self._inflight.in_flight
                if await self._inflight.release(slot, latency, missed) and not self.limit_lowered:
                    self.limit_lowered = True
                    log.warning("%s: a call missed its %g s deadline with %d in flight; keeping at most %d in flight "
                                "while answers come late (adapts back up to %d)", self.name, cfg.timeout_s, busy,
                                int(self._inflight.limit), self._inflight.ceiling)
            if attempt < cfg.max_retries:
                backoff = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * (0.5 + random.random())
                await asyncio.sleep(max(wait or 0.0, backoff))
        latency = time.perf_counter() - started
        return [
            Sample("", self.name, finish_reason="error", latency_s=latency, error=error, faults=tuple(faults) if i == 0 else (),
                   abandoned_usd=abandoned if i == 0 else 0.0)
            for i in range(n)
        ]

    def sends_temperature(self, temperature: float) -> bool:
        """Whether a request at `temperature` carries it (False: the client drops it and the
        provider's default applies; see `LiteLLMClient`)."""
        return True

    def _samples(self, reply: Reply, latency: float, n: int) -> list[Sample]:
        choices = reply.choices[:n]
        if n == 1 or len(choices) == 1:  # one sample: usage and cost are its own
            text, finish = choices[0]
            cost = self.price(reply.tokens_in, reply.tokens_out, reply.cached_tokens)
            return [Sample(text, self.name, reply.tokens_in, reply.tokens_out, finish, latency, cost,
                           response_id=reply.response_id, cached=reply.cached, cached_tokens=reply.cached_tokens,
                           reasoning_tokens=reply.reasoning_tokens)]
        outs = split_tokens(reply.tokens_out, [len(t) for t, _ in choices])
        thinking = split_tokens(reply.reasoning_tokens, [1] * len(choices))  # hidden: no length to weigh by
        shared = secrets.token_hex(8)  # one id per HTTP request, unique in a run
        ins = [reply.tokens_in] + [0] * (len(choices) - 1)
        cached = [reply.cached_tokens] + [0] * (len(choices) - 1)
        costs = [self.price(i, o, c) for i, o, c in zip(ins, outs, cached)]
        rid = reply.response_id
        return [
            Sample(text, self.name, ins[i], outs[i], finish, latency, costs[i],
                   response_id=f"{rid}#{i}" if rid is not None else None, cached=reply.cached, cached_tokens=cached[i],
                   reasoning_tokens=thinking[i], shared_request=shared)
            for i, (text, finish) in enumerate(choices)
        ]


def copied(samples: Sequence[Sample], temperature: float | None) -> bool:
    """Whether the choices of one request above temperature 0 (or at a temperature not sent:
    None) hold the same non-empty reply twice (byte-identical, any length): one draw copied,
    not independent draws."""
    if temperature is not None and temperature <= 0:
        return False
    seen: set[tuple[str, str]] = set()
    for s in samples:  # only choices of one request (a server that ignored n had the rest drawn alone)
        if s.shared_request is None or s.error is not None or not s.text.strip():  # empty ones are flagged anyway
            continue
        if (s.shared_request, s.text) in seen:
            return True
        seen.add((s.shared_request, s.text))
    return False


def split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """`total` tokens shared out in proportion to `weights` (integers summing to `total`).

    >>> split_tokens(10, [1, 1, 2])
    [2, 2, 6]
    """
    weight = sum(weights)
    if weight <= 0:
        weights, weight = [1] * len(weights), len(weights)
    shares = [total * w // weight for w in weights]
    for i in range(total - sum(shares)):  # the remainder, one token each from the last
        shares[-1 - i % len(shares)] += 1
    return shares


#: Words in an exception's message that mean the reply body was not valid JSON (litellm
#: reports a cut-off body as a 500, which would otherwise hide what happened).
_BAD_JSON = ("Unterminated", "Expecting", "JSONDecodeError", "Extra data", "Invalid control character")


def fault_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong with one attempt, for counting by kind.

    litellm folds connection resets and unparsable bodies into InternalServerError, so the
    exception's class alone would count three different endpoint faults as one."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc)
    if "RateLimitError" in names:
        return "rate_limited"
    if names & {"Timeout", "APITimeoutError", "TimeoutError"}:
        return "timeout"
    if "APIConnectionError" in names or "Connection error" in message:
        return "connection"
    if "JSONDecodeError" in names or any(word in message for word in _BAD_JSON):
        return "bad_json"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500 or names & {"InternalServerError", "ServiceUnavailableError"}:
        return "server_error"
    if names & {"AuthenticationError", "PermissionDeniedError"}:
        return "auth"
    if isinstance(status, int) and 400 <= status < 500 or "BadRequestError" in names:
        return "bad_request"
    return "other"


#: A delay in a Retry-After header: ASCII digits (RFC 9110 delay-seconds; a fraction is tolerated).
_DELAY = re.compile(r"[0-9]{1,9}(?:\.[0-9]+)?", re.ASCII)


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None, cap: float = RETRY_AFTER_CAP_S) -> float | None:
    """How long a server asked us to wait, in seconds, capped at `cap`; None if it did not say.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI and Azure), then ``Retry-After``
    in both RFC 9110 forms: delay-seconds, or an HTTP date (wait until then; a past date
    means 0).  `now` is the Unix time to measure a date from (default: the clock)."""
    if not headers:
        return None
    get = headers.get
    ms = get("retry-after-ms") or get("Retry-After-Ms")
    if ms is not None and _DELAY.fullmatch(ms.strip()):
        return max(0.0, min(cap, float(ms) / 1000.0))
    value = get("retry-after") or get("Retry-After")
    if value is None:
        return None
    if _DELAY.fullmatch(value.strip()):  # delay-seconds: ASCII digits only ("nan", "inf", "-5" are no delay)
        return max(0.0, min(cap, float(value)))
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, min(cap, when.timestamp() - (time.time() if now is None else now)))


def _headers(exc: BaseException) -> Mapping[str, str] | None:
    headers = getattr(exc, "headers", None)  # ours (openai_compatible); litellm's hang off .response
    return headers if headers is not None else getattr(getattr(exc, "response", None), "headers", None)


def prompt_chars(prompt: str | list[dict[str, str]]) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(m.get("content") or "") for m in prompt)
