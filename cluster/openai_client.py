"""OpenAI-compatible endpoints (``openai/NAME`` with an ``api_base``) through the `openai` SDK.

Why a second client: litellm spends ~9 ms of CPU per call on routing, logging objects and
pricing; for an endpoint that already speaks OpenAI's protocol (vLLM, llama.cpp's server,
the embedded local model, `maker sim-server`, a proxy) none of that is needed.  This
client sends the request with the official async client and reads the JSON body itself
(no pydantic model per response), and prices tokens from litellm's offline table looked
up once per model, so a sample costs about a quarter of the CPU (`bench/client_cpu.py`).
Retries, back-off, Retry-After, rate limits, `n`, fault kinds, `Sample` fields and cost
are `cluster.transport`'s, shared with the litellm client.  Every other provider string
stays on litellm (`cluster.clients.make_client` decides).

Example:
    >>> client = OpenAIClient(EndpointConfig("openai/sim", api_base="http://127.0.0.1:8000/v1"))  # doctest: +SKIP
    >>> asyncio.run(client.complete([SampleRequest("Q: 2+2?\\nA:", 0.0, 8, seed=1)]))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from .protocol import SampleRequest
from .transport import EndpointConfig, PooledClient, Reply, cached_price

__all__ = ["OpenAIClient", "uses_openai_client"]


def uses_openai_client(model: str, api_base: str | None) -> bool:
    """Whether `model` at `api_base` goes through this client: an ``openai/`` name at an explicit base URL."""
    return bool(api_base) and model.startswith("openai/")


class BadBody(ValueError):
    """The response body is not the JSON of a completion (cut off, or not JSON at all)."""


class OpenAIClient(PooledClient):
    """A `ModelClient` for an OpenAI-compatible endpoint (chat or text completions)."""

    def __init__(self, config: EndpointConfig) -> None:
        import openai

        super().__init__(config)
        self._openai = openai
        self.retryable = (
            openai.RateLimitError,
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
            BadBody,  # a cut-off body: litellm reports it as a 500 and retries it too
        )
        self._model = config.model.split("/", 1)[1]
        self._clients: dict[int, Any] = {}
        self._price: Any = None

    def _client(self) -> Any:
        """One AsyncOpenAI client per event loop (its connections belong to that loop)."""
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None:
            cfg = self.config
            key = cfg.api_key or os.environ.get("OPENAI_API_KEY") or "sk-local-no-key"
            client = self._openai.AsyncOpenAI(base_url=cfg.api_base, api_key=key, max_retries=0, timeout=cfg.timeout_s)
            self._clients = {loop: client}  # a new loop: the old client's connections are dead
        return client

    async def call(self, request: SampleRequest, n: int) -> Any:
        cfg = self.config
        body: dict[str, Any] = {"model": self._model, "temperature": request.temperature, "max_tokens": request.max_tokens}
        if n > 1:
            body["n"] = n
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.send_seed:
            body["seed"] = request.seed & 0x7FFFFFFF  # 31 bits: some servers keep seeds in an int32
        client = self._client()
        if isinstance(request.prompt, str):
            raw = await client.completions.with_raw_response.create(prompt=request.prompt, **body)
        else:
            raw = await client.chat.completions.with_raw_response.create(messages=request.prompt, **body)
        return raw.http_response

    def read(self, response: Any) -> Reply:
        try:
            data = json.loads(response.content)
            choices = []
            for choice in data["choices"]:
                text = choice.get("text")
                if text is None:
                    text = (choice.get("message") or {}).get("content") or ""
                choices.append((str(text), str(choice.get("finish_reason") or "stop")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadBody(f"{type(exc).__name__}: {exc}") from None
        usage = data.get("usage") or {}
        return Reply(choices, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), None, data.get("id"))

    def price(self, tokens_in: int, tokens_out: int) -> float:
        if self._price is None:
            self._price = cached_price(self.config.model)
        return self._price(tokens_in, tokens_out)
