"""The fake provider itself: personalities answer as declared, requests are recorded, limits hold."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from fake_provider import Answer, Call, FakeProvider, completion
from personalities import PERSONALITIES, copies_n


def post(url: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_personality_sees_the_request_and_shapes_the_reply() -> None:
    with FakeProvider(copies_n) as server:
        status, single = post(server.url + "/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "q"}]})
        _, batch = post(server.root + "/chat/completions", {"model": "m", "n": 3, "seed": 7,
                                                            "messages": [{"role": "user", "content": "q"}]})
        bodies = server.bodies()
    assert status == 200
    assert [c["message"]["content"] for c in json.loads(single)["choices"]] == ["42"]
    assert [c["message"]["content"] for c in json.loads(batch)["choices"]] == ["41"] * 3
    assert bodies[1]["n"] == 3 and bodies[1]["seed"] == 7


def test_text_completions_status_headers_and_the_request_cap() -> None:
    def teapot(call: Call) -> Answer:
        return completion(call, ["x"], status=418, headers={"X-Fake": "1"})

    with FakeProvider(teapot, max_requests=1) as server:
        status, body = post(server.url + "/completions", {"model": "m", "prompt": "q"})
        assert status == 418 and json.loads(body)["choices"][0]["text"] == "x"
        status, _ = post(server.url + "/completions", {"model": "m", "prompt": "q"})
    assert status == 503  # past max_requests: refused, and the server stops itself


def test_every_personality_answers_a_chat_and_a_text_request() -> None:
    for name, personality in PERSONALITIES.items():
        for chat in (True, False):
            path = "/chat/completions" if chat else "/completions"
            call = Call(path, {"model": "m", "n": 2, "messages": [{"role": "user", "content": "q"}], "prompt": "q"}, {}, 5)
            answer = personality(call)
            assert isinstance(answer, Answer) and isinstance(answer.body(), bytes), name
