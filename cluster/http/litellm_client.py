"""Hosted (or any OpenAI-compatible) models through litellm, the one place it is used.

litellm is imported lazily: importing it costs seconds, and sim runs never need it.
The retry policy is data (`RETRYABLE`), not scattered `except` blocks; transport failures
that survive the retries come back as `Sample.error`, which the runner red-flags.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from maker.errors import ModelConfigError, one_line

from ..pricing import import_litellm
from ..protocol import SampleRequest
from .openai_compatible import cached_tokens, choice_text, json_reply, reasoning_tokens
from .transport import EndpointConfig, PooledClient, Reply, fault_kind

__all__ = [
    "LiteLLMClient", "LiteLLMConfig", "UnreadableReply", "check_model_settings", "fault_kind", "import_litellm",
    "retryable_errors", "stop_sent", "temperature_sent",
]


def received_response(message: str) -> dict[str, Any] | None:
    """The provider's response dict from litellm's "Invalid response object" error message
    (``received_args={'response_object': {...}, ...}``), read as a Python literal (never
    evaluated), or None when it is not there whole."""
    import ast

    at = message.find("'response_object': {")
    if at < 0:
        return None
    start = message.index("{", at)
    depth, quote, escaped = 0, "", False
    for end in range(start, len(message)):
        ch = message[end]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                try:
                    data = ast.literal_eval(message[start:end + 1])
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    return None
                return data if isinstance(data, dict) and "choices" in data else None
    return None


class UnreadableReply(Exception):
    """litellm could not read a reply (its response model refused it) and neither could we:
    not retried (the provider would send the same again), one error sample."""


def temperature_sent(model: str, temperature: float) -> bool:
    """Whether litellm sends `temperature` to `model` (maker sets ``drop_params``, so a
    model that refuses a temperature -- OpenAI's o-series and gpt-5 take only 1 -- gets
    the request without it, silently).  Asked of litellm's own parameter mapping
    (`get_optional_params`), offline; True when litellm cannot say (an unknown provider)."""
    return _sent(model, "temperature", float(temperature))


def stop_sent(model: str) -> bool:
    """Whether litellm sends stop sequences to `model` (gpt-5 models get requests without
    them, silently: replies then run past the task's `stop`); True when litellm cannot say."""
    return _sent(model, "stop", ("\n",))


def _sent(model: str, name: str, value: Any) -> bool:
    key = (model, name, value)
    known = _SENT.get(key)
    if known is None:
        litellm = import_litellm()
        try:
            from litellm.utils import get_optional_params

            provider_model, provider, _, _ = litellm.get_llm_provider(model)
            params = get_optional_params(model=provider_model, custom_llm_provider=provider, drop_params=True,
                                         **{name: list(value) if isinstance(value, tuple) else value})
            known = any(name in sent for sent in params)  # 'stop' may go out as 'stop_sequences'
        except Exception:  # litellm cannot map this model's parameters: assume what was asked is sent
            known = True
        _SENT[key] = known
    return known


_SENT: dict[tuple[str, str, Any], bool] = {}


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


#: The litellm client's settings are the shared endpoint settings (one owner for each).
LiteLLMConfig = EndpointConfig


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
        raise ModelConfigError(f"{model}: litellm cannot use this model ({one_line(exc)})", model=model) from None
    missing = env.get("missing_keys") or []
    if missing:
        names = ", ".join(missing)
        raise ModelConfigError(f"{model}: set {names} in the environment (missing)", model=model)


class LiteLLMClient(PooledClient):
    """A `ModelClient` over `litellm.acompletion` / `atext_completion` (retries, `n`, pacing:
    `cluster.http.transport.PooledClient`)."""

    def __init__(self, config: EndpointConfig) -> None:
        super().__init__(config)
        self._litellm = import_litellm()
        self.retryable = retryable_errors(self._litellm)
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

    def sends_temperature(self, temperature: float) -> bool:
        return temperature_sent(self.config.model, temperature)

    async def call(self, request: SampleRequest, n: int) -> Any:
        try:
            return await self._call(request, n)
        except self.retryable as exc:
            # litellm's response model takes `content` as a string only: a reply whose content
            # is a list of parts (Mistral-style thinking + text, through an OpenAI-like
            # provider) fails its validation and comes back as a 500.  Read it ourselves.
            if "Invalid response object" not in str(exc):
                raise
            data = received_response(str(exc))
            if data is None:
                raise UnreadableReply(f"litellm could not read the reply: {one_line(exc)[:200]}") from None
            return data

    async def _call(self, request: SampleRequest, n: int) -> Any:
        cfg = self.config
        common: dict[str, Any] = {
            "model": cfg.model,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": cfg.timeout_s,
            "num_retries": 0,
        }
        if n > 1:
            common["n"] = n
        if cfg.stop:
            common["stop"] = list(cfg.stop)
        seed = cfg.seed_for(request, n)
        if seed is not None:
            common["seed"] = seed
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

    def read(self, response: Any) -> Reply:
        if isinstance(response, dict):  # recovered from litellm's error (see `call`): priced from the table
            return json_reply(response)
        choices = [choice_text(choice) for choice in response.choices]
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", None) or {}
        return Reply(  # priced by `PooledClient.price` from usage, as the OpenAI-compatible client prices it
            choices,
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
            getattr(response, "id", None),
            bool(hidden.get("cache_hit")) if isinstance(hidden, dict) else False,
            cached_tokens=cached_tokens(usage),
            reasoning_tokens=reasoning_tokens(usage),
        )
