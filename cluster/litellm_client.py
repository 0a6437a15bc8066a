"""Hosted (or any OpenAI-compatible) models through litellm, the one place it is used.

litellm is imported lazily: importing it costs seconds, and sim runs never need it.
The retry policy is data (`RETRYABLE`), not scattered `except` blocks; transport failures
that survive the retries come back as `Sample.error`, which the runner red-flags.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .errors import ModelConfigError
from .pricing import import_litellm
from .protocol import SampleRequest
from .transport import EndpointConfig, PooledClient, Reply, fault_kind, one_line

__all__ = ["LiteLLMClient", "LiteLLMConfig", "check_model_settings", "fault_kind", "import_litellm", "retryable_errors"]


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
    `cluster.transport.PooledClient`)."""

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

    async def call(self, request: SampleRequest, n: int) -> Any:
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

    def read(self, response: Any) -> Reply:
        choices = []
        for choice in response.choices:
            text = getattr(choice, "text", None)
            if text is None:
                message = getattr(choice, "message", None)
                text = getattr(message, "content", None) or ""
            choices.append((str(text), str(getattr(choice, "finish_reason", None) or "stop")))
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", None) or {}
        details = getattr(usage, "prompt_tokens_details", None)
        cached = details.get("cached_tokens") if isinstance(details, dict) else getattr(details, "cached_tokens", None)
        return Reply(  # priced by `PooledClient.price` from usage, as the OpenAI-compatible client prices it
            choices,
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
            getattr(response, "id", None),
            bool(hidden.get("cache_hit")) if isinstance(hidden, dict) else False,
            int(cached or 0),
        )
