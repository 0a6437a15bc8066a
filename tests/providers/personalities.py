"""Provider personalities: one function per behaviour real servers show (see `fake_provider`).

Each is ``personality(call) -> Answer`` and answers the question the conformance suite asks
("What is 6*7?"; the right key is ``42``).  `honest` words each choice of an ``n``-request
differently ("42", "42.", "**42**", ...), as independent draws of a confident model do
(same vote key, different bytes); every other personality is that model with one quirk.
Add a quirk here and one expected outcome in `test_conformance.py`.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable

from fake_provider import Answer, Call, Personality, completion

#: Byte-different wordings of the right answer (all normalise to the integer key "42").
WORDINGS = ("42", "42.", "**42**", " 42", "042", "+42", "42 ", "`42`")


def wordings(n: int, start: int = 0) -> list[str]:
    return [WORDINGS[(start + i) % len(WORDINGS)] for i in range(n)]


def honest(call: Call) -> Answer:
    """A well-behaved server: n independent draws, a normal stop, honest usage."""
    return completion(call, wordings(call.n, call.index))


def first(requests: int, quirk: Personality, then: Personality = honest) -> Personality:
    """`quirk` for the first `requests` requests, `then` after (a provider that misbehaves once)."""

    def personality(call: Call) -> Answer:
        return quirk(call) if call.index < requests else then(call)

    personality.__name__ = f"first_{requests}_{getattr(quirk, '__name__', 'quirk')}"
    return personality


# -- behaviours maker already handled ------------------------------------------------
def status(code: int, headers: dict[str, str] | None = None) -> Personality:
    def personality(call: Call) -> Answer:
        return Answer(code, {"error": {"message": f"fake {code}", "type": "fake"}}, headers=dict(headers or {}))

    personality.__name__ = f"status_{code}"
    return personality


def retry_after_date(seconds: float) -> Personality:
    """429 with Retry-After as an HTTP date `seconds` from now."""

    def personality(call: Call) -> Answer:
        when = email.utils.formatdate(time.time() + seconds, usegmt=True)
        return status(429, {"Retry-After": when})(call)

    return personality


def truncated_json(call: Call) -> Answer:
    """Half of a completion body (a proxy that cut the connection mid-body)."""
    whole = completion(call, wordings(call.n)).body()
    return Answer(200, raw=whole[: len(whole) // 2])


def root_paths_only(call: Call) -> Answer:
    """Serves ``/chat/completions`` and ``/completions`` only (a base URL without ``/v1``)."""
    if call.path.startswith("/v1/"):
        return Answer(404, {"error": {"message": f"no route {call.path}"}})
    return honest(call)


def huge(call: Call) -> Answer:
    """A 1 MB reply that ignores max_tokens (and says it stopped normally)."""
    text = "42 " + "A" * 1_000_000
    return completion(call, [text] * call.n)


# -- section 2: choices of one request that are one draw -----------------------------
def copies_n(call: Call) -> Answer:
    """vLLM #10852 / TensorRT-LLM #212: one draw copied into every choice of an n > 1 request
    (here a wrong one: 42 to single requests, 41 to every choice of a batch)."""
    return completion(call, ["42"] if call.n == 1 else ["41"] * call.n)


# -- section 3: replies that are not a plain, finished completion --------------------
def content_parts(call: Call) -> Answer:
    """Mistral / reasoning models: content as a list of parts; thinking first (naming a wrong number)."""
    parts = [[{"type": "thinking", "thinking": [{"type": "text", "text": "6*7... maybe 41? no."}]},
              {"type": "text", "text": w}] for w in wordings(call.n, call.index)]
    return completion(call, parts)


def thinking_only(call: Call) -> Answer:
    """Content parts with no text part at all: there is no answer."""
    return completion(call, [[{"type": "thinking", "thinking": "42"}]] * call.n)


def finish(reason: str | None) -> Personality:
    """A right-looking answer stopped for `reason` (content_filter, tool_calls, ...)."""

    def personality(call: Call) -> Answer:
        return completion(call, wordings(call.n, call.index), finish_reason=reason)

    personality.__name__ = f"finish_{reason}"
    return personality


def refusal(call: Call) -> Answer:
    """OpenAI's structured refusal: no content, ``message.refusal`` set, finish_reason stop."""
    return completion(call, [None] * call.n, message={"refusal": "I can't help with that. 42"})


