"""Hosted (or any OpenAI-compatible) models through litellm, the one place it is used.

litellm is imported lazily: importing it costs seconds, and sim runs never need it.
The retry policy is data (`RETRYABLE`), not scattered `except` blocks; transport failures
that survive the retries come back as `Sample.error`, which the runner red-flags.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ModelConfigError
from .protocol import Sample, SampleRequest
from .ratelimit import RateLimits
from .secrets import redact


def import_litellm() -> Any:
    """Import litellm configured for offline use: local price table, no telemetry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True
    return litellm


def retryable_errors(litellm: Any) -> tuple[type[BaseException], ...]:
    """The errors worth another try: rate limits, timeouts, dropped connections, 5xx."""
    return (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )


@dataclass(frozen=True)
class LiteLLMConfig:
    """How to reach a model: litellm model string plus transport limits."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    concurrency: int = 16
    max_retries: int = 4
    timeout_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    rpm: float | None = None  # most requests per minute (retries included); None: no limit
    tpm: float | None = None  # most prompt + reply tokens per minute; None: no limit
    send_seed: bool = True  # pass each draw's seed (servers that honour it repeat a draw exactly)
    stop: tuple[str, ...] = ()  # where a reply ends (the task's `stop`, e.g. a newline for one-line answers)


def check_model_settings(model: str, api_base: str | None = None) -> None:
    """Fail before any spending when the provider's credentials are missing.

    Raises ModelConfigError naming the missing environment variable, in one line.
    """
    if api_base:
        return
    litellm = import_litellm()
    try:
        env = litellm.validate_environment(model=model)
    except Exception as exc:  # litellm raises many types for unknown providers
        raise ModelConfigError(f"{model}: litellm cannot use this model ({_one_line(exc)})", model=model) from None
    missing = env.get("missing_keys") or []
    if missing:
        names = ", ".join(missing)
        raise ModelConfigError(f"{model}: set {names} in the environment (missing)", model=model)


class LiteLLMClient:
    """A `ModelClient` over `litellm.acompletion` / `atext_completion`."""

    def __init__(self, config: LiteLLMConfig) -> None:
        self.config = config
        self.name = config.model
        self._litellm = import_litellm()
        self._retryable = retryable_errors(self._litellm)
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self.limits = RateLimits(config.rpm, config.tpm)
        self._text_clients: dict[int, Any] = {}

    def _text_client(self, api_key: str) -> Any:
        """One AsyncOpenAI client per event loop for text completions at an `api_base`.

        litellm builds (and never closes) a fresh HTTP client for every text-completion
        call to a custom base URL, leaking a connection per sample; handing it one client
        keeps a local server's connections alive and reused."""
        loop = id(asyncio.get_running_loop())
        client = self._text_clients.get(loop)
        if client is None:
            import openai

            client = openai.AsyncOpenAI(
                base_url=self.config.api_base, api_key=api_key, max_retries=0, timeout=self.config.timeout_s
            )
            self._text_clients = {loop: client}  # a new loop: the old client's connections are dead
        return client

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:  # a semaphore serves one event loop
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
            self._semaphore_loop = loop
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, request: SampleRequest) -> Sample:
        assert self._semaphore is not None
        cfg = self.config
        started = time.perf_counter()
        error = "unknown"
        faults: list[str] = []
        estimate = _prompt_chars(request.prompt) // 4 + 1
        for attempt in range(cfg.max_retries + 1):
            await self.limits.before(estimate)
            async with self._semaphore:
                try:
                    response = await self._call(request)
                    sample = self._to_sample(response, time.perf_counter() - started)
                    sample.faults = tuple(faults)
                    self.limits.after(estimate, (sample.tokens_in or estimate) + sample.tokens_out)
                    return sample
                except self._retryable as exc:
                    error = f"{type(exc).__name__}: {_one_line(exc)}"
                    faults.append(fault_kind(exc))
                    wait = _retry_after(exc)
                except Exception as exc:  # not retryable: bad request, auth, parsing...
                    error = f"{type(exc).__name__}: {_one_line(exc)}"
                    faults.append(fault_kind(exc))
                    break
            if attempt < cfg.max_retries:
                backoff = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * (0.5 + random.random())
                await asyncio.sleep(max(wait or 0.0, backoff))
        return Sample(
            "", self.name, finish_reason="error", latency_s=time.perf_counter() - started, error=error, faults=tuple(faults)
        )

    async def _call(self, request: SampleRequest) -> Any:
        cfg = self.config
        common: dict[str, Any] = {
            "model": cfg.model,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": cfg.timeout_s,
            "num_retries": 0,
        }
        if cfg.stop:
            common["stop"] = list(cfg.stop)
        if cfg.send_seed:
            common["seed"] = request.seed & 0x7FFFFFFF  # 31 bits: some servers keep seeds in an int32
        if cfg.api_base:
            common["api_base"] = cfg.api_base
            # A local server needs no key, but a proxy may: use the provider's if it is set.
            env_key = os.environ.get("OPENAI_API_KEY") if cfg.model.startswith("openai/") else None
            common["api_key"] = cfg.api_key or env_key or "sk-local-no-key"
        elif cfg.api_key:
            common["api_key"] = cfg.api_key
        if isinstance(request.prompt, str):
            if cfg.api_base and cfg.model.startswith("openai/"):
                common["client"] = self._text_client(common["api_key"])
            return await self._litellm.atext_completion(prompt=request.prompt, **common)
        return await self._litellm.acompletion(messages=request.prompt, **common)

    def _to_sample(self, response: Any, latency: float) -> Sample:
        choice = response.choices[0]
        text = getattr(choice, "text", None)
        if text is None:
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None) or ""
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        hidden = getattr(response, "_hidden_params", None) or {}
        if not isinstance(hidden, dict):
            hidden = {}
        if "response_cost" in hidden:  # litellm priced it already (None: unpriced); ~10% of a call's CPU
            cost = float(hidden["response_cost"] or 0.0)
        else:
            try:
                cost = float(self._litellm.completion_cost(completion_response=response) or 0.0)
            except Exception:  # unpriced model (local server, sim-server): cost unknown, count 0
                cost = 0.0
        cached = bool(hidden.get("cache_hit"))
        return Sample(
            text=str(text),
            model=self.name,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            finish_reason=str(getattr(choice, "finish_reason", None) or "stop"),
            latency_s=latency,
            cost_usd=cost,
            response_id=getattr(response, "id", None),
            cached=cached,
        )


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
    if any(word in message for word in _BAD_JSON):
        return "bad_json"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500 or names & {"InternalServerError", "ServiceUnavailableError"}:
        return "server_error"
    if names & {"AuthenticationError", "PermissionDeniedError"}:
        return "auth"
    if isinstance(status, int) and 400 <= status < 500 or "BadRequestError" in names:
        return "bad_request"
    return "other"


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return min(60.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _prompt_chars(prompt: str | list[dict[str, str]]) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(m.get("content") or "") for m in prompt)


def _one_line(exc: BaseException) -> str:
    text = redact(" ".join(str(exc).split()))
    return text[:300]
