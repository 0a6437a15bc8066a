"""The red-flag policy as data: each detector on table cases, user detectors from Python,
the task and the command line, and the start-up checks that fail a run before anything
is spent.  The only fakes are at the model boundary (a caching `ModelClient`)."""

from __future__ import annotations

import asyncio
import pickle
import types
from collections.abc import Sequence

import pytest
from maker.cluster import Sample, SimulatedModel, parse_sim_model
from maker.cluster.protocol import SampleRequest
from maker.tasks import get_task

from maker.cli.main import main as cli
from maker.config import VotingConfig
from maker.engine.red_flags import (
    BUILTIN,
    DETECTORS,
    REASONS,
    ImportedDetector,
    RedFlagPolicy,
    StepJudge,
    check_detectors,
    load_detector,
    step_failure,
)
from maker.errors import DetectorError, DiscardStreakError, UsageError
from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob

TASK = get_task("hanoi", disks=4)
STEP = TASK.first_step()
GOOD = "move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]"
LONG = "I considered every peg carefully before answering. " * 5 + "\n" + GOOD  # > 200 chars, valid


def _judge(pairs: Sequence[tuple[Sample, float | None]], policy: RedFlagPolicy | None = None, variant: int = 0):
    judge = StepJudge(TASK, STEP, policy or RedFlagPolicy())
    return [judge(sample, temperature, variant) for sample, temperature in pairs]


@pytest.mark.parametrize(
    "pairs,reasons",
    [
        # transport / empty / overlong / binary / code, one sample each
        ([(Sample("", "m", error="Timeout: 60 s"), 0.1)], ["transport"]),
        ([(Sample(" \n\t", "m"), 0.1)], ["empty"]),
        ([(Sample(GOOD, "m", tokens_out=751), 0.1)], ["overlong"]),
        ([(Sample(GOOD, "m", tokens_out=750), 0.1)], [None]),
        ([(Sample(GOOD, "m", tokens_out=3, finish_reason="length"), 0.1)], ["overlong"]),
        ([(Sample(GOOD + "\x07", "m"), 0.1)], ["binary"]),
        ([(Sample("```\n" + GOOD + "\n```", "m"), 0.1)], ["code"]),
        ([(Sample("move = [1, 0, 1]", "m"), 0.1)], ["malformed"]),
        ([(Sample("move = [1, 0, 1]\nnext_state = [[4, 3, 2, 1], [], []]", "m"), 0.1)], ["rule_breaking"]),
        # non_independent: a cache hit, a repeated response id, identical long replies at T > 0
        ([(Sample(GOOD, "m", cached=True), 0.1)], ["non_independent"]),
        ([(Sample(GOOD, "m", response_id="r1"), 0.1), (Sample(GOOD, "m", response_id="r1"), 0.1)], [None, "non_independent"]),
        ([(Sample(GOOD, "m", response_id="r1"), 0.1), (Sample(GOOD, "m", response_id="r2"), 0.1)], [None, None]),
        ([(Sample(LONG, "m"), 0.1), (Sample(LONG, "m"), 0.1)], [None, "non_independent"]),
        ([(Sample(GOOD, "m"), 0.1), (Sample(GOOD, "m"), 0.1)], [None, None]),  # short: identical is expected
        ([(Sample(LONG, "m"), 0.0), (Sample(LONG, "m"), 0.1)], [None, None]),  # only T > 0 replies compared
        # a second temperature-0 vote of the same model on the same prompt
        ([(Sample(GOOD, "a"), 0.0), (Sample(GOOD, "a"), 0.0)], [None, "non_independent"]),
        ([(Sample(GOOD, "a"), 0.0), (Sample(GOOD, "b"), 0.0)], [None, None]),
        ([(Sample("move = [1, 0, 1]", "a"), 0.0), (Sample(GOOD, "a"), 0.0)], ["malformed", None]),  # no vote yet
        ([(Sample(GOOD, "a"), None), (Sample(GOOD, "a"), None)], [None, None]),  # temperature unknown
    ],
)
def test_detectors_on_table_cases(pairs: list[tuple[Sample, float | None]], reasons: list[str | None]) -> None:
    verdicts = _judge(pairs)
    assert [v.red_flag for v in verdicts] == reasons
    for verdict, reason in zip(verdicts, reasons):
        assert (verdict.key is None) == (reason is not None)
        if reason:
            assert reason in REASONS and verdict.detail


