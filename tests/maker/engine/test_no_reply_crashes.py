"""No reply can crash a run: numbers that once raised inside the judge, a user's key that
raises, and a lone surrogate end as votes or red flags in `maker.vote`, `maker run` and
MCP, and the step log stays writable and readable (issue 22, section 6).

The models are fakes at the model boundary (`FunctionClient`, a ``py:`` model, the
simulator); everything from the judge to the log is the real code."""

from __future__ import annotations

import json

import pytest

import maker
from maker import FunctionClient
from maker.log.steplog import open_log, read_table


def _ask(replies):
    """A model that gives `replies` in turn (by seed, so it is the same however drawn)."""
    return FunctionClient(lambda prompt, temperature, seed: replies[seed % len(replies)], name="fake")


@pytest.mark.parametrize(("reply", "key", "decided"), [
    ("1e1000000", "decimal", "1e1000000"),  # was decimal.Overflow, a traceback
    ("9" * 5000, "integer", "9" * 5000),  # was ValueError: int()'s 4,300-digit limit
    ("0x" + "f" * 5000, "literal", None),  # was ValueError from repr(): every sample is malformed
])
def test_vote_on_numbers_that_crashed_the_judge(tmp_path, reply, key, decided) -> None:
    log = tmp_path / "log"
    if decided is None:
        with pytest.raises(maker.MakerError, match="malformed"):
            maker.vote("q?", [_ask([reply])], k=2, key=key, log=log, voting=maker.VotingConfig(k=2, max_discards_in_a_row=4))
    else:
        result = maker.vote("q?", [_ask([reply])], k=2, key=key, log=log)
        assert result.key == decided and result.votes == {decided: 2}
    assert read_table(open_log(log)).num_rows > 0  # the log holds what was drawn


def test_a_users_key_that_raises_is_a_malformed_red_flag_in_vote(tmp_path) -> None:
    def key(text: str) -> str:
        if text == "bad":
            raise ValueError("not a number I know")
        return text.strip()

    first_bad = FunctionClient(lambda prompt, temperature, seed: "bad" if temperature == 0 else "42", name="fake")
    result = maker.vote("q?", [first_bad], k=2, key=key, log=tmp_path / "log")
    assert result.key == "42" and result.red_flags.get("malformed", 0) >= 1
    rows = read_table(open_log(tmp_path / "log"), kind="sample").to_pylist()
    flagged = [r for r in rows if r["red_flag"] == "malformed"]
    assert flagged and flagged[0]["detail"].startswith("the key function raised ValueError: not a number I know")


def test_a_lone_surrogate_in_a_reply_is_logged_not_fatal(tmp_path) -> None:
    # JSON's "\\ud800" decodes to a lone surrogate, which no Parquet log or JSON output can hold
    with pytest.raises(maker.MakerError, match="malformed"):
        maker.vote("q?", [_ask(["42\ud800"])], k=2, key="integer", log=tmp_path / "log", voting=maker.VotingConfig(k=2, max_discards_in_a_row=4))
    rows = read_table(open_log(tmp_path / "log"), kind="sample").to_pylist()
    assert rows and all(r["reply"] == "42\\ud800" for r in rows), rows[:1]
    result = maker.vote("q?", [_ask(["ok\ud800"])], k=2, key="text")
    assert result.key == "ok\\ud800" and json.dumps(result.to_dict(), ensure_ascii=False).encode()


@pytest.mark.ray
def test_maker_run_with_a_key_that_raises_on_the_first_sample(tmp_path, ray_address, maker_cli) -> None:
    # sample 0 is drawn at temperature 0, so a resumed run meets the same reply again: it must be a red flag
    (tmp_path / "own.py").write_text(
        "import maker\n"
        "def _key(text):\n"
        "    if 'boom' in text:\n"
        "        raise RuntimeError('my key cannot read ' + text)\n"
        "    return text.strip()\n"
        "def counter(n: int = 3):\n"
        "    return maker.chain_task(name='counter', start=0, steps=n, prompt=lambda s, i: f'{s} + 1 =',\n"
        "                            key=_key, next_state=lambda s, a: int(a), truth=lambda s, i: s + 1)\n"
        "def model(prompt, temperature, seed):\n"
        "    state = int(prompt[-1]['content'].split()[0])\n"
        "    return 'boom' if temperature == 0 else str(state + 1)\n"
    )
    own = str(tmp_path / "own.py")
    log = tmp_path / "run"
    result = maker_cli("run", "--task", f"{own}:counter", "--model", f"py:{own}:model", "--k", "2", "--log", str(log),
                       "--address", ray_address, "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["solved"] and out["steps"] == 3 and out["red_flags_by_reason"].get("malformed", 0) >= 3, out
    assert "Traceback" not in result.stderr


SERVER = "import sys; from maker.cli.main import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.subprocess
def test_mcp_vote_on_numbers_that_crashed_it(tmp_path) -> None:
    # was "Error executing tool vote": decimal.Overflow escaped the tool
    pytest.importorskip("mcp")
    import os
    import sys

    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-c", SERVER, "mcp", "--root", str(tmp_path)],
                                   env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, cwd=str(tmp_path))

    async def main() -> list:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return [await session.call_tool("vote", {"prompt": "q?", "models": ["sim:0.8"], "k": 2, "key": key,
                                                     "expected": expected, "seed": 1})
                    for key, expected in (("decimal", "1e1000000"), ("integer", "9" * 5000))]

    decimal, integer = anyio.run(main)
    assert not decimal.is_error, decimal.content
    out = decimal.structured_content or json.loads(decimal.content[0].text)
    assert out["key"] == "1e1000000" and out["correct"] is True
    # 5,000 digits are ~1,250 tokens, past the tool's 750-token cap: every reply is red-flagged
    # overlong and the vote stops with that line -- a red flag, where it used to be int()'s ValueError
    text = integer.content[0].text
    if integer.is_error:
        assert "red-flagged (overlong" in text and "ValueError" not in text and "\n" not in text, text
    else:
        assert json.loads(text)["key"] == "9" * 5000
