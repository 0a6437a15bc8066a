"""The rules of issue 22 §2-§4, each on the issue's own reproduction (the fake provider and
`FunctionClient` at the model boundary; everything else is maker's real code)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fake_provider import Answer, Call, FakeProvider
from maker.cluster import FunctionClient, ModelSpec, Sample
from maker.cluster.http.litellm_client import LiteLLMClient, received_response, temperature_sent
from maker.cluster.http.openai_compatible import choice_text
from maker.cluster.http.transport import EndpointConfig
from maker.tasks.builtin.one_prompt import OnePrompt
from personalities import content_parts, copies_n, reasoning, reasoning_cut

import maker
from maker.engine.red_flags import RedFlagPolicy, judge_sample
from maker.errors import DiscardStreakError


def samples_of(log: Path) -> dict[str, list]:
    table = pq.read_table(log)
    return table.filter(pc.equal(table["kind"], "sample")).to_pydict()


# -- §2: samples drawn in one request ----------------------------------------------------
@pytest.mark.parametrize("path", ["compat", "litellm"])
def test_copies_in_one_request_count_once_and_the_server_is_drawn_one_request_per_sample(path, tmp_path, caplog) -> None:
    """The issue's reproduction: 42 to single requests, 41 copied into every choice of an
    n > 1 request.  Before: '41' decided with votes {'42': 1, '41': 4}, copies logged with
    red_flag null, the n-requests carrying one seed."""
    log = tmp_path / "v.parquet"
    with FakeProvider(copies_n) as server, caplog.at_level(logging.WARNING, logger="maker.cluster"):
        model = (ModelSpec("openai/fake", api_base=server.url) if path == "compat"
                 else LiteLLMClient(EndpointConfig("openai/fake", api_base=server.url)))
        result = maker.vote("What is 6*7?", [model], k=3, key="integer", log=log)
        bodies = server.bodies()
    assert result.key == "42" and result.votes == {"42": 4, "41": 1}
    rows = samples_of(log)
    shared = [r for r in rows["shared_request"] if r is not None]
    assert len(shared) == 2 and len(set(shared)) == 1  # the two choices of the one n=2 request, named alike
    copy = rows["shared_request"].index(shared[0]) + 1
    assert rows["red_flag"][copy] == "non_independent" and "a copy of one draw" in rows["detail"][copy]
    batched = [b for b in bodies if (b.get("n") or 1) > 1]
    assert len(batched) == 1 and "seed" not in batched[0]  # one seed cannot name two draws
    assert all("seed" in b for b in bodies if (b.get("n") or 1) == 1)  # single requests: each its own seed
    assert bodies.index(batched[0]) < len(bodies) - 1  # and after the copy, only single requests
    assert sum("copied one draw" in r.getMessage() for r in caplog.records) == 1


def test_distinct_choices_of_one_request_all_vote() -> None:
    def distinct(call: Call) -> Answer:
        from personalities import honest

        return honest(call)

    with FakeProvider(distinct) as server:
        result = maker.vote("What is 6*7?", [ModelSpec("openai/fake", api_base=server.url)], k=3, key="integer")
        bodies = server.bodies()
    assert result.key == "42" and result.samples == 3 and not result.red_flags
    assert [b.get("n") for b in bodies] == [None, 2]


def test_a_copy_is_a_choice_identical_to_another_of_the_same_request_above_temperature_zero() -> None:
    """Any length (the old rule needed 200+ characters), only within one request (draws of
    separate requests may agree), above temperature 0 or at a temperature not sent (at 0
    every draw is the same reply by design: the second-temperature-0-vote rule covers it)."""
    from maker.engine.red_flags import StepJudge

    task = OnePrompt("q", key="integer")
    for t in (0.1, None):
        judge = StepJudge(task, task.first_step(), RedFlagPolicy())
        first = judge(Sample("42", "m", shared_request="r1"), t)
        second = judge(Sample("42", "m", shared_request="r1"), t)
        other = judge(Sample("42", "m", shared_request="r2"), t)
        alone = judge(Sample("42", "m"), t)
        assert first.key == other.key == alone.key == "42"
        assert second.red_flag == "non_independent" and "a copy of one draw" in second.detail
    judge = StepJudge(task, task.first_step(), RedFlagPolicy())
    judge(Sample("42", "m", shared_request="r1"), 0.0)
    assert "a copy" not in (judge(Sample("42", "m2", shared_request="r1"), 0.0).detail or "")


# -- §3: not a plain, finished completion ----------------------------------------------
def test_a_content_filtered_reply_never_votes() -> None:
    """The issue's example: before, '4' was decided."""
    fn = FunctionClient(lambda p, t, s: Sample("4", "fn", finish_reason="content_filter"))
    with pytest.raises(DiscardStreakError, match="unfinished"):
        maker.vote("2+2?", [fn], k=2, key="integer")