def tool_calls_no_content(call: Call) -> Answer:
    """Empty content with a tool call, finish_reason still ``stop`` (some servers say so)."""
    tool = {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": "6*7"}'}}
    return completion(call, [""] * call.n, message={"tool_calls": [tool]})


# -- section 4: reasoning models ------------------------------------------------------
def reasoning_cut(call: Call) -> Answer:
    """o-series under a small cap: hidden reasoning uses the whole cap, the visible reply is
    empty, finish_reason length."""
    cap = int(call.body.get("max_completion_tokens") or call.body.get("max_tokens") or 100)
    usage = {"prompt_tokens": 12, "completion_tokens": cap * call.n, "total_tokens": 12 + cap * call.n,
             "completion_tokens_details": {"reasoning_tokens": cap * call.n}}
    return completion(call, [""] * call.n, finish_reason="length", usage=usage)


def reasoning(call: Call) -> Answer:
    """A reasoning model that answers: 30 hidden reasoning tokens per choice, billed as output."""
    usage = {"prompt_tokens": 12, "completion_tokens": 32 * call.n, "total_tokens": 12 + 32 * call.n,
             "completion_tokens_details": {"reasoning_tokens": 30 * call.n}}
    return completion(call, wordings(call.n, call.index), usage=usage)


# -- section 5: time limits ------------------------------------------------------------
def trickle(pause_s: float = 5.0) -> Personality:
    """Headers at once, then the body one byte every `pause_s` seconds: each read is quick, so
    a per-read timeout never fires; only a deadline on the whole call ends it."""

    def personality(call: Call) -> Answer:
        body = completion(call, wordings(call.n, call.index)).body()
        return Answer(200, chunks=[body[i:i + 1] for i in range(len(body))], chunk_pause_s=pause_s)

    personality.__name__ = f"trickle_{pause_s:g}s"
    return personality


def one_at_a_time(service_s: float = 0.5) -> Personality:
    """llama.cpp's server: one request at a time, `service_s` each, in arrival order; ignores
    ``n`` (one choice); never cancels a request whose client has gone."""

    def personality(call: Call) -> Answer:
        answer = completion(call, wordings(1, call.index))
        return Answer(answer.status, answer.json, delay_s=service_s, serial=True)

    personality.__name__ = f"one_at_a_time_{service_s:g}s"
    return personality


# -- section 7: secrets ---------------------------------------------------------------
def echo_key_401(call: Call) -> Answer:
    """A 401 whose body quotes the key it was sent, JSON-escaped (``/`` as ``\\/``), as a
    gateway's error may -- and again URL-encoded and in base64, as other layers do."""
    import base64
    import urllib.parse

    key = call.headers.get("Authorization", "").removeprefix("Bearer ")
    message = (f"Incorrect API key provided: {key}. url=https://gw.example/v1?key={urllib.parse.quote(key, safe='')} "
               f"basic={base64.b64encode(('user:' + key).encode()).decode()}")
    body = ('{"error": {"message": ' + json.dumps(message).replace("/", "\\/") + ', "type": "invalid_request_error", '
            '"code": "invalid_api_key"}}').encode()
    return Answer(401, raw=body)


def cached_prefix(call: Call) -> Answer:
    """A hosted provider that read most of the prompt from its prefix cache, reported as
    OpenAI does (issue 23's example: 2,000 prompt tokens, 1,920 of them cached, 5 out)."""
    usage = {"prompt_tokens": 2000, "completion_tokens": 5 * call.n, "total_tokens": 2000 + 5 * call.n,
             "prompt_tokens_details": {"cached_tokens": 1920}}
    return completion(call, wordings(call.n, call.index), usage=usage)


#: Every personality by name (what the conformance table refers to).
PERSONALITIES: dict[str, Callable[[Call], Answer]] = {
    "honest": honest,
    "429_seconds": first(1, status(429, {"Retry-After": "1"})),
    "429_date": first(1, retry_after_date(1.0)),
    "429_retry_after_ms": first(1, status(429, {"retry-after-ms": "300"})),
    "500": first(1, status(500)),
    "503": first(1, status(503)),
    "truncated_json": first(1, truncated_json),
    "no_v1": root_paths_only,
    "huge": first(1, huge),
    "copies_n": copies_n,
    "content_parts": content_parts,
    "thinking_only": thinking_only,
    "refusal": first(1, refusal),
    "tool_calls_no_content": first(1, tool_calls_no_content),
    **{f"finish_{r}": first(1, finish(r)) for r in ("content_filter", "tool_calls", "function_call", "error",
                                                     "length", "something_new")},
    "finish_null": finish(None),
    "reasoning_cut": reasoning_cut,
    "reasoning": reasoning,
    "trickle": trickle(),
    "one_at_a_time": one_at_a_time(),
    "echo_key_401": echo_key_401,
    "cached_prefix": cached_prefix,
}
