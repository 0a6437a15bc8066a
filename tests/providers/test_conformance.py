"""Provider conformance: every personality, through both client paths, `maker.vote` and `maker run`.

One table, personality -> expected outcome.  The model boundary is the fake provider
(`fake_provider`); the clients, retries, reading, judging, voting and the step log are the
real code.  Client paths: ``compat`` is `OpenAICompatibleClient` (``openai/NAME`` at an
``api_base``), ``litellm`` is `LiteLLMClient` (for `maker.vote` the client object itself on
``openai/fake``; for `maker run` the provider string ``hosted_vllm/fake``, which litellm
serves), ``hosted`` is the provider string ``hosted_vllm/fake`` given to `maker.vote` as a
`ModelSpec` (the client `make_client` builds, as a run's worker does).  The question is
"What is 6*7?" voted with ``key="integer"`` and k = 3.  `maker run` costs a Ray worker per
run, so the personalities that succeed on the OpenAI-compatible path share one run, a step
each (`test_run_of_many`), and each step is checked against its own case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fake_provider import FakeProvider
from maker.cluster import ModelSpec
from maker.cluster.http.litellm_client import LiteLLMClient
from maker.cluster.http.transport import EndpointConfig
from personalities import PERSONALITIES

import maker
from maker.errors import MakerError

QUESTION = "What is 6*7?"
PATHS = ("compat", "litellm")


@dataclass(frozen=True)
class Expect:
    """What must happen.  `key`: the decided vote key (None: the call fails, with `error` in
    its one-line message); `flags`: red-flag reason -> a phrase its detail must hold, for
    reasons that must appear; `faults`: exactly the fault kinds the log records (retried
    attempts); `root`: the client is given the base URL without ``/v1``; `max_samples`: the
    most samples the call may draw; `reasoning`: every sample's logged reasoning tokens."""

    key: str | None = "42"
    error: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    faults: frozenset[str] = frozenset()
    root: bool = False
    max_samples: int | None = None
    reasoning: int | None = None
    timeout_s: float = 10.0  # the call's deadline (--timeout)
    max_failed_calls: int | None = None  # the vote's `VotingConfig.max_failed_calls` (None: its default)


UNFINISHED = ("content_filter", "tool_calls", "function_call", "error", "something_new")

CASES: dict[str, Expect] = {
    "honest": Expect(),
    "429_seconds": Expect(faults=frozenset({"rate_limited"})),
    "429_date": Expect(faults=frozenset({"rate_limited"})),
    "429_retry_after_ms": Expect(faults=frozenset({"rate_limited"})),
    "500": Expect(faults=frozenset({"server_error"})),
    "503": Expect(faults=frozenset({"server_error"})),
    "truncated_json": Expect(faults=frozenset({"bad_json"})),
    "no_v1": Expect(root=True),
    "huge": Expect(flags={"overlong": "output tokens >"}),
    "copies_n": Expect(flags={"non_independent": "a copy of one draw"}),
    "content_parts": Expect(),  # the text part votes; the thinking part (naming 41) does not; nothing retried
    "thinking_only": Expect(key=None, error="(empty 5"),  # no text part: an empty reply, never the list's repr
    "refusal": Expect(flags={"unfinished": "finish_reason=refusal"}),
    "tool_calls_no_content": Expect(flags={"unfinished": "finish_reason=tool_calls"}),
    **{f"finish_{r}": Expect(flags={"unfinished": f"finish_reason={r}"}) for r in UNFINISHED},
    "finish_length": Expect(flags={"overlong": "finish_reason=length"}),
    "finish_null": Expect(),  # no finish_reason at all (older servers): a normal stop
    "reasoning_cut": Expect(key=None, error="cut off at the output cap", max_samples=6),
    "reasoning": Expect(reasoning=30),
    # section 5: every call ends by its deadline (trickle: one byte every 5 s); a one-at-a-time server is served
    # (the first round's failed calls end the vote: each retries 4 times, waiting out its deadline and back-off)
    "trickle": Expect(key=None, error="Timeout: no complete answer within 1 s", faults=frozenset({"timeout"}),
                      timeout_s=1.0, max_failed_calls=1),
    "one_at_a_time": Expect(),
    # section 7: a 401 echoing the key (JSON-escaped, URL-encoded, base64) fails the call; test_secrets checks
    # that the key is nowhere
    "echo_key_401": Expect(key=None, error="AuthenticationError", faults=frozenset({"auth"})),
    "cached_prefix": Expect(),
}


