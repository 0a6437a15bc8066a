"""OpenAI-compatible endpoints (``openai/NAME`` with an ``api_base``) over plain aiohttp.

Why a second client: per sample, litellm spends ~9 ms of CPU here and the official `openai`
SDK ~5 ms (request schemas, httpx's connection pool); one POST of a JSON body through
aiohttp costs ~0.6 ms (`bench/client_cpu.py`).  Endpoints that already speak OpenAI's
protocol -- vLLM, llama.cpp's server, the embedded local model, `maker sim-server`, a
proxy -- need nothing else, so this client speaks it directly: POST ``/completions`` (a
text prompt) or ``/chat/completions`` (messages), read ``choices`` and ``usage``.  HTTP
failures become the exceptions below, named like the SDK's so `fault_kind` counts them the
same; retries, back-off, Retry-After, rate limits, `n`, `Sample` fields and cost are
`cluster.http.transport`'s, shared with the litellm client.  Every other provider string stays
on litellm (`cluster.clients.make_client` decides).

Reading a reply (`choice_text`, `json_reply`) lives here too, and the litellm client
reads its responses with the same functions: both paths must turn every reply real
providers send into the same (text, finish_reason), or a vote would depend on the client
path.  What is read:

* `content` as a string, or as a list of parts (Mistral, reasoning models):
  ``[{"type": "thinking", ...}, {"type": "text", "text": "42"}]`` -- only text parts
  (``text``, ``output_text``) are the answer; thinking and reasoning parts are not, and a
  list with no text part is an empty reply (red-flagged ``empty``), never its Python repr;
* ``message.refusal`` (OpenAI's structured refusal): finish reason ``refusal``;
* tool or function calls in a reply the provider says stopped normally (some servers
  say ``stop``): finish reason ``tool_calls`` / ``function_call``;
* ``usage.completion_tokens_details.reasoning_tokens``: hidden reasoning tokens.

Every finish reason other than a normal stop (`NORMAL_STOPS`) is red-flagged by the
judge (`maker.engine.red_flags.unfinished`; ``length`` by ``overlong``).

Examples:
    >>> choice_text({"message": {"content": [{"type": "thinking", "thinking": "41?"}, {"type": "text", "text": "42"}]},
    ...              "finish_reason": "stop"})
    ('42', 'stop')
    >>> choice_text({"message": {"content": None, "refusal": "I can't"}, "finish_reason": "stop"})
    ('', 'refusal')
    >>> client = OpenAICompatibleClient(EndpointConfig("openai/sim", api_base="http://127.0.0.1:8000/v1"))  # doctest: +SKIP
    >>> asyncio.run(client.complete([SampleRequest("Q: 2+2?\\nA:", 0.0, 8, seed=1)]))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..protocol import SampleRequest
from .transport import EndpointConfig, PooledClient, Reply

__all__ = [
    "NORMAL_STOPS", "TEXT_PARTS", "OpenAICompatibleClient", "choice_text", "content_text", "json_reply", "reasoning_tokens",
    "uses_openai_compatible",
]


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
        seed = cfg.seed_for(request, n)
        if seed is not None:
            body["seed"] = seed
        session = await self._session()
        try:
            urls = self._urls[request.variant % len(self._urls)]  # replicas: one prompt variant per server
            async with session.post(urls[chat], data=json.dumps(body), headers=self._headers) as response:
                try:
                    data = await response.read()
                except asyncio.CancelledError:  # past the deadline: drop the connection, never reuse it
                    response.close()
                    raise
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
            return json_reply(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadBody(f"{type(exc).__name__}: {exc}") from None



#: Finish reasons that mean "the model finished its answer" (compared in lower case):
#: OpenAI's ``stop``, and the spellings of the same event other servers and providers
#: send (TGI's ``eos_token``, llama.cpp's older ``eos``, Anthropic's ``end_turn`` /
#: ``stop_sequence``, Gemini's ``STOP``, Cohere's ``COMPLETE``).
NORMAL_STOPS = frozenset({"stop", "eos", "eos_token", "end_turn", "stop_sequence", "complete"})
#: Content-part types that carry the answer's text.
TEXT_PARTS = frozenset({"text", "output_text"})


def _get(obj: Any, name: str) -> Any:
    """A field of a JSON dict or of a response object (litellm's pydantic models)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def content_text(content: Any) -> str:
    """The answer text of a message's `content`: a string as is; a list of parts joined
    from its text parts only; anything else (None, a number) empty."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif _get(part, "type") in TEXT_PARTS:
                text = _get(part, "text")
                out.append(text if isinstance(text, str) else content_text(text))
        return "".join(out)
    if content is not None and _get(content, "type") in TEXT_PARTS:  # one part, not in a list
        return content_text([content])
    return ""


def choice_text(choice: Any) -> tuple[str, str]:
    """(answer text, finish reason) of one choice of a chat or text completion."""
    reason = _get(choice, "finish_reason")
    finish = str(reason) if reason else "stop"  # null: not said (older servers); a normal stop
    # litellm maps every finish reason it does not know (and Cohere's ERROR, Gemini's
    # MALFORMED_FUNCTION_CALL...) to "stop", keeping the provider's own as native_finish_reason
    native = _get(_get(choice, "provider_specific_fields") or {}, "native_finish_reason")
    if native and finish == "stop" and str(native).lower() not in NORMAL_STOPS:
        finish = str(native)
    text = _get(choice, "text")
    if text is not None:  # a text completion
        return content_text(text), finish
    message = _get(choice, "message")
    if message is None:
        return "", finish
    answer = content_text(_get(message, "content"))
    if _get(message, "refusal"):
        return answer, "refusal"
    if finish.lower() in NORMAL_STOPS:
        if _get(message, "tool_calls"):
            finish = "tool_calls"
        elif _get(message, "function_call"):
            finish = "function_call"
    return answer, finish


def reasoning_tokens(usage: Any) -> int:
    """Hidden reasoning tokens in a usage object (0 when the provider does not say)."""
    details = _get(usage, "completion_tokens_details") if usage is not None else None
    value = _get(details, "reasoning_tokens") if details is not None else None
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def cached_tokens(usage: Any) -> int:
    """Prompt tokens the provider read from its cache (``prompt_tokens_details.cached_tokens``;
    0 when it does not say): billed at its cache-read rate."""
    details = _get(usage, "prompt_tokens_details") if usage is not None else None
    value = _get(details, "cached_tokens") if details is not None else None
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def json_reply(data: Any) -> Reply:
    """A completion's JSON (a dict) read into a `Reply` (priced by the client from its usage).

    Raises KeyError, TypeError, ValueError or AttributeError when it is not a completion."""
    choices = [choice_text(choice) for choice in data["choices"]]
    usage = data.get("usage") or {}
    return Reply(choices, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                 data.get("id"), cached_tokens=cached_tokens(usage), reasoning_tokens=reasoning_tokens(usage))


async def _keep(session: Any) -> AsyncIterator[Any]:
    """Hold `session` open until the event loop shuts its async generators down, then close it."""
    try:
        yield session
        await asyncio.Event().wait()  # pragma: no cover - never resumed
    finally:
        await session.close()