def test_temperature_zero_rule_is_per_variant() -> None:
    judge = StepJudge(TASK, STEP, RedFlagPolicy())
    from maker.tasks.builtin.hanoi_variants import render

    assert judge(Sample(GOOD, "a"), 0.0, 0).key
    assert judge(Sample(render(GOOD, 1), "a"), 0.0, 1).key  # another prompt: an independent draw
    assert judge(Sample(render(GOOD, 1), "a"), 0.0, 1).red_flag == "non_independent"


def test_thresholds_are_policy_fields() -> None:
    assert _judge([(Sample(GOOD, "m", tokens_out=100), 0.1)], RedFlagPolicy(max_output_tokens=99))[0].red_flag == "overlong"
    pair = [(Sample(LONG, "m"), 0.1), (Sample(LONG, "m"), 0.1)]
    assert _judge(pair, RedFlagPolicy(identical_min_chars=len(LONG) + 1))[1].red_flag is None
    assert _judge(pair, RedFlagPolicy(identical_min_chars=len(LONG)))[1].red_flag == "non_independent"
    skipped = RedFlagPolicy(skip=frozenset({"code"}))
    assert _judge([(Sample("```\n" + GOOD + "\n```", "m"), 0.1)], skipped)[0].key


def test_no_red_flags_keeps_only_what_cannot_vote() -> None:
    off = RedFlagPolicy(enabled=False)
    assert off.active() == ("transport",)
    cases = [
        (Sample("", "m", error="boom"), "transport"),
        (Sample("move = [1, 0, 1]", "m"), "malformed"),
        (Sample("move = [1, 0, 1]\nnext_state = [[4, 3, 2, 1], [], []]", "m"), "rule_breaking"),
        (Sample(GOOD, "m", tokens_out=5000, finish_reason="length"), None),
        (Sample("```\n" + GOOD + "\n```", "m", cached=True), None),
    ]
    for sample, reason in cases:
        assert StepJudge(TASK, STEP, off)(sample, 0.1).red_flag == reason


def test_every_builtin_is_listed_once_and_named_as_its_reason() -> None:
    names = [name for name, _, _ in BUILTIN]
    assert len(names) == len(set(names)) == len(DETECTORS)
    assert set(REASONS) == {*names, "malformed", "rule_breaking"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"skip": frozenset({"nonsense"})}, "unknown red-flag detector 'nonsense'"),
        ({"skip": frozenset({"transport"})}, "cannot be skipped"),
        ({"extra": (("code", lambda s, c: None),)}, "clashes with a built-in"),
        ({"extra": (("a", lambda s, c: None), ("a", lambda s, c: None))}, "given twice"),
        ({"extra": (("bad name", lambda s, c: None),)}, "plain identifier"),
        ({"max_output_tokens": 0}, "--max-output-tokens"),
        ({"identical_min_chars": 0}, "--identical-min-chars"),
    ],
)
def test_bad_policies_are_usage_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        RedFlagPolicy(**kwargs)


def _too_polite(sample: Sample, ctx) -> str | None:
    return "says please" if "please" in sample.text else None


def test_user_detector_on_the_policy_and_on_the_task() -> None:
    polite = GOOD + "\nplease"
    policy = RedFlagPolicy(extra=(("too_polite", _too_polite),))
    assert _judge([(Sample(polite, "m"), 0.1)], policy)[0].red_flag == "too_polite"
    assert _judge([(Sample(GOOD, "m"), 0.1)], policy)[0].key
    task = get_task("hanoi", disks=4)
    task.red_flags = (("too_polite", _too_polite),)  # the optional task attribute
    verdict = StepJudge(task, task.first_step(), RedFlagPolicy())(Sample(polite, "m"), 0.1)
    assert verdict.red_flag == "too_polite" and verdict.detail == "says please"
    assert StepJudge(task, task.first_step(), RedFlagPolicy(enabled=False))(Sample(polite, "m"), 0.1).key


def test_a_detector_that_raises_is_named() -> None:
    def broken(sample: Sample, ctx) -> str | None:
        raise KeyError("oops")

    judge = StepJudge(TASK, STEP, RedFlagPolicy(extra=(("broken", broken),)))
    with pytest.raises(DetectorError, match="'broken' raised KeyError"):
        judge(Sample(GOOD, "m"), 0.1)
    with pytest.raises(UsageError, match="'broken' raised KeyError.*nothing was spent"):
        check_detectors(TASK, RedFlagPolicy(extra=(("broken", broken),)))