@pytest.mark.parametrize("path", ["compat", "litellm"])
def test_content_parts_vote_on_their_text_with_key_text(path) -> None:
    with FakeProvider(content_parts) as server:
        model = (ModelSpec("openai/fake", api_base=server.url) if path == "compat"
                 else LiteLLMClient(EndpointConfig("openai/fake", api_base=server.url)))
        result = maker.vote("What is 6*7?", [model], k=1, key="text")
        served = len(server.calls)
    assert result.key == "42" and served == 1  # the text part, not the list's repr; not retried


FINISH = [  # (finish_reason sent, red flag expected): OpenAI's and litellm's documented reasons, and others
    ("stop", None), ("length", "overlong"), ("content_filter", "unfinished"), ("tool_calls", "unfinished"),
    ("function_call", "unfinished"), ("error", "unfinished"), ("eos_token", None), ("end_turn", None),
    ("STOP", None), ("MAX_TOKENS", "unfinished"), ("something_new", "unfinished"), (None, None),
]


@pytest.mark.parametrize(("reason", "flag"), FINISH)
def test_every_finish_reason_is_read_and_judged(reason, flag) -> None:
    text, finish = choice_text({"message": {"role": "assistant", "content": "42"}, "finish_reason": reason})
    task = OnePrompt("q", key="integer")
    verdict = judge_sample(task, task.first_step(), Sample(text, "m", tokens_out=1, finish_reason=finish), RedFlagPolicy())
    assert verdict.red_flag == flag
    if flag == "unfinished":
        assert verdict.detail == f"finish_reason={reason}"


def test_litellm_objects_keep_the_native_finish_reason_litellm_maps_to_stop() -> None:
    message = SimpleNamespace(content="42", refusal=None, tool_calls=None, function_call=None)
    choice = SimpleNamespace(message=message, finish_reason="stop", text=None,
                             provider_specific_fields={"native_finish_reason": "MALFORMED_FUNCTION_CALL"})
    assert choice_text(choice) == ("42", "MALFORMED_FUNCTION_CALL")
    choice.provider_specific_fields = {"native_finish_reason": "end_turn"}
    assert choice_text(choice) == ("42", "stop")


def test_refusals_and_tool_calls_are_not_answers() -> None:
    assert choice_text({"message": {"content": None, "refusal": "no"}, "finish_reason": "stop"}) == ("", "refusal")
    tool = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert choice_text({"message": {"content": "", "tool_calls": tool}, "finish_reason": "stop"}) == ("", "tool_calls")
    assert choice_text({"message": {"content": "42", "function_call": {"name": "f"}}}) == ("42", "function_call")
    assert choice_text({"message": {"content": [{"type": "thinking", "thinking": "42"}]}}) == ("", "stop")
    assert choice_text({"text": [{"type": "text", "text": "4"}, "2"], "finish_reason": "stop"}) == ("42", "stop")