def test_every_personality_has_an_expected_outcome() -> None:
    assert set(CASES) == set(PERSONALITIES)


def vote_model(path: str, base: str, timeout_s: float = 10.0) -> object:
    if path == "compat":
        return ModelSpec("openai/fake", api_base=base, timeout_s=timeout_s)
    if path == "hosted":
        return ModelSpec("hosted_vllm/fake", api_base=base, timeout_s=timeout_s)
    return LiteLLMClient(EndpointConfig("openai/fake", api_base=base, timeout_s=timeout_s, backoff_s=0.05))


def sample_rows(log: Path) -> dict[str, list]:
    table = pq.read_table(log)
    return table.filter(pc.equal(table["kind"], "sample")).to_pydict()


def check_log(expect: Expect, rows: dict[str, list]) -> None:
    faults = {kind for cell in rows["faults"] if cell for kind in cell.split(",")}
    assert faults == expect.faults
    for reason, phrase in expect.flags.items():
        details = [d for f, d in zip(rows["red_flag"], rows["detail"]) if f == reason]
        assert details and all(phrase in d for d in details), (reason, details)
    unexpected = {f for f in rows["red_flag"] if f} - set(expect.flags) - ({"empty"} if expect.key is None else set())
    assert not unexpected or expect.key is None, unexpected
    if expect.max_samples is not None:
        assert len(rows["sample"]) <= expect.max_samples
    if expect.reasoning is not None:
        assert rows["reasoning_tokens"] == [expect.reasoning] * len(rows["sample"])
    votes = [a for a, c in zip(rows["answer"], rows["counted"]) if c]
    if expect.key is not None:
        assert votes.count(expect.key) >= 3 and set(votes) <= {expect.key, "41"}


#: the personalities whose litellm reading `maker run` checked on ``hosted_vllm/fake``: voted
#: in-process on that provider string too (`test_run_of_many` keeps two of them, one success
#: and one failure, through a run's Ray worker)
HOSTED = ("honest", "copies_n", "content_parts", "finish_something_new", "reasoning_cut", "500")
VOTE_CASES = [(name, path) for name in CASES for path in PATHS] + [(name, "hosted") for name in HOSTED]


@pytest.mark.parametrize(("name", "path"), VOTE_CASES)
def test_vote(name: str, path: str, tmp_path: Path) -> None:
    expect = CASES[name]
    log = tmp_path / "vote.parquet"
    voting = maker.VotingConfig(k=3, max_failed_calls=expect.max_failed_calls) if expect.max_failed_calls else None
    with FakeProvider(PERSONALITIES[name]) as server:
        model = vote_model(path, server.root if expect.root else server.url, expect.timeout_s)
        if expect.key is None:
            with pytest.raises(MakerError, match=expect.error and __import__("re").escape(expect.error)):
                maker.vote(QUESTION, [model], k=3, key="integer", log=log, seed=5, voting=voting)
        else:
            result = maker.vote(QUESTION, [model], k=3, key="integer", log=log, seed=5, voting=voting)
            assert result.key == expect.key
            for reason in expect.flags:
                assert result.red_flags.get(reason, 0) >= 1, result.red_flags
    check_log(expect, sample_rows(log))


RUN_MODEL = {"compat": "openai/fake", "litellm": "hosted_vllm/fake"}