def test_a_detector_that_discards_the_known_good_reply_fails_at_start() -> None:
    everything = RedFlagPolicy(extra=(("paranoid", lambda s, c: "I trust nothing"),))
    with pytest.raises(UsageError, match="'paranoid' discards a known-good reply"):
        check_detectors(TASK, everything)
    hates_letters = RedFlagPolicy(extra=(("no_letters", lambda s, c: "letters" if "A" in s.text else None),))
    check_detectors(TASK, hates_letters, variants=1)
    with pytest.raises(UsageError, match="'no_letters'.*prompt variant 1"):
        check_detectors(TASK, hates_letters, variants=2)


def test_detectors_load_from_a_module_or_a_file_and_pickle_by_name(tmp_path, monkeypatch) -> None:
    (tmp_path / "userchecks.py").write_text(
        "def shouty(sample, ctx):\n    return 'shouting' if sample.text.isupper() else None\n"
    )
    monkeypatch.chdir(tmp_path)
    name, fn = load_detector("userchecks:shouty")
    assert name == "shouty" and fn(Sample("MOVE", "m"), None) == "shouting"
    name2, fn2 = load_detector(f"{tmp_path / 'userchecks.py'}:shouty")
    clone = pickle.loads(pickle.dumps(fn2))
    assert isinstance(clone, ImportedDetector) and clone(Sample("X", "m"), None) == "shouting"
    policy = RedFlagPolicy(extra=((name, fn),))
    assert RedFlagPolicy.from_metadata(policy.to_metadata()).to_metadata() == policy.to_metadata()
    for bad in ("userchecks", "userchecks:nothere", "no_such_module_xyz:f", "missing.py:f"):
        with pytest.raises(UsageError):
            load_detector(bad)


class CachingModel:
    """A fake at the model boundary: a provider that serves repeated prompts from its cache
    (same text, same response id, `cached` set when `flag_hits`), answering right otherwise."""

    def __init__(self, task, flag_hits: bool, name: str = "fake/cache") -> None:
        self.task, self.flag_hits, self.name = task, flag_hits, name
        self.cache: dict[tuple[int, int], tuple[str, str]] = {}
        self.calls = 0

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        out = []
        for r in requests:
            self.calls += 1
            key = (r.step.index, r.variant)
            hit = key in self.cache and r.seed % 2 == 0  # about half the repeats come from the cache
            if not hit:
                text = self.task.variant_reply(r.step, self.task.reference_reply(r.step), r.variant)
                self.cache[key] = (text, f"resp-{self.calls}")
            text, rid = self.cache[key]
            out.append(Sample(text, self.name, 100, 17, response_id=rid, cached=hit and self.flag_hits))
        return out


@pytest.mark.parametrize("flag_hits", [True, False])
def test_a_caching_provider_is_caught(flag_hits: bool) -> None:
    task = get_task("hanoi", disks=4)
    fake = CachingModel(task, flag_hits)
    worker = types.SimpleNamespace(task=task, clients={fake.name: fake})
    job = SegmentJob(task.first_step(), 100, 60.0, VotingConfig(k=2), RedFlagPolicy(), (fake.name,), 7, 14)
    result = asyncio.run(run_segment(worker, job))
    s = result.samples
    assert result.decisions["step"] == list(range(15)) and result.failed_step is None
    flagged = [i for i, flag in enumerate(s["red_flag"]) if flag == "non_independent"]
    assert flagged, "some replies came from the cache"
    ids = {}
    for i, (step, rid, counted) in enumerate(zip(s["step"], s["response_id"], s["counted"])):
        if counted:
            assert (step, rid) not in ids, "a cached copy was counted as a vote"
            ids[(step, rid)] = i
    assert all(not s["counted"][i] for i in flagged)


