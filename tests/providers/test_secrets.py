"""A key never leaves in any encoding (issue 22, section 7).

With ``OPENAI_API_KEY='gw/Ab+cd=SECRET1234'`` and a 401 whose body echoes it JSON-escaped
(``gw\\/Ab+cd=SECRET1234``), URL-encoded and in base64, the key reached the step log and
stderr.  Here the `echo_key_401` personality does that on both client paths, and nothing
maker writes -- the step log, the error it raises, stderr, a CLI error line -- holds the
key in any of those forms.  Keys contain ``/ + = %``."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import sys
import urllib.parse

import pytest
from fake_provider import FakeProvider
from maker.cluster import ModelSpec
from maker.cluster.secrets import REDACTED, RedactingStream, redact
from personalities import echo_key_401

import maker
from maker.log.steplog import open_log, read_table

KEYS = ["gw/Ab+cd=SECRET1234", "pc%41t/u+v=w%2Fxyz789", "sk-proj-Ab/Cd+Ef==QQ"]


def forms(key: str) -> dict[str, str]:
    """The key as servers and libraries write it (independently of how maker finds them)."""
    raw = key.encode()
    out = {
        "raw": key,
        "json /": json.dumps(key)[1:-1].replace("/", "\\/"),
        "json \\u": "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in key),
        "double json": json.dumps(json.dumps(key))[3:-3],
        "url": urllib.parse.quote(key, safe=""),
        "url plus": urllib.parse.quote_plus(key),
        "url twice": urllib.parse.quote(urllib.parse.quote(key, safe=""), safe=""),
        "url lower": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(key, safe="")),
        "html": html.escape(key).replace("/", "&#x2F;").replace("+", "&#43;"),
        "base64": base64.b64encode(raw).decode(),
        "base64 url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
    }
    for prefix in ("u:", "us:", "user:"):  # Basic auth: the key at each base64 alignment
        out[f"basic {prefix}"] = base64.b64encode((prefix + key).encode()).decode()
    return out


def leaked(text: str, key: str) -> list[str]:
    """The forms of `key` found in `text` (a base64 text counts when its key-only middle is there)."""
    found = []
    for name, form in forms(key).items():
        probe = form[6:-4] if name.startswith(("base64", "basic")) else form  # the characters only the key decides
        if probe and probe in text:
            found.append(name)
    return found


@pytest.mark.parametrize("key", KEYS)
def test_every_form_is_redacted(monkeypatch, key) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    for name, form in forms(key).items():
        text = redact(f"error: {{\"message\": \"bad key {form}\"}} (tail)")
        assert not leaked(text, key), (name, text)
        assert REDACTED in text and text.startswith("error: ") and text.endswith("(tail)"), (name, text)


def test_credentials_are_redacted_by_shape_too() -> None:  # keys maker was never told about
    text = redact("Authorization: Bearer ab/cd+ef==1234567 x-api-key: 'zz/yy+xx=1234' "
                  "https://bob:hunter2@proxy.example/v1?api_key=q%2Fw%2Be12345&n=2")
    for secret in ("ab/cd+ef==1234567", "zz/yy+xx=1234", "hunter2", "q%2Fw%2Be12345"):
        assert secret not in text, text
    assert "proxy.example/v1" in text and "&n=2" in text
    harmless = "max_tokens=20 temperature=0.1 openai/gpt-4.1-mini HTTP 401: Unauthorized 127.0.0.1:8000/v1"
    assert redact(harmless) == harmless


def test_a_stream_redacts_a_key_split_across_writes(monkeypatch) -> None:
    import io

    monkeypatch.setenv("OPENAI_API_KEY", KEYS[0])
    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write("first gw\\/Ab+")
    stream.write("cd=SECRET1234 end\nsecond ")
    stream.write(base64.b64encode(KEYS[0].encode()).decode())
    stream.flush()
    assert not leaked(sink.getvalue(), KEYS[0]) and sink.getvalue().count(REDACTED) == 2


@pytest.mark.parametrize("path", ["openai_compatible", "litellm"])
@pytest.mark.parametrize("key", KEYS[:2])
def test_a_401_that_echoes_the_key_leaves_it_nowhere(tmp_path, monkeypatch, capfd, caplog, path, key) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    with FakeProvider(echo_key_401) as server:
        if path == "litellm":  # the issue's instance: a hosted model string, its base URL from the environment
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            spec = ModelSpec("openai/gpt-4.1-mini", timeout_s=30)
        else:
            spec = ModelSpec("openai/fake", api_base=server.url, timeout_s=30)
        with pytest.raises(maker.MakerError) as raised:
            maker.vote("What is 6*7?", [spec], k=1, key="integer", log=tmp_path / "log",
                       voting=maker.VotingConfig(k=1, max_failed_calls=2))
        sent = [c.headers.get("Authorization") for c in server.calls]
    assert sent and all(h == f"Bearer {key}" for h in sent)  # the server did get the key, and echoed it
    rows = read_table(open_log(tmp_path / "log")).to_pylist()
    logged = json.dumps(rows, default=str)
    assert "AuthenticationError" in logged and REDACTED in logged
    out, err = capfd.readouterr()
    for where, text in {"step log": logged, "error": str(raised.value), "stdout": out, "stderr": err,
                        "logging": caplog.text}.items():
        assert not leaked(text, key), (where, leaked(text, key), text[:300])


def test_stderr_inside_maker_holds_no_key(monkeypatch, capsys) -> None:
    # the CLI runs every command under redacted_stderr: what litellm or a traceback prints there is scrubbed
    from maker.cluster.secrets import redacted_stderr

    monkeypatch.setenv("OPENAI_API_KEY", KEYS[0])
    print("outside maker: gw\\/Ab+cd=SECRET1234", file=sys.stderr)
    with redacted_stderr():
        print("inside maker: gw\\/Ab+cd=SECRET1234 and " + urllib.parse.quote(KEYS[0], safe=""), file=sys.stderr)
        logging.getLogger("maker.test").warning("a warning quoting %s", base64.b64encode(KEYS[0].encode()).decode())
    lines = capsys.readouterr().err.splitlines()
    assert leaked(lines[0], KEYS[0])  # outside maker nothing is touched
    assert not leaked("\n".join(lines[1:]), KEYS[0]) and lines[1].count(REDACTED) == 2, lines