def test_litellm_error_text_is_read_as_a_literal_never_run() -> None:
    message = ("Invalid response object ... received_args={'response_object': {'id': 'x', 'choices': [{'message': "
               "{'content': [{'type': 'text', 'text': \"4}2'\"}]}, 'finish_reason': 'stop'}]}, 'model_response_object': "
               "ModelResponse(id='y')}")
    assert received_response(message)["choices"][0]["message"]["content"][0]["text"] == "4}2'"
    assert received_response("received_args={'response_object': {'choices': __import__('os')}}") is None
    assert received_response("no dict here") is None


# -- §4: reasoning models -----------------------------------------------------------------
def test_litellm_knows_which_temperatures_it_drops() -> None:
    assert not temperature_sent("openai/o3-mini", 0.1) and temperature_sent("openai/o3-mini", 1.0)
    assert temperature_sent("openai/gpt-4.1-mini", 0.0)


def test_a_temperature_never_sent_is_said_before_the_first_call_and_logged_as_null(tmp_path) -> None:
    """The issue's o3-mini: litellm dropped temperature from every request while the log said 0.0 and 0.1."""
    seen_before_first_call: list[bool] = []
    notices: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notices.append(record.getMessage())

    def answering(call: Call) -> Answer:
        if call.index == 0:
            seen_before_first_call.append(any("not sent" in n for n in notices))
        return reasoning(call)

    handler = Catch(logging.WARNING)
    logging.getLogger("maker").addHandler(handler)
    log = tmp_path / "o3.parquet"
    try:
        with FakeProvider(answering) as server:
            client = LiteLLMClient(EndpointConfig("openai/o3-mini", api_base=server.url))
            result = maker.vote("What is 6*7?", [client], k=2, key="integer", log=log)
            bodies = server.bodies()
    finally:
        logging.getLogger("maker").removeHandler(handler)
    assert result.key == "42"
    assert all("temperature" not in b for b in bodies)
    assert seen_before_first_call == [True]
    (notice,) = [n for n in notices if "not sent" in n]
    assert "openai/o3-mini" in notice and "temperature 0 or 0.1" in notice and "first sample" in notice
    rows = samples_of(log)
    assert rows["temperature"] == [None] * len(rows["sample"])
    assert rows["reasoning_tokens"] == [30] * len(rows["sample"]) and result.reasoning_tokens == 30 * result.samples


@pytest.mark.parametrize("path", ["compat", "litellm"])
def test_replies_cut_by_the_cap_stop_the_call_after_a_few_samples_naming_the_cap(path, tmp_path) -> None:
    """Before: 50 empty samples paid for, then 'all 50 samples were red-flagged (empty 50)'."""
    log = tmp_path / "cut.parquet"
    with FakeProvider(reasoning_cut) as server:
        model = (ModelSpec("openai/o3-mini", api_base=server.url) if path == "compat"
                 else LiteLLMClient(EndpointConfig("openai/o3-mini", api_base=server.url)))
        with pytest.raises(DiscardStreakError) as caught:
            maker.vote("What is 6*7?", [model], k=3, key="integer", log=log)
        served = len(server.calls)
    message = str(caught.value)
    assert "\n" not in message and "cut off at the output cap" in message and "--max-output-tokens 750" in message
    assert "hidden reasoning" in message
    rows = samples_of(log)
    assert len(rows["sample"]) == 6 and served <= 6 and set(rows["red_flag"]) == {"overlong"}


def test_the_report_shows_reasoning_tokens(tmp_path) -> None:
    from maker.log.steplog import open_log
    from maker.report.stats import collect
    from maker.report.summary import render_markdown

    log = tmp_path / "r.parquet"
    with FakeProvider(reasoning) as server:
        maker.vote("What is 6*7?", [ModelSpec("openai/fake", api_base=server.url)], k=2, key="integer", log=log)
    stats = collect(open_log(log))
    assert stats.reasoning_tokens == 30 * len(samples_of(log)["sample"])
    assert "hidden reasoning" in render_markdown(stats, set())


