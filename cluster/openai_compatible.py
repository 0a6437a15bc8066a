"""OpenAI-compatible endpoints (``openai/NAME`` with an ``api_base``) over plain aiohttp.

Why a second client: per sample, litellm spends ~9 ms of CPU here and the official `openai`
SDK ~5 ms (request schemas, httpx's connection pool); one POST of a JSON body through
aiohttp costs ~0.6 ms (`bench/client_cpu.py`).  Endpoints that already speak OpenAI's
protocol -- vLLM, llama.cpp's server, the embedded local model, `maker sim-server`, a
proxy -- need nothing else, so this client speaks it directly: POST ``/completions`` (a
text prompt) or ``/chat/completions`` (messages), read ``choices`` and ``usage``.  HTTP
failures become the exceptions below, named like the SDK's so `fault_kind` counts them the
same; retries, back-off, Retry-After, rate limits, `n`, `Sample` fields and cost are
`cluster.transport`'s, shared with the litellm client.  Every other provider string stays
on litellm (`cluster.clients.make_client` decides).

Example:
    >>> client = OpenAICompatibleClient(EndpointConfig("openai/sim", api_base="http://127.0.0.1:8000/v1"))  # doctest: +SKIP
    >>> asyncio.run(client.complete([SampleRequest("Q: 2+2?\\nA:", 0.0, 8, seed=1)]))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .protocol import SampleRequest
from .transport import EndpointConfig, PooledClient, Reply

__all__ = ["OpenAICompatibleClient", "uses_openai_compatible"]


def uses_openai_compatible(model: str, api_base: str | None) -> bool:
    """Whether `model` at `api_base` goes through this client: an ``openai/`` name at an explicit base URL."""
    return bool(api_base) and model.startswith("openai/")


class EndpointError(Exception):
    """A failed HTTP exchange; `headers` are the response's (Retry-After lives there)."""

    status_code: int | None = None

    def __init__(self, message: str, headers: Mapping[str, str] | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.headers = headers
        if status_code is not None:
            self.status_code = status_code


class RateLimitError(EndpointError):
    """429."""


class InternalServerError(EndpointError):
    """5xx."""


class AuthenticationError(EndpointError):
    """401 or 403: retrying will not help."""


class BadRequestError(EndpointError):
    """Any other 4xx."""


class APITimeoutError(EndpointError):
    """No complete answer within `timeout_s`."""


class APIConnectionError(EndpointError):
    """Refused, reset or dropped connection."""


class BadBody(EndpointError):
    """The response body is not the JSON of a completion (cut off, or not JSON at all)."""


def _status_error(status: int, text: str, headers: Mapping[str, str]) -> EndpointError:
    message = f"HTTP {status}: {text[:200]}"
    if status == 429:
        return RateLimitError(message, headers, status)
    if status >= 500:
        return InternalServerError(message, headers, status)
    if status in (401, 403):
        return AuthenticationError(message, headers, status)
    return BadRequestError(message, headers, status)


class OpenAICompatibleClient(PooledClient):
    """A `ModelClient` for an OpenAI-compatible endpoint (chat or text completions)."""

    retryable = (RateLimitError, InternalServerError, APITimeoutError, APIConnectionError, BadBody)

    def __init__(self, config: EndpointConfig) -> None:
        super().__init__(config)
        bases = [b.rstrip("/") for b in (config.api_base or "", *config.api_bases)]
        self._urls = [{True: b + "/chat/completions", False: b + "/completions"} for b in bases]
        self._model = config.model.split("/", 1)[1]
        key = config.api_key or os.environ.get("OPENAI_API_KEY") or "sk-local-no-key"
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        self._sessions: dict[int, tuple[Any, AsyncIterator[Any]]] = {}

    async def _session(self) -> Any:
        """One aiohttp session per event loop (its connections belong to that loop), closed
        when the loop shuts down (`asyncio.run` closes async generators: `_keep` does it)."""
        loop = id(asyncio.get_running_loop())
        entry = self._sessions.get(loop)
        if entry is None:
            import aiohttp

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
            )
            keeper = _keep(session)
            await keeper.__anext__()
            entry = self._sessions[loop] = (session, keeper)
            self._sessions = {loop: entry}  # a new loop: the old one closed its session on shutdown
        return entry[0]

    async def call(self, request: SampleRequest, n: int) -> Any:
        import aiohttp

        cfg = self.config
        chat = not isinstance(request.prompt, str)
        body: dict[str, Any] = {"model": self._model, "temperature": request.temperature, "max_tokens": request.max_tokens}
        body["messages" if chat else "prompt"] = request.prompt
        if n > 1:
            body["n"] = n
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.send_seed:
            body["seed"] = request.seed & 0x7FFFFFFF  # 31 bits: some servers keep seeds in an int32
        session = await self._session()
        try:
            urls = self._urls[request.variant % len(self._urls)]  # replicas: one prompt variant per server
            async with session.post(urls[chat], data=json.dumps(body), headers=self._headers) as response:
                data = await response.read()
                if response.status != 200:
                    raise _status_error(response.status, data.decode("utf-8", "replace"), response.headers)
                return data
        except asyncio.TimeoutError:
            raise APITimeoutError(f"no answer within {cfg.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"Connection error: {type(exc).__name__}: {exc}") from None

    def read(self, response: Any) -> Reply:
        try:
            data = json.loads(response)
            choices = []
            for choice in data["choices"]:
                text = choice.get("text")
                if text is None:
                    text = (choice.get("message") or {}).get("content") or ""
                choices.append((str(text), str(choice.get("finish_reason") or "stop")))
            usage = data.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            return Reply(choices, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                         data.get("id"), cached_tokens=int(details.get("cached_tokens") or 0))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadBody(f"{type(exc).__name__}: {exc}") from None


async def _keep(session: Any) -> AsyncIterator[Any]:
    """Hold `session` open until the event loop shuts its async generators down, then close it."""
    try:
        yield session
        await asyncio.Event().wait()  # pragma: no cover - never resumed
    finally:
        await session.close()
