"""A plan (`tasks.plans.plan`) as a task: what the DAG runner, the simulator and the audit ask of it.

Why an adapter: the runner, the red-flag judge and the simulator all speak `Task` and
`Oracle` over a `StepInput`.  A plan step becomes a `StepInput` whose index is the
step's position in the plan (its node index, the `step` column of the log) and whose
premise is `(operation, inputs)` with every placeholder already filled in from the
decided steps it names.  So a plan step is prompted, judged and simulated exactly like
a chained step, on exactly the values it depends on and nothing else.

`maker.runtime.dag` runs a `PlanTask`.  The chain methods (`first_step`, `step_after`,
`advance`) work when the plan is a path (each step needs only the one before it, as in
long addition): such a plan also runs on the chain runner `maker.run`, with the same
decisions -- a chain is a DAG that happens to be a path.

`OraclePlanTask` adds ground truth when every operation in the plan has it (mul,
column, cmp): the true value of each step is its operation applied to the true values
of its inputs, so a run's errors are counted per step like Hanoi's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..base import Prompt, PromptStyle, StepInput, TaskOption, TaskSpec, Verdict, checked_advance
from .ops import OPS
from .plan import Plan, PlanError, field_value, fill, parse_plan, refs_in

#: The premise of the step after the last one of a path: the task is done.
END = "end"


class PlanTask:
    """A checked plan whose steps are prompted and judged by their operations."""

    name = "plan"

    def __init__(self, plan: Plan, spec: TaskSpec, title: str | None = None, ops: Mapping[str, Any] | None = None) -> None:
        self.plan = plan
        self.spec = spec
        self.title = title
        #: name -> operation: the built-ins plus the user's own operations and tools (tasks/plans/user_ops.py)
        self.ops: Mapping[str, Any] = ops if ops is not None else OPS
        for step in plan.steps:
            op = self.ops[step.op]
            for position, arg in enumerate(step.args):
                if not refs_in(arg):
                    why = op.check_arg(position, arg)
                    if why is not None:
                        raise PlanError(f"step #{step.id}: {step.op} {why}")

    # -- the plan ---------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return len(self.plan.steps)

    def is_tool(self, index: int) -> bool:
        """Whether node `index` is a tool step: run once on its decided inputs, never voted."""
        return bool(getattr(self.ops[self.plan.steps[index].op], "is_tool", False))

    def is_pure_tool(self, index: int) -> bool:
        """Whether node `index` is a tool declared free of side effects (`tool(..., pure=True)`):
        only such a tool is ever run again (for ground truth, by `replay --verify`)."""
        return self.is_tool(index) and bool(getattr(self.ops[self.plan.steps[index].op], "pure", False))

    def voted_steps(self) -> list[int]:
        """Indices of the steps a model answers (every step but the tool steps), in plan order."""
        return [i for i in range(self.total_steps) if not self.is_tool(i)]

    def run_tool(self, step: StepInput) -> str:
        """A tool step's answer on its filled-in inputs (ToolError, one line, when it raises).
        Runs the user's function: the DAG runner calls it once per tool step and run."""
        op, args = step.premise
        return self.ops[op].run(args)

    def label(self, index: int) -> str:
        """`#E12 column`: how the log's decision rows name a node (in their `detail` column)."""
        step = self.plan.steps[index]
        return f"#{step.id} {step.op}"

    def step_input(self, index: int, values: Mapping[int, str]) -> StepInput:
        """Node `index` with its inputs filled in from `values` (node index -> decided answer).

        KeyError when an input is not decided yet: the runner only asks for ready nodes.
        """
        step = self.plan.steps[index]
        where = self.plan.index
        args = tuple(fill(a, lambda r: field_value(values[where[r.step_id]], r.field)) for a in step.args)
        return StepInput(index, (step.op, args))

    def final_answer(self, values: Mapping[int, str]) -> str:
        """The plan's answer template filled in from the decided steps."""
        where = self.plan.index
        return self.normalize_answer(fill(self.plan.answer, lambda r: field_value(values[where[r.step_id]], r.field)))

    def normalize_answer(self, text: str) -> str:
        """How the filled-in answer template is written (identity; arithmetic drops leading zeros)."""
        return text

    def describe(self) -> str:
        """A short name for summaries (the spec of a plan file or a solve holds the whole plan)."""
        return self.title or self.spec.describe()

    # -- Task -------------------------------------------------------------------------
    #: prompt variants: 0 is the operation's own prompt; 1 restates it with the inputs
    #: listed first (same question, same reply format, same vote key)
    variants = 2

    def prompt(self, step: StepInput, style: PromptStyle = "chat", variant: int = 0) -> Prompt:
        op, args = step.premise
        prompt = self.ops[op].prompt(args, style)
        if not variant:
            return prompt
        lead = f"Inputs: {', '.join(args)}. Answer exactly in the format shown, nothing else."
        if isinstance(prompt, str):
            return f"{lead}\n\n{prompt}"
        return [*prompt[:-1], {**prompt[-1], "content": f"{lead}\n{prompt[-1]['content']}"}]

    def judge(self, step: StepInput, reply: str, variant: int = 0) -> Verdict:
        op, args = step.premise
        if op == END:
            return Verdict(None, "rule_breaking", "the plan is already done")
        return self.ops[op].judge(args, reply)

    def first_step(self) -> StepInput:
        return self.step_input(0, {})

    def step_after(self, index: int, key: str) -> StepInput:
        nxt = index + 1
        if nxt >= self.total_steps:
            return StepInput(nxt, (END, (key,)))
        if not set(self.plan.deps(nxt)) <= {index}:
            raise ValueError(
                f"step {nxt} ({self.label(nxt)}) needs more than step {index}: this plan is not a chain; run it with maker.runtime.dag"
            )
        return self.step_input(nxt, {index: key})

    def advance(self, step: StepInput, key: str) -> StepInput:
        return checked_advance(self, step, key)

    def is_solved(self, step: StepInput) -> bool:
        return step.index == self.total_steps

    def describe_premise(self, step: StepInput) -> str:
        op, args = step.premise
        return f"{op}({', '.join(args)})"