def test_estimating_p_stops_when_every_reply_is_cut_at_the_cap() -> None:
    """`maker estimate` drew up to max_samples_per_step on each of its steps: against a model
    whose replies are all cut by the cap it stopped only at that bound (here 20 steps x 10)."""
    import asyncio

    from maker.tasks.builtin.one_prompt import OnePromptWithTruth

    from maker.budget.estimate import EstimateJob, estimate_batch
    from maker.config import VotingConfig

    task = OnePromptWithTruth("What is 6*7?", key="integer", expected="42")
    with FakeProvider(reasoning_cut) as server:
        client = LiteLLMClient(EndpointConfig("openai/o3-mini", api_base=server.url))
        worker = SimpleNamespace(task=task, clients={"openai/o3-mini": client})
        job = EstimateJob(tuple([0] * 20), ("openai/o3-mini",), VotingConfig(), RedFlagPolicy(), seed=1)
        tally = asyncio.run(estimate_batch(worker, job))
    # each step's first round, and one more round of the step counted first, before the batch's cut-off
    # count reached max_cut_off (the steps are voted concurrently by the engine, `Measure` stops them together)
    assert tally.valid == 0 and VotingConfig().max_cut_off <= tally.samples <= 2 * 20 + 2
    assert tally.red_flags == {"overlong": tally.samples}


def test_the_notice_names_every_setting_litellm_will_drop_and_only_those() -> None:
    from maker.cluster.clients import settings_notice

    o3 = settings_notice(ModelSpec("openai/o3-mini"), 0.0, 0.1)
    assert o3 is not None and "temperature 0 or 0.1 is not sent" in o3 and "stop sequences" not in o3
    gpt5 = settings_notice(ModelSpec("openai/gpt-5-mini"), 1.0, 1.0, stop=("\n",))
    assert gpt5 is not None and "temperature" not in gpt5 and "stop sequences ['\\n'] are not sent" in gpt5
    assert settings_notice(ModelSpec("openai/gpt-4.1-mini"), 0.0, 0.1, stop=("\n",)) is None
    assert settings_notice(ModelSpec("openai/o3-mini", api_base="http://127.0.0.1:9/v1"), 0.0, 0.1) is None  # sent as is
    assert settings_notice(ModelSpec(FunctionClient(lambda p, t, s: "42")), 0.0, 0.1) is None


def test_the_mcp_vote_tool_reads_the_provider_as_maker_vote_does(tmp_path, monkeypatch) -> None:
    """MCP takes model strings only: litellm reaches the fake through OPENAI_API_BASE, as a
    user's gateway would.  Copies in one request count once, content parts vote on their text.
    (The server is `maker mcp`'s own, reached by the SDK's client in this process: the stdio
    transport is `tests/maker/agents/test_mcp_server.py`'s.)"""
    import json

    anyio = pytest.importorskip("anyio")
    pytest.importorskip("mcp")
    from mcp import Client

    from maker.agents.mcp_server import build_server

    def both(call: Call) -> Answer:  # copies_n's 41-copies, worded as content parts
        answer = copies_n(call)
        for choice in answer.json["choices"]:
            choice["message"]["content"] = [{"type": "thinking", "thinking": "hmm"},
                                            {"type": "text", "text": choice["message"]["content"]}]
        return answer

    with FakeProvider(both) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")

        async def main() -> dict:
            async with Client(build_server(tmp_path)) as session:
                result = await session.call_tool("vote", {"prompt": "What is 6*7?", "models": ["openai/gpt-4.1-mini"],
                                                          "k": 3, "key": "integer"})
                assert not result.is_error, result.content
                return result.structured_content or json.loads(result.content[0].text)

        out = anyio.run(main)
    assert out["key"] == "42" and out["votes"] == {"42": 4, "41": 1} and out["red_flags"] == {"non_independent": 1}
