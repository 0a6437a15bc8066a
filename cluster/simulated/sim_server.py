"""`maker sim-server`: the simulator behind a real OpenAI-compatible HTTP endpoint.

Why: the in-process simulator (`sim:P`) skips the whole transport -- HTTP, litellm,
retries, timeouts, rate limits, the cost of many requests in flight.  This server puts
it back: litellm reaches it like any hosted model (``openai/sim`` with
``api_base=http://127.0.0.1:PORT/v1``), it answers with a set accuracy and latency, and
it can inject the faults hosted models really show (5xx, 429 with Retry-After, hangs,
dropped connections, truncated JSON, empty and 1 MB replies).  It is also a tool for
users to load-test their own set-up before paying for a real model.

It knows nothing about the run: it recovers each step's premise from the prompt text
alone (`tasks.builtin.hanoi_rules.premise_from_prompt`) and answers with `SimulatedModel.reply`, so
a wrong premise gets the answer that premise implies.  A draw is named by the request's
``seed`` when it has one (maker sends each draw's seed), else by a hash of the request
body and a counter.  Results obtained with it are simulated and must be labelled so.

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /stats.
It listens on 127.0.0.1 only.

Example:
    >>> with SimServer(SimServerConfig(p=1.0, latency=0.0)) as server:   # doctest: +SKIP
    ...     server.url
    'http://127.0.0.1:40417/v1'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from maker.tasks.base import StepInput, Task

from ..protocol import SampleRequest
from .simulator import SimConfig, SimulatedModel, mix64, uniform

#: Faults the server can inject, as `--faults` names them.
FAULT_KINDS = ("500", "429", "hang", "reset", "truncated", "empty", "huge")
#: How a 429 can give its wait: Retry-After seconds, Retry-After HTTP date, retry-after-ms.
RETRY_AFTER_FORMS = ("seconds", "date", "ms")
HOST = "127.0.0.1"
_HUGE_CHARS = 1 << 20


@dataclass(frozen=True)
class SimServerConfig:
    """What the server simulates and how it misbehaves."""

    p: float = 0.998
    latency: float = 0.2
    jitter: float = 0.0
    concurrency: int = 256  # requests answered at once; more wait in line
    task: str = "hanoi"
    disks: int | None = None  # None: whatever the prompt holds
    red_flag_rate: float = 0.0
    seed: int = 0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    retry_after_s: float = 1.0
    retry_after_form: str = "seconds"  # how a 429 says it: "seconds", "date" (RFC 9110 HTTP date) or "ms" (retry-after-ms)
    ignore_n: bool = False  # answer one choice whatever n asks, as llama.cpp's server does
    hang_s: float = 600.0
    port: int = 0  # 0: any free port
    model: str = "sim"

    def problems(self) -> list[str]:
        """Every reason this config cannot run, as one-line messages (empty: fine)."""
        out = []
        if not 0.0 <= self.p <= 1.0:
            out.append(f"--p must be in [0, 1], got {self.p}")
        if not self.latency >= 0 or not self.jitter >= 0:
            out.append("--latency and --jitter must be >= 0")
        if self.concurrency < 1:
            out.append(f"--concurrency must be >= 1, got {self.concurrency}")
        if not 0.0 <= self.red_flag_rate <= 1.0:
            out.append(f"--redflag must be in [0, 1], got {self.red_flag_rate}")
        if not 0.0 <= self.fault_rate <= 1.0:
            out.append(f"--fault-rate must be in [0, 1], got {self.fault_rate}")
        unknown = [f for f in self.faults if f not in FAULT_KINDS]
        if unknown or not self.faults:
            out.append(f"--faults must name some of {', '.join(FAULT_KINDS)}; got {','.join(self.faults) or 'none'}")
        if not 0 <= self.port <= 65535:
            out.append(f"--port must be in 0..65535, got {self.port}")
        if self.task not in _READERS:
            out.append(f"the sim-server knows the tasks {', '.join(SIM_TASKS)}, not {self.task!r}")
        if self.retry_after_form not in RETRY_AFTER_FORMS:
            out.append(f"--retry-after-form must be one of {', '.join(RETRY_AFTER_FORMS)}, got {self.retry_after_form!r}")
        if self.retry_after_s < 0 or self.hang_s < 0:
            out.append("--retry-after and --hang must be >= 0")
        return out


# -- reading a step from a prompt ---------------------------------------------------
Reader = Callable[[str], "tuple[Task, StepInput] | None"]


def _hanoi_reader(disks: int | None) -> Reader:
    from maker.tasks.builtin.hanoi import Hanoi
    from maker.tasks.builtin.hanoi_rules import MAX_DISKS, premise_from_prompt

    tasks: dict[int, Hanoi] = {}

    def read(text: str) -> tuple[Task, StepInput] | None:
        premise = premise_from_prompt(text)
        if premise is None:
            return None
        n = sum(len(peg) for peg in premise[0])
        if n > MAX_DISKS or (disks is not None and n != disks):
            return None
        task = tasks.get(n)
        if task is None:
            task = tasks[n] = Hanoi(n)
        return task, StepInput(0, premise)

    return read


def _chase_reader(_disks: int | None) -> Reader:
    from maker.tasks.builtin.chase import premise_from_prompt

    return premise_from_prompt  # list 0 (`maker run chase`'s default --list-seed)


_READERS: dict[str, Callable[[int | None], Reader]] = {"hanoi": _hanoi_reader, "chase": _chase_reader}
#: The tasks whose step prompts the server can read (`--task`).
SIM_TASKS = tuple(sorted(_READERS))


@dataclass
class ServerStats:
    """What the server saw; GET /stats returns it as JSON."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    answered: int = 0
    wrong: int = 0  # answers that differ from the premise's reference reply
    unreadable: int = 0  # prompts with no step in them (400)
    bad_requests: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    in_flight: int = 0
    max_in_flight: int = 0
    disconnected: int = 0  # the client gave up (timeout, cancellation) before the answer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_path: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "started"}
        out["uptime_s"] = round(time.time() - self.started, 3)
        out["faults_total"] = sum(self.faults.values())
        out["simulated"] = True
        return out


