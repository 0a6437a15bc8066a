"""The step loop that runs inside a Ray worker: vote a run of consecutive steps.

Why in the worker: a chained task cannot batch across steps on the driver (step t+1's
prompt needs step t's decision), and a Ray round trip costs milliseconds.  So the
driver hands a worker a *segment*: a starting premise and a step budget.  The worker
votes each step exactly as the design says (round one draws k samples together, first
at temperature 0; later rounds draw only what the leader still needs; red-flagged
samples never vote), advances on each decision, and returns every sample and decision
in columns.  The driver re-checks every decision from the returned votes before it
accepts and logs them, so a segment is never trusted blindly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from maker.cluster.protocol import Sample, SampleRequest
from maker.cluster.simulator import mix64
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy, StepJudge
from maker.engine.variants import step_prompts, variant_of
from maker.tasks.base import Oracle, StepInput, Verdict
from maker.voting import Ballot

SAMPLE_COLUMNS = (
    "step",
    "sample",
    "model",
    "temperature",
    "reply",
    "answer",
    "red_flag",
    "detail",
    "counted",
    "tokens_in",
    "tokens_out",
    "finish_reason",
    "latency_s",
    "cost_usd",
    "error",
    "cached",
    "response_id",
    "wasted",
    "faults",
)
DECISION_COLUMNS = ("step", "answer", "votes", "samples", "rounds", "correct")


@dataclass(frozen=True)
class SegmentJob:
    start: StepInput
    max_steps: int
    max_seconds: float
    voting: VotingConfig
    policy: RedFlagPolicy
    models: tuple[str, ...]
    run_seed: int
    last_step: int  # index of the task's final step
    #: steps voted ahead of the last decided one, on the premise its leader implies (0: none)
    speculate: int = 0
    #: (model, most requests in flight) pairs; honoured across the speculative window
    in_flight: tuple[tuple[str, int], ...] = ()
    #: fill the window ahead of any reply with the task's reference answers (see maker.runtime.speculation)
    draft: bool = False


@dataclass
class SegmentResult:
    samples: dict[str, list[Any]]
    decisions: dict[str, list[Any]]
    end: StepInput
    failed_step: int | None = None
    elapsed_s: float = 0.0


def sample_row(
    step: int, index: int, model: str, temperature: float, sample: Sample, verdict: Verdict, counted: bool, wasted: bool
) -> tuple[Any, ...]:
    """One sample's values in `SAMPLE_COLUMNS` order: the single place a log row is built,
    so the in-order loop, the speculative window and the DAG runner log alike."""
    return (
        step, index, model, temperature, sample.text, verdict.key, verdict.red_flag, verdict.detail, counted,
        sample.tokens_in, sample.tokens_out, sample.finish_reason, sample.latency_s, sample.cost_usd, sample.error,
        sample.cached, sample.response_id, wasted, ",".join(sample.faults) if sample.faults else None,
    )


def draw_seed(run_seed: int, step_index: int, sample_index: int) -> int:
    """The identity of one draw: the same draw gets the same seed in any schedule."""
    return mix64(run_seed, step_index, sample_index)


async def run_segment(worker: Any, job: SegmentJob) -> SegmentResult:
    """Vote up to `job.max_steps` steps starting at `job.start` (runs in a worker).

    With `job.speculate > 0` the steps are voted through a speculative window (see
    `maker.runtime.speculation`); the decisions are the same, only the schedule differs.
    """
    if job.speculate > 0:
        from maker.runtime.speculation import run_window

        return await run_window(worker, job)
    return await _run_in_order(worker, job)


async def _run_in_order(worker: Any, job: SegmentJob) -> SegmentResult:
    """One step after another: each step's samples are drawn only once its premise is decided."""
    task = worker.task
    clients = worker.clients
    voting = job.voting
    models = job.models
    oracle = isinstance(task, Oracle)
    samples: dict[str, list[Any]] = {c: [] for c in SAMPLE_COLUMNS}
    decisions: dict[str, list[Any]] = {c: [] for c in DECISION_COLUMNS}
    cols = [samples[c] for c in SAMPLE_COLUMNS]
    started = time.perf_counter()
    step = job.start
    failed: int | None = None
    max_tokens = voting.max_output_tokens + 1
    for _ in range(job.max_steps):
        if step.index > job.last_step:
            break
        prompt = step_prompts(task, step, voting.prompt_style, voting.prompt_variants)  # one per variant
        ballot = Ballot(voting.k)
        judge = StepJudge(task, step, job.policy)
        drawn = 0
        rounds = 0
        failed_calls = 0
        winner = None
        while winner is None:
            if voting.gives_up(drawn, ballot.total, failed_calls):
                failed = step.index
                break
            want = voting.k if drawn == 0 else ballot.needed
            want = min(want, voting.max_samples_per_step - drawn)
            rounds += 1
            batch = await _draw(clients, models, task, step, prompt, voting, job.run_seed, drawn, want, max_tokens)
            for offset, (model, temperature, sample) in enumerate(batch):
                verdict = judge(sample, temperature, variant_of(drawn + offset, len(models), voting.prompt_variants))
                answer = verdict.key
                failed_calls += sample.error is not None
                counted = answer is not None and winner is None
                if counted:
                    winner = ballot.add(answer)
                row = sample_row(step.index, drawn + offset, model, temperature, sample, verdict, counted, False)
                for col, value in zip(cols, row):
                    col.append(value)
            drawn += want
        if winner is None:
            break
        correct = None
        if oracle:
            correct = judge.text(task.reference_reply(step)).key == winner
        for col, value in zip(
            (decisions[c] for c in DECISION_COLUMNS), (step.index, winner, ballot.total, drawn, rounds, correct)
        ):
            col.append(value)
        step = task.step_after(step.index, winner)  # winner was judged on this premise
        if time.perf_counter() - started > job.max_seconds:
            break
    return SegmentResult(samples, decisions, step, failed, time.perf_counter() - started)


async def _draw(
    clients: dict[str, Any],
    models: tuple[str, ...],
    task: Any,
    step: StepInput,
    prompt: Any,
    voting: VotingConfig,
    run_seed: int,
    first: int,
    count: int,
    max_tokens: int,
) -> list[tuple[str, float, Sample]]:
    """Draw samples first..first+count-1 of a step, all at once, spread over the models."""
    by_model: dict[str, list[tuple[int, SampleRequest]]] = {}
    for i in range(first, first + count):
        model = models[i % len(models)]
        v = variant_of(i, len(models), voting.prompt_variants)
        request = SampleRequest(prompt[v], voting.temperature_of(i), max_tokens, draw_seed(run_seed, step.index, i), step, v)
        by_model.setdefault(model, []).append((i, request))
    if len(by_model) == 1:
        ((model, pairs),) = by_model.items()
        replies = await clients[model].complete([r for _, r in pairs])
        return [(model, r.temperature, s) for (_, r), s in zip(pairs, replies)]
    names = list(by_model)
    results = await asyncio.gather(*(clients[m].complete([r for _, r in by_model[m]]) for m in names))
    merged: dict[int, tuple[str, float, Sample]] = {}
    for model, replies in zip(names, results):
        for (i, request), sample in zip(by_model[model], replies):
            merged[i] = (model, request.temperature, sample)
    return [merged[i] for i in sorted(merged)]
