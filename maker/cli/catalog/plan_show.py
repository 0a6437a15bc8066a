"""`maker plan-show TASK ...`: print a plan (steps, dependencies, width per level) without running it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from typing import Any

from maker.errors import UsageError
from maker.tasks import TASKS
from maker.tasks.plans.plan import Plan
from maker.tasks.plans.plan_task import PlanTask, plan_summary

#: Tasks that are plans (a DAG of steps); `solve` is planned by a model (`maker solve --dry-run`).
PLAN_TASKS = ("add", "multiply", "plan", "sort")

DESCRIPTION = """Build TASK's plan -- a DAG of atomic steps -- and print it without running anything:
how many steps, how many levels (a step's level is one more than its deepest input's), how
wide each level is (the steps that can run at once), and every step with what it waits for.
A plan that cannot run (a cycle, an undefined placeholder, an input field its step never
produces, an unused step) is refused with one line naming the step (exit 2)."""

EPILOG = """examples:
  maker plan-show multiply --digits 3
  maker plan-show sort --n 500 --limit 20
  maker plan-show add --digits 8 --text > add8.plan      the plan file itself ...
  maker run plan --file add8.plan --model sim:0.99       ... which runs as it stands
  maker plan-show plan --file my.plan --json
  maker plan-show --task examples/records.py:records --n 3   a plan of your own (tool steps marked)

plan format (tasks/plans/plan.py), one step per line:
  #E1 = mul(2, 4)                       step E1: an atomic operation on literal inputs
  #E5 = column(0, #E1)                  #E1 is a placeholder: E5 waits for E1's answer
  #E6 = column(#E5.carry, #E2, #E3)     #E5.carry: one field of E5's answer
  #E9 = solve("What is #E6 + 1?")       placeholders inside a quoted question
  answer = #E7.carry#E7.digit           how the results make the final answer
operations: mul(a, b) -> product; column(carry, n1, ...) -> digit, carry;
cmp(x, y) -> low, high; solve("question") -> answer.
exit codes: 0 printed, 2 bad input or a plan that cannot run."""


def add_parser(sub: Any) -> None:
    from maker.cli.run import add_task_arguments

    p = sub.add_parser(
        "plan-show",
        help="print a task's plan (a DAG of steps) without running it",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_task_arguments(p, "; ".join(f"{n}: {TASKS[n].summary}" for n in PLAN_TASKS))  # type: ignore[attr-defined]
    p.add_argument("--limit", type=int, default=60, metavar="N", help="print at most N steps and N levels (default 60; 0: all)")
    p.add_argument("--text", action="store_true", help="print the plan file only (the #E format), every step")
    p.add_argument("--json", action="store_true", help="print one JSON object: summary, steps, answer template")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from maker.cli.run import task_from_args

    if args.limit < 0:
        raise UsageError("--limit must be >= 0")
    task = task_from_args(args)
    if not isinstance(task, PlanTask):
        raise UsageError(f"{args.task_ref or args.task} is not a plan (a DAG of steps): nothing to show")
    if args.text:
        print(task.plan.text(), end="")
    elif args.json:
        print(json.dumps(plan_json(task)))
    else:
        print(format_plan(task.plan, task.describe(), args.limit, tools={i for i in range(len(task.plan)) if task.is_tool(i)}))
    return 0


def plan_json(task: PlanTask) -> dict[str, Any]:
    plan = task.plan
    levels = plan.levels()
    return {
        "task": task.describe(),
        **plan_summary(plan),
        "answer": plan.answer,
        "steps": [
            {"index": i, "id": s.id, "op": s.op, "args": list(s.args), "level": levels[i],
             "needs": [plan.steps[d].id for d in plan.deps(i)], "tool": task.is_tool(i)}
            for i, s in enumerate(plan.steps)
        ],
    }


def format_plan(plan: Plan, title: str, limit: int = 60, tools: Collection[int] = ()) -> str:
    """The human view: summary, width per level, then each step with its level and inputs
    (`tools`: indices of tool steps, marked `[tool]`: run once, never voted)."""
    info = plan_summary(plan)
    ops = ", ".join(f"{n} {op}" for op, n in info["ops"].items())  # type: ignore[union-attr]
    shape = "a chain (each step needs only the one before)" if info["path"] else "a DAG"
    lines = [
        f"{title}: {info['steps']:,} steps in {info['levels']:,} levels, widest level {info['widest']:,} ({ops}); {shape}",
        f"answer = {_clip(plan.answer, 160)}",
        "",
        "level  width",
    ]
    widths: list[int] = info["widths"]  # type: ignore[assignment]
    shown = widths if not limit else widths[:limit]
    lines += [f"{lv:5d}  {w:5d}" for lv, w in enumerate(shown)]
    if len(shown) < len(widths):
        lines.append(f"  ... {len(widths) - len(shown):,} more levels (--limit 0 shows all)")
    lines += ["", "step (level; waits for)"]
    levels = plan.levels()
    count = len(plan.steps) if not limit else min(limit, len(plan.steps))
    for i in range(count):
        needs = ", ".join(f"#{plan.steps[d].id}" for d in plan.deps(i)) or "nothing"
        mark = " [tool]" if i in tools else ""
        lines.append(f"{_clip(plan.steps[i].text(), 100):<60}  level {levels[i]}; waits for {needs}{mark}")
    if count < len(plan.steps):
        lines.append(f"  ... {len(plan.steps) - count:,} more steps (--limit 0 shows all, --text prints the plan file)")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