class SimApp:
    """The request handlers over one config; `build()` gives the aiohttp application."""

    def __init__(self, config: SimServerConfig) -> None:
        self.config = config
        self.stats = ServerStats()
        self._read = _READERS[config.task](config.disks)
        self._models: dict[int, SimulatedModel] = {}
        self._rng = random.Random(config.seed)
        self._counter = 0
        self._gate: asyncio.Semaphore | None = None

    def build(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=4 << 20)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completion)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/completions", self.completion)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        return app

    async def models(self, request: Any) -> Any:
        from aiohttp import web

        # owned_by is cluster.clients.SIM_SERVER_OWNER: runs against this server are labelled simulated
        return web.json_response({"object": "list", "data": [{"id": self.config.model, "object": "model", "owned_by": "maker-sim"}]})

    async def get_stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.stats.to_dict())

    async def chat(self, request: Any) -> Any:
        return await self._answer(request, chat=True)

    async def completion(self, request: Any) -> Any:
        return await self._answer(request, chat=False)

    async def _answer(self, request: Any, chat: bool) -> Any:
        from aiohttp import web

        stats = self.stats
        stats.requests += 1
        stats.by_path[request.path] = stats.by_path.get(request.path, 0) + 1
        raw = await request.read()
        try:
            body = json.loads(raw)
            text = _prompt_text(body, chat)
        except (ValueError, TypeError, KeyError) as exc:
            stats.bad_requests += 1
            return _error(400, f"bad request body: {exc}")
        if body.get("stream"):
            stats.bad_requests += 1
            return _error(400, "streaming is not supported by maker sim-server")
        found = self._read(text)
        if found is None:
            stats.unreadable += 1
            return _error(400, f"no {self.config.task} step found in the prompt (maker sim-server answers {self.config.task} step prompts only)")
        task, step = found
        self._counter += 1
        reply_id = f"sim-{self._counter}"  # taken now: other requests move the counter while this one waits
        seed = body.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            seed = mix64(int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little"), self._counter)
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 16:
            stats.bad_requests += 1
            return _error(400, "n must be an integer in 1..16")
        if self.config.ignore_n:
            n = 1
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 1 << 20
        fault = None
        cfg = self.config
        if cfg.fault_rate and self._rng.random() < cfg.fault_rate:
            fault = self._rng.choice(cfg.faults)
            stats.faults[fault] += 1
        if self._gate is None:
            self._gate = asyncio.Semaphore(cfg.concurrency)
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            async with self._gate:
                delay = cfg.latency + cfg.jitter * uniform(cfg.seed, seed, 5)
                if fault == "hang":
                    delay = cfg.hang_s
                if delay:
                    await asyncio.sleep(delay)
                if fault == "500":
                    return _error(500, "simulated server error")
                if fault == "429":
                    return _error(429, "simulated rate limit", _retry_after_header(cfg.retry_after_s, cfg.retry_after_form))
                if fault == "reset":
                    if request.transport is not None:
                        request.transport.abort()  # the client sees the connection drop
                    return web.Response(status=500)
                choices, tokens_out = self._choices(task, step, body, seed, n, int(max_tokens), chat, fault)
        except asyncio.CancelledError:
            stats.disconnected += 1
            raise
        finally:
            stats.in_flight -= 1
        tokens_in = len(text) // 4 + 1
        stats.prompt_tokens += tokens_in
        stats.completion_tokens += tokens_out
        stats.answered += 1
        reply = {
            "id": reply_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": str(body.get("model", cfg.model)),
            "choices": choices,
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
        }
        data = json.dumps(reply).encode()
        if fault == "truncated":
            data = data[: len(data) // 2]
        return web.Response(body=data, content_type="application/json")

    def _choices(
        self, task: Task, step: StepInput, body: dict[str, Any], seed: int, n: int, max_tokens: int, chat: bool, fault: str | None
    ) -> tuple[list[dict[str, Any]], int]:
        cfg = self.config
        model = self._models.get(id(task))
        if model is None:
            model = self._models[id(task)] = SimulatedModel(
                task, SimConfig(p=cfg.p, red_flag_rate=cfg.red_flag_rate, seed=cfg.seed), name=cfg.model
            )
        reference = model.oracle.reference_reply(step)
        choices = []
        total = 0
        for i in range(n):
            request = SampleRequest("", float(body.get("temperature") or 0.0), max_tokens, seed + i, step)
            text, tokens, finish = model.reply(request)
            if fault == "empty":
                text, tokens = "", 0
            elif fault == "huge":
                text = (text + "\n") * (_HUGE_CHARS // (len(text) + 1) + 1)
                tokens = len(text) // 4
            if text and text != reference and fault is None:
                self.stats.wrong += 1
            if tokens > max_tokens and fault != "huge":  # "huge" plays a server that ignores max_tokens
                text, tokens, finish = text[: max_tokens * 4], max_tokens, "length"
            total += tokens
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
            else:
                choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
        return choices, total


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    if chat:
        parts = []
        for message in body["messages"]:
            content = message.get("content")
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(str(content or ""))
        return "\n".join(parts)
    prompt = body["prompt"]
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt else ""
    return str(prompt)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from aiohttp import web

    kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status, headers=headers)


def _retry_after_header(seconds: float, form: str) -> dict[str, str]:
    if form == "ms":
        return {"retry-after-ms": str(int(round(seconds * 1000)))}
    if form == "date":  # whole seconds only: round up so the wait is never shorter than asked
        import email.utils
        import math

        return {"Retry-After": email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)}
    return {"Retry-After": _seconds(seconds)}


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port; OSError (errno EADDRINUSE) when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def start(app: SimApp, sock: socket.socket) -> Any:
    """Serve `app` on `sock`; returns the aiohttp runner (call `cleanup()` to stop)."""
    from aiohttp import web

    runner = web.AppRunner(app.build(), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


class SimServer:
    """The server on a background thread: for tests, benchmarks and notebooks.

    `with SimServer(config) as server:` gives `server.url` (an api_base for litellm),
    `server.stats()`; leaving the block stops it.
    """

    def __init__(self, config: SimServerConfig) -> None:
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.app = SimApp(config)
        self._sock = bind(config.port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="maker-sim-server", daemon=True)
        self._runner: Any = None

    def __enter__(self) -> SimServer:
        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(start(self.app, self._sock), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(_snapshot(self.app), self._loop).result(10)

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._sock.close()


async def _snapshot(app: SimApp) -> dict[str, Any]:
    return json.loads(json.dumps(app.stats.to_dict()))