#: `maker run` costs a Ray worker per run (~2 s idle; a litellm run's worker also imports
#: litellm, ~7 CPU-seconds): every personality on the OpenAI-compatible path, and on litellm
#: one success and one failure through the worker -- the personalities its own code reads
#: differently (content parts, finish reasons it maps to "stop", reasoning usage, n copies, a
#: server error) are voted on the same provider string in-process (`test_vote`, path
#: ``hosted``: the client `make_client` builds, in the driver instead of a worker).  On the
#: OpenAI-compatible path the personalities that succeed share one run, a step each
#: (`test_run_of_many`), copies last (once seen, the client stops asking for n choices: a
#: later case would not get n); a run of its own for those that fail (the run stops there),
#: the one that needs another base URL and the one-at-a-time server (it ignores n too).  On
#: litellm, one run: honest, then reasoning_cut, which stops it.
ALONE = ("no_v1", "one_at_a_time")
RUN_CASES = [(name, "compat") for name in CASES
             if CASES[name].timeout_s == 10.0 and (CASES[name].key is None or name in ALONE)]
MANY = [name for name in CASES if CASES[name].timeout_s == 10.0 and (name, "compat") not in RUN_CASES
        and name != "copies_n"] + ["copies_n"]
RUNS_OF_MANY = {"compat": MANY, "litellm": ["honest", "reasoning_cut"]}


@pytest.mark.ray
@pytest.mark.parametrize(("name", "path"), RUN_CASES)
def test_run(name: str, path: str, tmp_path: Path, maker_cli, ray_address: str) -> None:
    """The same through `maker run` (a one-step task, Ray workers, in-order rounds so that
    same-prompt samples share requests with n)."""
    expect = CASES[name]
    log = tmp_path / "run.parquet"
    with FakeProvider(PERSONALITIES[name]) as server:
        done = maker_cli(
            "run", "--task", "maker.tasks.builtin.one_prompt:OnePrompt", "--opt", f"prompt={QUESTION}", "--opt", "key=integer",
            "--model", RUN_MODEL[path], "--api-base", server.root if expect.root else server.url, "--timeout", "10",
            "--address", ray_address, "--speculate", "0", "--seed", "5", "--log", str(log), "--quiet",
        )
    if expect.key is None:
        assert done.returncode == 1 and expect.error in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
    check_log(expect, sample_rows(log))


@pytest.mark.ray
@pytest.mark.parametrize("path", list(RUNS_OF_MANY))
def test_run_of_many(path: str, tmp_path: Path, maker_cli, ray_address: str) -> None:
    """`test_run` for several personalities in one run: step i asks the question tagged with
    case i (`case_steps.CaseSteps`) and the fake answers it as that case's personality,
    counting that case's requests alone (`case_steps.routed`); each step's samples are
    checked against its case's expectation, and a case that fails ends the run (the last)."""
    from case_steps import routed

    cases = RUNS_OF_MANY[path]
    log = tmp_path / "run.parquet"
    task = Path(__file__).with_name("case_steps.py")
    with FakeProvider(routed({name: PERSONALITIES[name] for name in cases}), max_requests=2000) as server:
        done = maker_cli(
            "run", "--task", f"{task}:CaseSteps", "--opt", f"cases={','.join(cases)}",
            "--model", RUN_MODEL[path], "--api-base", server.url, "--timeout", "10",
            "--address", ray_address, "--speculate", "0", "--seed", "5", "--log", str(log), "--quiet",
        )
    last = CASES[cases[-1]]
    if last.key is None:
        assert done.returncode == 1 and last.error in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
    rows = sample_rows(log)
    for step, name in enumerate(cases):
        mine = [i for i, s in enumerate(rows["step"]) if s == step]
        assert mine, name
        try:
            check_log(CASES[name], {column: [values[i] for i in mine] for column, values in rows.items()})
        except AssertionError as exc:
            raise AssertionError(f"case {name} (step {step}): {exc}") from exc