class OraclePlanTask(PlanTask):
    """A plan whose every operation has ground truth: the simulator can answer it."""

    def __init__(self, plan: Plan, spec: TaskSpec, title: str | None = None, ops: Mapping[str, Any] | None = None) -> None:
        super().__init__(plan, spec, title, ops)
        missing = sorted({s.op for s in plan.steps if not self.ops[s.op].has_truth})
        if missing:
            raise ValueError(f"operations without ground truth: {', '.join(missing)}")
        self._truth: list[str | None] | None = None

    def truth_values(self, tool_outputs: Mapping[int, str] | None = None) -> list[str | None]:
        """Each node's right answer on the true inputs, in node order (computed once).

        A tool that is not pure is a side effect and is never run for ground truth: its true
        value is `tool_outputs[index]` (what a run's tool gave on inputs that were all true)
        or None -- unknown, and so is every step that depends on it.
        """
        tool_outputs = {i: v for i, v in (tool_outputs or {}).items() if not self.is_pure_tool(i)}
        if self._truth is not None and not tool_outputs:
            return self._truth
        values: dict[int, str | None] = {}
        for i in range(self.total_steps):
            deps = self.plan.deps(i)
            if any(values[d] is None for d in deps):
                values[i] = None
            elif self.is_tool(i) and not self.is_pure_tool(i):
                values[i] = tool_outputs.get(i)
            else:
                op, args = self.step_input(i, values).premise
                values[i] = self.ops[op].reference(args)
        truth = [values[i] for i in range(self.total_steps)]
        if not tool_outputs:
            self._truth = truth
        return truth

    def expected_answer(self, tool_outputs: Mapping[int, str] | None = None) -> str | None:
        """The right final answer; None when it depends on a tool that is not pure and whose true
        output is not in `tool_outputs` (see `truth_values`).  Decomposer tasks override it with
        an independent computation."""
        truth = self.truth_values(tool_outputs)
        where = self.plan.index
        if any(truth[where[r.step_id]] is None for r in refs_in(self.plan.answer)):
            return None
        return self.final_answer(dict(enumerate(truth)))  # type: ignore[arg-type]

    def gradable_steps(self) -> list[int]:
        """Steps a model answers (no tool step) whose premise on the correct trajectory is
        known: what an estimate or a preflight probe may prompt (no input from a tool that
        is not pure, which would have to run to be known)."""
        truth = self.truth_values()
        return [i for i in self.voted_steps() if truth[i] is not None]

    def true_step(self, index: int) -> StepInput:
        """Node `index` with its inputs filled in from their true values (KeyError if unknown)."""
        truth = self.truth_values()
        return self.step_input(index, {i: v for i, v in enumerate(truth) if v is not None})

    # -- Oracle -----------------------------------------------------------------------
    def truth(self, index: int) -> str | None:
        """Node `index`'s right answer on the true inputs; None when unknown (see `truth_values`)."""
        return self.truth_values()[index]

    def reference_reply(self, step: StepInput) -> str:
        op, args = step.premise
        return self.ops[op].reference(args)

    def wrong_replies(self, step: StepInput) -> list[str]:
        op, args = step.premise
        return self.ops[op].wrong(args)

    def broken_reply(self, step: StepInput, kind: str) -> str:
        op, args = step.premise
        return self.ops[op].broken(args, kind)