def test_a_policy_that_discards_everything_stops_after_n_in_a_row() -> None:
    task = get_task("hanoi", disks=4)
    model = "sim:0.99"
    worker = types.SimpleNamespace(task=task, clients={model: SimulatedModel(task, parse_sim_model(model))})
    voting = VotingConfig(k=3, max_discards_in_a_row=10)
    job = SegmentJob(task.first_step(), 100, 60.0, voting, RedFlagPolicy(max_output_tokens=2), (model,), 0, 14)
    result = asyncio.run(run_segment(worker, job))
    assert result.failed_step == 0 and len(result.samples["step"]) == 12  # 10 rounded up to whole rounds of 3
    error = step_failure(result.samples, 0, voting)
    assert isinstance(error, DiscardStreakError) and error.reasons == {"overlong": 12}
    assert "all 12 samples were red-flagged (overlong 12)" in str(error)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--skip-red-flag", "bogus"], "unknown red-flag detector 'bogus'"),
        (["--red-flag", "no_such_module_xyz:check"], "cannot import"),
        (["--k-max", "2"], "--k-max (2) must be an integer >= k (3)"),
        (["--prompt-variants", "9"], "hanoi offers 4 prompt variant"),
        (["--red-flag", "maker.engine.red_flags:code"], "clashes with a built-in"),
    ],
)
def test_cli_bad_red_flag_input_exits_2_and_writes_nothing(tmp_path, capsys, extra: list[str], message: str) -> None:
    log = tmp_path / "run.parquet"
    code = cli(["run", "hanoi", "--disks", "3", "--model", "sim:0.99", "--k", "3", "--log", str(log), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not log.exists()


@pytest.mark.ray
def test_cli_stops_a_run_that_discards_everything_with_the_log_intact(ray_address, tmp_path, capsys) -> None:
    """SIMULATED.  A cap of 3 output tokens discards every reply: the run stops after six
    samples of step 0 with one clear line, and the log holds exactly those samples."""
    from maker.log.steplog import open_log, read_table

    log = tmp_path / "strict.parquet"
    code = cli(["run", "hanoi", "--disks", "4", "--model", "sim:0.99", "--k", "3", "--max-output-tokens", "3",
                "--max-discards-in-a-row", "6", "--quiet", "--log", str(log), "--address", ray_address])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "step 0: all 6 samples were red-flagged (overlong 6)" in err and "--max-discards-in-a-row 6" in err
    table = read_table(open_log(log)).to_pydict()
    assert table["kind"] == ["sample"] * 6 and set(table["red_flag"]) == {"overlong"}


@pytest.mark.parametrize(
    "body,message",
    [
        ("    return 'nothing is good enough'\n", "'paranoid' discards a known-good reply"),
        ("    raise RuntimeError('my bug')\n", "'paranoid' raised RuntimeError: my bug"),
    ],
)
def test_cli_a_broken_user_detector_fails_at_start(tmp_path, capsys, body: str, message: str) -> None:
    checks = tmp_path / "checks.py"
    checks.write_text("def paranoid(sample, ctx):\n" + body)
    log = tmp_path / "run.parquet"
    code = cli(["run", "hanoi", "--disks", "3", "--model", "sim:0.99", "--red-flag", f"{checks}:paranoid",
                "--log", str(log), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "nothing was spent" in err
    assert not log.exists()


def test_the_policy_is_a_plain_frozen_value_and_its_plan_is_cached_outside_it() -> None:
    """#27 §4: the frozen policy held a mutable per-task cache (and pickled around it)."""
    from dataclasses import fields

    policy = RedFlagPolicy(extra=(("never", lambda s, ctx: None),))
    assert set(vars(policy)) == {f.name for f in fields(RedFlagPolicy)}
    first = policy.plan(TASK)
    assert policy.plan(TASK) is first  # worked out once per (policy, task detectors)
    assert set(vars(policy)) == {f.name for f in fields(RedFlagPolicy)}  # still no state after planning
    assert pickle.loads(pickle.dumps(RedFlagPolicy(skip=frozenset({"code"})))) == RedFlagPolicy(skip=frozenset({"code"}))


def test_the_judge_takes_the_cap_from_the_voting_config() -> None:
    """#27 §2: one owner of the output-token cap.  The policy has none of its own (None); the
    judge is handed `VotingConfig.max_output_tokens`, and judged outside a run it falls back
    to that field's default, not to a second copy of the number."""
    long = Sample(GOOD, "m", tokens_out=VotingConfig().max_output_tokens + 1)
    assert RedFlagPolicy().max_output_tokens is None
    assert StepJudge(TASK, STEP, RedFlagPolicy())(long, 0.0).red_flag == "overlong"
    assert StepJudge(TASK, STEP, RedFlagPolicy(), VotingConfig(max_output_tokens=10_000).max_output_tokens)(
        long, 0.0).key is not None
