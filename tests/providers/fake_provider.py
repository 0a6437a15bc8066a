"""A fake OpenAI-compatible provider whose behaviour is a *personality*.

Why: maker must read every reply real providers send (copies in `n` choices, content as
a list of parts, odd finish reasons, refusals, rate limits, cut-off bodies...).  Each such
behaviour is one small function here, and `tests/providers/test_conformance.py` runs every
one through both client paths, `maker.vote` and `maker run`, against one expected outcome.
A new provider quirk costs one personality and one row of that table.

A personality is ``fn(call: Call) -> Answer``: it sees one request (path, parsed JSON
body, headers, how many requests came before) and says what the server does -- status,
headers, a JSON body (or raw bytes), a delay before the headers, and optionally a body
sent in chunks with a pause between them (a trickling server).  `completion` builds the
usual OpenAI body (chat or text completion, one choice per ``n``), so most personalities
are one line::

    def copies_n(call: Call) -> Answer:  # one draw copied into every choice of an n > 1 request
        return completion(call, ["42"] if call.n == 1 else ["41"] * call.n)

    with FakeProvider(copies_n) as server:
        maker.vote("What is 6*7?", [ModelSpec("openai/fake", api_base=server.url)], k=3, key="integer")
        server.calls  # every request as received (bodies included)

The server listens on 127.0.0.1 only, on a free port, in a background thread; it is
bounded (`max_requests`; a request past it gets a 503 and the server shuts down; request
bodies over 1 MB are refused) and stops itself after `lifetime_s` seconds even if a test
forgets to close it.  It serves ``/v1/chat/completions``, ``/v1/completions`` and the same
paths without ``/v1`` (a base URL without ``/v1``), plus ``GET /v1/models``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Call", "FakeProvider", "Personality", "completion", "text_of"]


@dataclass(frozen=True)
class Call:
    """One request as the server received it.  `index`: how many requests came before it."""

    path: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    index: int

    @property
    def chat(self) -> bool:
        """A chat completion (``messages``), not a text completion (``prompt``)."""
        return self.path.endswith("/chat/completions")

    @property
    def n(self) -> int:
        n = self.body.get("n") or 1
        return n if isinstance(n, int) and n > 0 else 1

    @property
    def prompt(self) -> str:
        """The prompt text: a text completion's prompt, or the chat messages' contents joined."""
        if not self.chat:
            return str(self.body.get("prompt", ""))
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []) if isinstance(m, dict))


@dataclass(frozen=True)
class Answer:
    """What the server does with one request.

    `json` is dumped as the body unless `raw` (bytes, sent as is) is given.  `delay_s`
    waits before the status line; `chunks` (with `chunk_pause_s` between them) replaces
    the body: the headers go out at once, then each chunk (a trickling server sends one
    byte every few seconds).  `close` drops the connection instead of answering."""

    status: int = 200
    json: Any = None
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunks: Sequence[bytes] = ()
    chunk_pause_s: float = 0.0
    close: bool = False

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.json is None else json.dumps(self.json).encode()


Personality = Callable[[Call], Answer]


def completion(
    call: Call,
    texts: Sequence[Any],
    *,
    finish_reason: str | Sequence[str] | None = "stop",
    usage: Mapping[str, Any] | None = None,
    message: Mapping[str, Any] | None = None,
    response_id: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """The OpenAI body for `call`: one choice per text (a chat message's `content`, or a text
    completion's `text`; a text may be any JSON value, e.g. a list of content parts).

    `finish_reason`: one for every choice or one per choice; `message`: extra fields of each
    chat message (``refusal``, ``tool_calls``); `usage`: the usage object (default: prompt
    words and reply characters / 4, honestly summed)."""
    reasons = [finish_reason] * len(texts) if finish_reason is None or isinstance(finish_reason, str) else list(finish_reason)
    choices = []
    for i, (text, reason) in enumerate(zip(texts, reasons)):
        if call.chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text, **(message or {})},
                            "finish_reason": reason})
        else:
            choices.append({"index": i, "text": text, "finish_reason": reason})
    if usage is None:
        out = sum(len(text_of(t)) // 4 + 1 for t in texts)
        prompt = len(call.prompt.split()) + 1
        usage = {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}
    body = {
        "id": response_id if response_id is not None else f"fake-{call.index}",
        "object": "chat.completion" if call.chat else "text_completion",
        "created": 0,
        "model": str(call.body.get("model", "fake")),
        "choices": choices,
        "usage": dict(usage),
    }
    return Answer(status, body, headers=dict(headers or {}))


def text_of(content: Any) -> str:
    """The visible text of a content value (a string, or a list of parts' ``text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class FakeProvider:
    """The server (a context manager): ``with FakeProvider(personality) as server: ... server.url``.

    `url` is the base URL with ``/v1``, `root` without it; `calls` lists every request
    received (a `Call`, body parsed).  At most `max_requests` are answered; the server
    stops itself `lifetime_s` seconds after it started."""

    def __init__(self, personality: Personality, *, max_requests: int = 500, lifetime_s: float = 600.0) -> None:
        self.personality = personality
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.calls: list[Call] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def bodies(self) -> list[dict[str, Any]]:
        """The request bodies received, in order."""
        with self._lock:
            return [c.body for c in self.calls]

    # -- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._serve, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError(f"the fake provider did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(30)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to __enter__
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=1 << 20)
        for prefix in ("/v1", ""):
            app.router.add_post(prefix + "/chat/completions", self._handle)
            app.router.add_post(prefix + "/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), self.lifetime_s)
        except asyncio.TimeoutError:
            pass
        finally:
            await runner.cleanup()

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake-provider"}]})

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        raw = await request.read()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                body = {}
        except ValueError:
            body = {}
        with self._lock:
            call = Call(request.path, body, dict(request.headers), len(self.calls))
            self.calls.append(call)
        if call.index >= self.max_requests:
            assert self._stop is not None
            self._stop.set()
            return web.json_response({"error": {"message": "fake provider: request limit reached"}}, status=503)
        answer = self.personality(call)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.close:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        headers = {"Content-Type": "application/json", **answer.headers}
        if not answer.chunks:
            return web.Response(status=answer.status, body=answer.body(), headers=headers)
        response = web.StreamResponse(status=answer.status, headers=headers)
        await response.prepare(request)
        for i, chunk in enumerate(answer.chunks):
            if i and answer.chunk_pause_s:
                await asyncio.sleep(answer.chunk_pause_s)
            await response.write(chunk)
        await response.write_eof()
        return response


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `predicate` until true or `timeout_s` passes (a server's counters settle after a reply)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