def task_for_plan(plan: Plan, spec: TaskSpec, title: str | None = None, ops: Mapping[str, Any] | None = None) -> PlanTask:
    """An `OraclePlanTask` when every operation has ground truth, else a `PlanTask`."""
    table = ops if ops is not None else OPS
    if all(table[s.op].has_truth for s in plan.steps):
        return OraclePlanTask(plan, spec, title, ops)
    return PlanTask(plan, spec, title, ops)


def plan_task(text: str, ops: Any = (), name: str = "plan") -> PlanTask:
    """A plan in the #E format that may use the user's own operations and tools
    (`tasks.plans.user_ops`: `operation(...)`, `tool(...)`, or a name -> function mapping of
    tools) and tools named inline (``tool:pkg.module:fn``).  PlanError (one line) for a bad
    plan or a name that clashes with a built-in operation.

        >>> from maker.tasks.plans.user_ops import tool
        >>> task = plan_task("#E1 = mul(6, 7)\\n#E2 = total(#E1, 8)\\nanswer = #E2", ops=[tool("total", lambda *x: sum(map(int, x)))])
        >>> task.is_tool(1), task.expected_answer()
        (True, '50')
    """
    from .user_ops import plan_ops

    table = plan_ops(text, ops)
    plan = parse_plan(text, {n: (op.fields, op.arity) for n, op in table.items()})
    title = f"{name}: {plan.title}" if plan.title else name
    return task_for_plan(plan, TaskSpec(name, {}), f"{title} ({len(plan)} steps)", table)


def plan_file(file: str | None = None, text: str | None = None) -> PlanTask:
    """`maker run plan --file F`: a hand-written plan.  The spec keeps the text, so Ray
    workers and `maker replay` rebuild the same plan without the file."""
    if text is None:
        if not file:
            raise ValueError("plan needs --file (a plan in the #E format; see 'maker plan-show --help')")
        try:
            text = Path(file).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the plan file {file}: {exc.strerror or exc}") from None
    from .user_ops import INLINE_TOOL, plan_ops

    table = plan_ops(text) if INLINE_TOOL.search(text) else None  # tool:pkg.mod:fn steps
    plan = parse_plan(text, None if table is None else {n: (op.fields, op.arity) for n, op in table.items()})
    title = f"plan {plan.title or file or ''}".strip() + f" ({len(plan)} steps)"
    return task_for_plan(plan, TaskSpec("plan", {"text": text}), title, table)


plan_file.summary = "a hand-written plan: a DAG of atomic steps in the #E format (--file)"  # type: ignore[attr-defined]
plan_file.options = (  # type: ignore[attr-defined]
    TaskOption("file", str, "plan: a plan file in the #E format (see tasks/plans/plan.py)", required=True),
)


def solve_task(problem: str | None = None, plan: str | None = None) -> PlanTask:
    """A problem a model decomposed (`maker solve`): the voted plan, carried in the spec."""
    if not problem or not plan:
        raise ValueError("solve tasks are planned and run by 'maker solve \"PROBLEM\" --model M'")
    return task_for_plan(parse_plan(plan), TaskSpec("solve", {"problem": problem, "plan": plan}), f"solve {problem!r}")


solve_task.summary = "a problem a model decomposed (run it with 'maker solve')"  # type: ignore[attr-defined]
solve_task.options = ()  # type: ignore[attr-defined]


def plan_summary(plan: Plan) -> dict[str, object]:
    """Steps, levels, widest level and operation counts: what `plan-show` prints first."""
    widths = plan.widths()
    counts: dict[str, int] = {}
    for step in plan.steps:
        counts[step.op] = counts.get(step.op, 0) + 1
    return {
        "steps": len(plan.steps),
        "levels": len(widths),
        "widest": max(widths, default=0),
        "widths": widths,
        "ops": counts,
        "path": plan.is_path(),
    }
