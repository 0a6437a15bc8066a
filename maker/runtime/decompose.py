"""The LLM decomposer: a model proposes how to split a problem, votes pick the proposal, recursively.

Why vote on plans: a plan is a decision like any step, and a wrong plan spoils every
step built on it.  So each decomposition request is voted exactly as a step is
(`maker.engine.step.vote_step`: k proposals at once, the first at the first temperature, then
only what the leader needs; red-flagged proposals never vote; the sample cap stops the
run).  Proposals vote on a canonical key (`tasks.plans.solve.parse_proposal`: steps renumbered
in order, whitespace collapsed), so two samples that propose the same plan in different
words of numbering agree; a proposal that is malformed or breaks the plan rules (a
step used before it exists, an unused step, too many steps) is red-flagged.

Recursion: the problem is one request; each sub-problem of the winning proposal is
another, all requests of one depth drawn concurrently, until every sub-problem is
decided `atomic`.  A sub-problem that names results of other steps shows them as its
inputs `#E1..#Em` (renumbered for the model); the decomposer maps them back.  A problem
still not atomic at `max_depth`, or a plan that grows past `max_steps` atomic steps, is
refused with one line naming the step and nothing runs.

The result is a plan of `solve("question")` steps in the `#E` format (`tasks.plans.plan`), which
`maker.run` then executes like any other plan.

Example (scripted model):
    >>> result = plan_problem("Compute (1 + 2) * (3 + 4)", ["script:arith"], VotingConfig(k=2))  # doctest: +SKIP
    >>> print(result.plan.text())                                                              # doctest: +SKIP
    # Compute (1 + 2) * (3 + 4)
    #E1 = solve("Compute 1 + 2")
    #E2 = solve("Compute 3 + 4")
    #E3 = solve("Compute #E1 * #E2")
    answer = #E3
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from maker.budget.spend import billed_usd, usd
from maker.cluster import ModelSpec, check_spec, make_client
from maker.cluster.clients import warn_unsent_settings
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy, step_failure
from maker.engine.rows import SAMPLE_COLUMNS, append_rows, new_columns
from maker.engine.step import vote_step
from maker.errors import BudgetReached, ModelConfigError, UsageError
from maker.runtime.dag import NodeJob
from maker.tasks.base import Prompt, PromptStyle, StepInput, Verdict
from maker.tasks.plans.ops import shapes
from maker.tasks.plans.plan import Plan, PlanError, PlanStep, Ref, fill, make_plan, refs_in, renumber
from maker.tasks.plans.solve import decompose_prompt, parse_proposal, proposal_steps

#: Mixed into the run seed for plan draws, so they never share a seed with a step's draws.
PLAN_SEED_SALT = 0x504C414E


@dataclass(frozen=True)
class DecomposeConfig:
    """Limits of the recursion: depth, atomic steps in the whole plan, steps per proposal."""

    max_depth: int = 4
    max_steps: int = 64
    max_substeps: int = 8

    def __post_init__(self) -> None:
        if self.max_depth < 0 or self.max_steps < 1 or self.max_substeps < 2:
            raise UsageError("--max-depth must be >= 0, --max-steps >= 1 and --max-substeps >= 2")


@dataclass
class PlanVote:
    """One decomposition request and how it was decided."""

    request: int
    depth: int
    problem: str
    inputs: int
    decision: str
    votes: int
    samples: int
    red_flags: int
    proposals: dict[str, int]  # canonical key -> valid samples that proposed it


@dataclass
class Decomposition:
    plan: Plan
    votes: list[PlanVote] = field(default_factory=list)
    samples: int = 0
    red_flags: int = 0
    cost_usd: float = 0.0

    def summary(self) -> list[dict[str, Any]]:
        return [asdict(v) for v in self.votes]


class _ProposalTask:
    """The decomposition request as a step, so `vote_step` votes it like any other."""

    def __init__(self, max_substeps: int) -> None:
        self.max_substeps = max_substeps

    def prompt(self, step: StepInput, style: PromptStyle = "chat") -> Prompt:
        problem, inputs = step.premise
        return decompose_prompt(problem, inputs, self.max_substeps, style)

    def judge(self, step: StepInput, reply: str) -> Verdict:
        return parse_proposal(reply, step.premise[1], self.max_substeps)

    def label(self, index: int) -> str:
        return f"plan request {index}"


class _Planner:
    def __init__(self, clients: dict[str, Any], job: NodeJob, config: DecomposeConfig) -> None:
        self.clients = clients
        self.job = job
        self.config = config
        self.task = _ProposalTask(config.max_substeps)
        self.numbers = itertools.count(1)
        self.atomic: dict[int, str] = {}  # step number -> question template (global placeholders)
        self.alias: dict[int, int] = {}  # a split problem's number -> the number of its last sub-step
        self.result = Decomposition(Plan((), ""))

    async def expand(self, number: int, template: str, depth: int) -> None:
        inputs = list(dict.fromkeys(r.number for r in refs_in(template)))
        local = {g: i + 1 for i, g in enumerate(inputs)}
        shown = fill(template, lambda r: f"#E{local[r.number]}")
        key = await self._vote(number, shown, len(inputs), depth)
        subs = proposal_steps(key)
        if not subs:
            self.atomic[number] = template
            if len(self.atomic) > self.config.max_steps:
                raise PlanError(f"the plan grew past {self.config.max_steps} atomic steps (--max-steps)")
            return
        if depth >= self.config.max_depth:
            raise PlanError(
                f"step #E{number} ({_clip(template)!r}): still not atomic at depth {depth} (--max-depth {self.config.max_depth})"
            )
        new = [next(self.numbers) for _ in subs]
        glob = {**{i + 1: g for i, g in enumerate(inputs)}, **{len(inputs) + j + 1: n for j, n in enumerate(new)}}
        self.alias[number] = new[-1]
        await asyncio.gather(*(
            self.expand(n, fill(text, lambda r: f"#E{glob[r.number]}"), depth + 1) for n, text in zip(new, subs)
        ))

    async def _vote(self, number: int, problem: str, inputs: int, depth: int) -> str:
        job = self.job
        vote = await vote_step(self.task, self.clients, StepInput(number, (problem, inputs)), job.voting, job.policy,
                               job.models, job.run_seed, job.budget)
        drawn = len(vote.rows)
        flags = sum(verdict.red_flag is not None for _, _, _, _, verdict, _ in vote.rows)
        self.result.samples += drawn
        self.result.red_flags += flags
        self.result.cost_usd += sum(billed_usd(sample) for _, _, _, sample, _, _ in vote.rows)
        if vote.budget_stop:
            budget = job.budget
            raise BudgetReached(
                f"budget reached while planning: {usd(budget.spent_usd)} of {usd(budget.cap_usd)} spent on "
                f"{len(self.result.votes)} plan requests; nothing was run (raise --max-cost)",
                spent_usd=budget.spent_usd, cap_usd=budget.cap_usd)
        if vote.winner is None:  # the shared give-up error: endpoint down, every proposal discarded, or the cap
            columns = new_columns(SAMPLE_COLUMNS)
            append_rows(columns, number, vote.rows)
            raise step_failure(columns, number, job.voting, name=f"decomposing {_clip(problem)!r}",
                               after="nothing was run")
        proposals: dict[str, int] = {}
        for _, _, _, _, verdict, _ in vote.rows:
            if verdict.key is not None:
                proposals[verdict.key] = proposals.get(verdict.key, 0) + 1
        self.result.votes.append(PlanVote(number, depth, problem, inputs, vote.winner, vote.ballot.total, drawn, flags,
                                          proposals))
        return vote.winner

    def plan(self, problem: str) -> Plan:
        def resolve(n: int) -> int:
            while n in self.alias:
                n = self.alias[n]
            return n

        def rename(ref: Ref) -> str:
            return f"#E{resolve(ref.number)}"

        steps = [PlanStep(n, "solve", (fill(t, rename),)) for n, t in sorted(self.atomic.items())]
        plan = make_plan(steps, f"#E{resolve(1)}", shapes(), " ".join(problem.split()))
        return renumber(plan, shapes())


async def decompose(
    problem: str,
    clients: dict[str, Any],
    models: Sequence[str],
    voting: VotingConfig,
    *,
    config: DecomposeConfig | None = None,
    policy: RedFlagPolicy | None = None,
    seed: int = 0,
    budget: Any = None,
) -> Decomposition:
    """Plan `problem` with voted decomposition requests (see the module docstring); with a
    `budget` (`maker.budget.spend.Budget`) every request's rounds are charged to it, and
    BudgetReached is raised when one does not fit."""
    if not problem.strip():
        raise UsageError("the problem is empty")
    config = config or DecomposeConfig()
    policy = policy or RedFlagPolicy()
    job = NodeJob((), voting, policy, tuple(models), seed ^ PLAN_SEED_SALT, budget)
    planner = _Planner(clients, job, config)
    root = next(planner.numbers)
    await planner.expand(root, " ".join(problem.split()), 0)
    planner.result.plan = planner.plan(problem)
    planner.result.votes.sort(key=lambda v: v.request)
    return planner.result


def plan_problem(
    problem: str,
    models: Sequence[ModelSpec | str],
    voting: VotingConfig | None = None,
    *,
    config: DecomposeConfig | None = None,
    policy: RedFlagPolicy | None = None,
    seed: int = 0,
    budget: Any = None,
) -> Decomposition:
    """`decompose` with model clients built here, in-process (planning is a few dozen calls)."""
    voting = voting or VotingConfig()
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    if not specs:
        raise UsageError("at least one --model is needed")
    for spec in specs:
        check_spec(spec)
        if spec.answers_from_ground_truth:
            raise ModelConfigError(
                f"{spec.model}: the simulator answers from ground truth, and a free-form problem has none "
                "(use a real model, or script:arith to try it)",
                model=spec.model,
            )
    tiers = [ModelSpec(m) for m in voting.escalation_models if m not in {s.model for s in specs}]
    warn_unsent_settings((*specs, *tiers), voting.first_temperature, voting.temperature)  # before the first call
    clients = {s.model: make_client(s, None) for s in (*specs, *tiers)}  # type: ignore[arg-type]  # tiers draw too
    return asyncio.run(decompose(problem, clients, [s.model for s in specs], voting, config=config, policy=policy, seed=seed,
                                 budget=budget))


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def solve(
    problem: str,
    models: Sequence[ModelSpec | str],
    voting: VotingConfig | None = None,
    *,
    config: DecomposeConfig | None = None,
    log: Any = None,
    seed: int = 0,
    cluster: Any = None,
    policy: RedFlagPolicy | None = None,
    progress: Any = None,
) -> tuple[Decomposition, Any]:
    """Plan `problem` (voted decomposition) and run the plan on Ray workers: (plan, RunResult).

    The run's log metadata holds the problem, the voted plan (in the task spec, so
    `maker replay --verify` rebuilds it) and a summary of every plan vote (`plan_votes`).
    """
    from maker.runtime.driver import run
    from maker.tasks.plans.plan_task import solve_task

    voting = voting or VotingConfig()
    decomposition = plan_problem(problem, models, voting, config=config, policy=policy, seed=seed)
    task = solve_task(problem, decomposition.plan.text())
    result = run(task, models, voting, log=log, seed=seed, cluster=cluster, policy=policy, progress=progress,
                      extra_meta={"plan_votes": decomposition.summary()})
    result.extra["plan_samples"] = decomposition.samples
    result.extra["plan_red_flags"] = decomposition.red_flags
    return decomposition, result

