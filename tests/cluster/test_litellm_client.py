"""The litellm client against a real loopback HTTP server.

The server is a fake at the model boundary (an OpenAI-compatible endpoint the test
scripts); everything on our side of it -- litellm, retries, backoff, Retry-After, token
and cost accounting -- is the real code.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from maker.cluster import ModelConfigError, ModelSpec, SampleRequest, check_spec
from maker.cluster.http.litellm_client import LiteLLMClient, LiteLLMConfig


class Script:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls = 0
        self.bodies: list[dict] = []


def serve(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.bodies.append(body)
            status = script.statuses[min(script.calls, len(script.statuses) - 1)]
            script.calls += 1
            if status != 200:
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"error": {"message": "try later", "type": "x"}}).encode())
                return
            reply = {
                "id": f"r{script.calls}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "move = [1, 0, 1]"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def client_for(server, retries=3) -> LiteLLMClient:
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return LiteLLMClient(LiteLLMConfig("openai/fake", api_base=base, max_retries=retries, backoff_s=0.01, timeout_s=5))


def request(temperature=0.0) -> SampleRequest:
    return SampleRequest([{"role": "user", "content": "hi"}], temperature, 20, 1)


def test_reply_tokens_and_request_fields() -> None:
    script = Script([200])
    server = serve(script)
    try:
        (sample,) = asyncio.run(client_for(server).complete([request(0.1)]))
    finally:
        server.shutdown()
    assert sample.error is None
    assert sample.text == "move = [1, 0, 1]"
    assert (sample.tokens_in, sample.tokens_out) == (11, 7)
    assert sample.response_id == "r1"
    assert script.bodies[0]["temperature"] == 0.1
    assert script.bodies[0]["max_tokens"] == 20


def test_retries_server_errors_and_429_then_succeeds() -> None:
    script = Script([500, 429, 200])
    server = serve(script)
    try:
        (sample,) = asyncio.run(client_for(server).complete([request()]))
    finally:
        server.shutdown()
    assert sample.error is None
    assert script.calls == 3


def test_gives_up_after_bounded_retries_with_an_error_sample() -> None:
    script = Script([503])
    server = serve(script)
    try:
        (sample,) = asyncio.run(client_for(server, retries=2).complete([request()]))
    finally:
        server.shutdown()
    assert sample.error and sample.text == ""
    assert script.calls == 3


def test_missing_key_names_the_setting(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        check_spec(ModelSpec("openai/gpt-4.1-mini"))


def test_unknown_bare_model_name() -> None:
    with pytest.raises(ModelConfigError, match="unknown model"):
        check_spec(ModelSpec("gpt-nonsense"))
