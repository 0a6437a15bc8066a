"""Decorrelation and correlated errors: prompt variants map back to one key, the simulator's
correlation knobs do what they say, and on the simulator (SIMULATED results) correlated
hard steps defeat plain voting while the live guard raises k and saves the run; replay
with the run's own policy reproduces every decision.  No fakes: the simulator is the
model."""

from __future__ import annotations

import json
import math

import pytest
from maker.cluster import SimulatedModel, parse_sim_model
from maker.cluster.protocol import SampleRequest
from maker.tasks import get_task
from maker.tasks.base import variants_of
from maker.tasks.builtin.hanoi_variants import SURFACES, render

from maker.audit.verify import verify_log
from maker.audit.whatif import whatif_log
from maker.cli.main import main as cli
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy, StepJudge
from maker.engine.variants import step_prompts, variant_of
from maker.runtime.driver import ClusterConfig, run
from maker.runtime.guard import GuardConfig

TASK = get_task("hanoi", disks=5)


def trajectory(task):
    step = task.first_step()
    for index in range(task.total_steps):
        yield step
        step = task.step_after(index, task.truth(index))


def test_every_variant_maps_back_to_the_canonical_key() -> None:
    assert variants_of(TASK) == len(SURFACES) == 4
    for step in trajectory(TASK):
        right = TASK.judge(step, TASK.reference_reply(step)).key
        assert right == TASK.truth(step.index)
        wrongs = {TASK.judge(step, w).key for w in TASK.wrong_replies(step)}
        for v in range(1, TASK.variants):
            assert TASK.judge(step, render(TASK.reference_reply(step), v), variant=v).key == right
            assert {TASK.judge(step, render(w, v), variant=v).key for w in TASK.wrong_replies(step)} == wrongs
            for kind in ("malformed", "rule_breaking"):
                assert TASK.judge(step, render(TASK.broken_reply(step, kind), v), variant=v).red_flag == kind


def test_a_reply_read_in_the_wrong_variant_does_not_pass_for_the_right_answer() -> None:
    for step in list(trajectory(TASK))[:12]:
        right = TASK.truth(step.index)
        for v in range(1, TASK.variants):
            text = render(TASK.reference_reply(step), v)
            if text != TASK.reference_reply(step):
                assert TASK.judge(step, text).key != right  # read as canonical: not the same answer
            assert TASK.judge(step, TASK.reference_reply(step), variant=v).key in (None, right)


def test_variant_prompts_say_the_same_step_differently() -> None:
    step = list(trajectory(TASK))[6]
    prompts = step_prompts(TASK, step, "chat", TASK.variants)
    assert prompts[0] == TASK.prompt(step)  # variant 0 is the canonical prompt, unchanged
    texts = [p[0]["content"] + p[1]["content"] for p in prompts]
    assert len(set(texts)) == TASK.variants
    for surface, text in zip(SURFACES, texts):
        assert all(name in text for name in surface.names)
    assert step_prompts(TASK, step, "completion", 2)[1].endswith("move = [")
    with pytest.raises(ValueError):
        TASK.prompt(step, "chat", variant=TASK.variants)


@pytest.mark.parametrize("models", [1, 2, 3, 4])
@pytest.mark.parametrize("variants", [1, 2, 3, 4])
def test_samples_meet_every_model_variant_pair(models: int, variants: int) -> None:
    pairs = {(i % models, variant_of(i, models, variants)) for i in range(models * variants)}
    assert len(pairs) == models * variants and variant_of(0, models, variants) == 0
    counts = [variant_of(i, models, variants) for i in range(12 * models * variants)]
    assert max(counts.count(v) for v in range(variants)) - min(counts.count(v) for v in range(variants)) == 0


def _draws(model: str, step, n: int, variant: int = 0, max_tokens: int = 751):
    sim = SimulatedModel(TASK, parse_sim_model(model))
    prompt = TASK.prompt(step, "chat", variant)
    return [sim.reply(SampleRequest(prompt, 0.1, max_tokens, seed, step, variant)) for seed in range(n)]


def test_confused_errors_carry_symptoms_that_red_flags_catch() -> None:
    step = TASK.first_step()
    right = TASK.truth(0)
    draws = _draws("sim:0.5,confused=1", step, 400)
    on, off = RedFlagPolicy(), RedFlagPolicy(enabled=False)
    wrong = [d for d in draws if TASK.judge(step, d[0].replace("```", "")).key != right]
    assert 120 < len(wrong) < 280
    reasons = set()
    for text, tokens, finish in wrong:
        from maker.cluster import Sample

        sample = Sample(text, "sim", 10, tokens, finish)
        verdict_on = StepJudge(TASK, step, on)(sample, 0.1)
        assert verdict_on.red_flag in ("overlong", "code")
        reasons.add(verdict_on.red_flag)
        assert StepJudge(TASK, step, off)(sample, 0.1).key not in (None, right)  # without red flags: a wrong vote
    assert reasons == {"overlong", "code"}
    plain = _draws("sim:0.5", step, 400)
    assert all(finish == "stop" and "```" not in text for text, _, finish in plain)


def test_variant_bias_ties_hard_step_errors_to_variant_zero() -> None:
    sim = SimulatedModel(TASK, parse_sim_model("sim:1.0,hard=1,hard_p=0.3,variant_bias=1"))
    step = TASK.first_step()
    right = TASK.truth(0)
    for variant, low, high in ((0, 0.2, 0.4), (1, 1.0, 1.0), (2, 1.0, 1.0)):
        prompt = TASK.prompt(step, "chat", variant)
        keys = [TASK.judge(step, sim.reply(SampleRequest(prompt, 0.1, 751, s, step, variant))[0], variant=variant).key
                for s in range(300)]
        share = keys.count(right) / len(keys)
        assert low <= share <= high, (variant, share)
        assert len({k for k in keys if k != right}) <= 1  # hard steps: every error names the same answer


# -- on the simulator, through Ray -------------------------------------------------------
HARD = "sim:0.998,hard=0.2,hard_p=0.8,seed=3"  # a fifth of the steps: accuracy 0.8, errors all alike


@pytest.mark.ray
def test_correlated_hard_steps_defeat_plain_voting_and_the_guard_saves_the_run(ray_address, tmp_path) -> None:
    """SIMULATED.  At k = 3 the hard steps lose some votes (about 1.5% of them each); the
    guard sees p's low end under the plan and collisions far beyond independence, raises k,
    and the same seeded run ends with no wrong decision."""
    task = get_task("hanoi", disks=10)
    cluster = ClusterConfig(segment_steps=32)
    plain = run(task, [HARD], VotingConfig(k=3), seed=3, cluster=cluster, guard=GuardConfig(), log=tmp_path / "plain")
    assert plain.errors > 0 and plain.extra["guard"]["k"] == 3
    assert any(e["event"] == "alarm" for e in plain.extra["guard"]["events"])
    guarded = run(task, [HARD], VotingConfig(k=3), seed=3, cluster=cluster,
                  guard=GuardConfig(adaptive=True, k_max=12), log=tmp_path / "guarded")
    g = guarded.extra["guard"]
    assert guarded.errors == 0 and guarded.solved
    assert g["k_start"] == guarded.k == 3 < g["k"] <= 12
    assert [e for e in g["events"] if e["event"] == "k_raise"] and g["collision_ratio"] > 1
    assert 0 < g["p_low"] <= g["p_hat"] <= g["p_high"] <= 1 and 0 <= g["success"] <= 1
    # The log keeps the starting k; its event rows let replay audit every decision at its own k.
    report = verify_log(tmp_path / "guarded")
    assert report.valid and report.solved
    again = whatif_log(tmp_path / "guarded")
    assert again.reproduces and again.steps == task.total_steps and again.samples_saved == 0
    assert whatif_log(tmp_path / "plain").reproduces


@pytest.mark.ray
def test_replay_under_the_runs_own_policy_reproduces_every_decision(ray_address, tmp_path, capsys) -> None:
    """SIMULATED.  Red flags of every kind, three prompt variants and the temperature-0
    rule all in play; re-judging the logged samples must give back every decision."""
    log = tmp_path / "mixed"
    code = cli([
        "run", "hanoi", "--disks", "8", "--model", "sim:0.95,redflag=0.1,confused=0.5,hard=0.05,variant_bias=1",
        "--k", "3", "--prompt-variants", "3", "--log", str(log), "--json", "--quiet", "--address", ray_address,
    ])
    result = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and result["steps"] == 255 and result["simulated"]
    assert {"overlong", "code", "malformed"} <= set(result["red_flags_by_reason"])
    assert not math.isnan(result["extra"]["guard"]["p_hat"])
    assert cli(["replay", str(log), "--rejudge", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["reproduces"] and same["flags"] == same["logged_flags"] and not same["flags_added"]
    assert cli(["replay", str(log), "--no-red-flags", "--json"]) == 0
    loose = json.loads(capsys.readouterr().out)
    assert loose["flags_removed"] and loose["samples_saved"] > 0 and loose["steps"] == 255
    assert cli(["replay", str(log), "--max-output-tokens", "5", "--json"]) == 0
    tight = json.loads(capsys.readouterr().out)
    assert tight["undecidable"] == 255 and tight["flags_added"]["overlong"] > 0
    # A log whose replies do not back its votes fails the audit: garble one counted reply.
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = sorted(log.glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    rows = table.to_pydict()
    first = next(i for i, (k, c) in enumerate(zip(rows["kind"], rows["counted"])) if k == "sample" and c)
    rows["reply"][first] = "no answer here"
    pq.write_table(pa.Table.from_pydict(rows, schema=table.schema), part)
    assert cli(["replay", str(log), "--rejudge", "--json"]) == 1
    assert not json.loads(capsys.readouterr().out)["reproduces"]


def test_speculation_judges_in_sample_order_with_variants_and_temperature_zero() -> None:
    """SIMULATED.  Replies arrive out of order in the speculative window; the checks that
    compare a sample with earlier ones (here: a second temperature-0 vote of one model on
    one variant) must still see sample order, so decisions and verdicts equal the in-order run's."""
    import asyncio
    import types

    from maker.runtime.chain.loop import run_segment
    from maker.runtime.chain.segment import SegmentJob

    task = get_task("hanoi", disks=6)
    models = ("sim:0.95,redflag=0.1,confused=0.5,latency=0.001,jitter=0.004", "sim:0.9,seed=2,latency=0.001,jitter=0.004")
    voting = VotingConfig(k=2, first_temperature=0.0, temperature=0.0, prompt_variants=4)  # 8 (model, variant) pairs
    rows = []
    for depth in (0, 4):
        worker = types.SimpleNamespace(task=task, clients={m: SimulatedModel(task, parse_sim_model(m)) for m in models})
        job = SegmentJob(task.first_step(), 100, 60.0, voting, RedFlagPolicy(), models, 11, 62, speculate=depth)
        result = asyncio.run(run_segment(worker, job))
        s = result.samples
        live = sorted((st, i, f, c) for st, i, f, c, w in zip(s["step"], s["sample"], s["red_flag"], s["counted"], s["wasted"])
                      if not w)
        rows.append((result.decisions["step"], result.decisions["answer"], live))
    assert rows[0] == rows[1]
    assert len(rows[0][0]) > 20
    assert any(flag == "non_independent" for _, _, flag, _ in rows[0][2])
