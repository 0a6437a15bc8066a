"""A plan: a DAG of atomic steps that name their inputs by placeholder, made before anything runs.

Why plan first: a long task whose steps do not all depend on each other (the digit
products of a multiplication, the comparisons of a sorting network) wastes time if it
runs as a chain.  Written down first, with placeholders where results will go (as in
ReWOO and LLMCompiler), the whole graph is known up front: it can be checked, printed,
and run with every step dispatched the moment its inputs are decided.  A chain (Hanoi,
long addition) is the special case of a path.

The format, one step per line (the same text `maker plan-show` prints and
`maker run plan --file F` reads):

    # multiply 12 by 34           <- a comment
    #E1 = mul(2, 4)
    #E2 = mul(1, 4)
    #E3 = mul(2, 3)
    #E4 = mul(1, 3)
    #E5 = column(0, #E1)
    #E6 = column(#E5.carry, #E2, #E3)
    #E7 = column(#E6.carry, #E4)
    answer = #E7.carry#E7.digit#E6.digit#E5.digit

* `#E<n> = op(arg, ...)` defines step `#E<n>`: an atomic operation (see `tasks.plans.ops`)
  on its arguments.  Ids need not be consecutive; each is defined once.
* An argument is a bare token (`7`, `#E5.carry`) or a JSON string (`"What is #E1 + 5?"`).
  Every `#E<n>` inside an argument is a placeholder: the step waits for step `#E<n>`'s
  decision, and the placeholder is replaced by its value before the step is prompted.
* A decided step's answer is canonical text, one `field = value` line per field
  (`digit = 3` / `carry = 12`).  `#E<n>.field` is that field's value; plain `#E<n>`
  is the first field's.
* `answer = TEMPLATE` says how the steps' results make the final answer: the template
  with every placeholder replaced.

Checks (`parse_plan`, `Plan.check`), each a one-line `PlanError` naming the step; a plan
that fails one never runs: a step defined twice, an unknown operation or a wrong number
of arguments, a placeholder that no step defines, a cycle, an input field the step it
names never produces (the input would never resolve), a step whose result nothing uses,
and a missing `answer` line.

Example:
    >>> plan = parse_plan("#E1 = mul(3, 4)\\n#E2 = column(0, #E1)\\nanswer = #E2.carry#E2.digit")
    >>> [s.id for s in plan.steps], plan.levels()
    (['E1', 'E2'], [0, 1])
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import foreign_placeholder

if TYPE_CHECKING:
    from .ops import OpShape

#: A placeholder: `#E12` or `#E12.carry`.  Group 1 is the number, group 2 the field.  A
#: field is read in any case (`#E2.Carry`) so that a misspelt one is refused by name,
#: never left in the text as if it were not a field.  Digits are ASCII only.
REF = re.compile(r"#E([0-9]+)(?:\.([A-Za-z_][A-Za-z0-9_]*))?")
_STEP_LINE = re.compile(r"^#E([0-9]+)\s*=\s*([a-z_][a-z0-9_]*|tool:[^\s(]+)\s*\((.*)\)\s*$")  # tool: see tasks/plans/user_ops.py
_ANSWER_LINE = re.compile(r"^answer\s*=\s*(.*?)\s*$")
_BARE = re.compile(r"[^,\s\"()]+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class PlanError(ValueError):
    """A plan that must not run; the message is one line and names the step.

    A ValueError so that task factories raise it like any bad option: `maker run` and
    `maker plan-show` turn it into a usage error (exit 2, nothing written).
    """


@dataclass(frozen=True, slots=True)
class Ref:
    """One placeholder in an argument: step `#E<number>`, optionally one of its fields."""

    number: int
    field: str | None = None

    @property
    def step_id(self) -> str:
        return f"E{self.number}"

    def __str__(self) -> str:
        return f"#E{self.number}" + (f".{self.field}" if self.field else "")


def refs_in(template: str) -> list[Ref]:
    """Every placeholder in a template, in order."""
    return [Ref(int(m.group(1)), m.group(2)) for m in REF.finditer(template)]


def fill(template: str, value_of: Callable[[Ref], str]) -> str:
    """The template with each placeholder replaced by `value_of(ref)`, once (never re-scanned)."""
    return REF.sub(lambda m: value_of(Ref(int(m.group(1)), m.group(2))), template)


def field_value(answer: str, name: str | None) -> str:
    """A field of a canonical answer (`digit = 3\\ncarry = 1`); the first field when `name` is None."""
    for line in answer.split("\n"):
        key, sep, value = line.partition(" = ")
        if sep and (name is None or key == name):
            return value
    raise KeyError(name)


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One atomic step: `#E<number> = op(args...)`; `args` are templates that may hold placeholders."""

    number: int
    op: str
    args: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"E{self.number}"

    def refs(self) -> list[Ref]:
        return [r for a in self.args for r in refs_in(a)]

    def text(self) -> str:
        return f"#E{self.number} = {self.op}({', '.join(_format_arg(a) for a in self.args)})"


def _format_arg(arg: str) -> str:
    return arg if _BARE.fullmatch(arg) else json.dumps(arg)


@dataclass(frozen=True)
class Plan:
    """Steps in dependency order (every step after the steps it names) and the answer template.

    Build one with `parse_plan` or `make_plan`, which check it; the constructor does not.
    """

    steps: tuple[PlanStep, ...]
    answer: str
    title: str = ""
    #: step id -> index in `steps`, and each step's inputs as indices (filled by `make_plan`)
    index: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    inputs: tuple[tuple[int, ...], ...] = field(default=(), compare=False, repr=False)

    def deps(self, i: int) -> list[int]:
        """Indices of the steps step `i` waits for, without repeats."""
        if self.inputs:
            return list(self.inputs[i])
        return list(dict.fromkeys(self.index[r.step_id] for r in self.steps[i].refs()))

    def dependents(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.steps]
        for i in range(len(self.steps)):
            for d in self.deps(i):
                out[d].append(i)
        return out

    def levels(self) -> list[int]:
        """Each step's level: 0 with no inputs, else one more than its deepest input."""
        level: list[int] = []
        for i in range(len(self.steps)):
            level.append(max((level[d] + 1 for d in self.deps(i)), default=0))
        return level

    def widths(self) -> list[int]:
        """How many steps each level holds: the parallelism a runner can use."""
        counts: dict[int, int] = {}
        for lv in self.levels():
            counts[lv] = counts.get(lv, 0) + 1
        return [counts[lv] for lv in sorted(counts)]

    def is_path(self) -> bool:
        """Whether each step needs only the one before it: a chain, as the chain runner runs."""
        return all(set(self.deps(i)) <= {i - 1} for i in range(len(self.steps)))

    def text(self) -> str:
        lines = [f"# {self.title}"] if self.title else []
        lines += [s.text() for s in self.steps]
        lines.append(f"answer = {self.answer}")
        return "\n".join(lines) + "\n"

    def __iter__(self) -> Iterator[PlanStep]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)


def make_plan(steps: Sequence[PlanStep], answer: str, shapes: Mapping[str, OpShape], title: str = "") -> Plan:
    """Check `steps` and put them in dependency order (stable); PlanError names the first bad step."""
    by_id: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.id in by_id:
            raise PlanError(f"step #{step.id}: defined twice")
        by_id[step.id] = i
    for step in steps:
        shape = shapes.get(step.op)
        if shape is None:
            raise PlanError(f"step #{step.id}: unknown operation {step.op!r} (known: {', '.join(sorted(shapes))})")
        low, high = shape[1]
        if len(step.args) < low or (high is not None and len(step.args) > high):
            want = str(low) if high == low else f"{low} or more" if high is None else f"{low} to {high}"
            raise PlanError(f"step #{step.id}: {step.op} takes {want} inputs, got {len(step.args)}")
        for arg in step.args:
            if not arg.strip():
                raise PlanError(f"step #{step.id}: an empty input")
        _check_refs(f"step #{step.id}", step.refs(), by_id, steps, shapes)
    if not answer.strip():
        raise PlanError("answer: the answer template is empty")
    _check_refs("answer", refs_in(answer), by_id, steps, shapes)
    order = _topological(steps, by_id)
    ordered = tuple(steps[i] for i in order)
    _check_used(ordered, answer)
    index = {s.id: i for i, s in enumerate(ordered)}
    inputs = tuple(tuple(dict.fromkeys(index[r.step_id] for r in s.refs())) for s in ordered)
    return Plan(ordered, answer, title, index, inputs)


def _check_refs(where: str, refs: list[Ref], by_id: dict[str, int], steps: Sequence[PlanStep], shapes: Mapping[str, OpShape]) -> None:
    for ref in refs:
        at = by_id.get(ref.step_id)
        if at is None:
            raise PlanError(f"{where}: input {ref} is not defined by any step")
        if ref.field is not None:
            fields = shapes[steps[at].op][0]
            if ref.field not in fields:
                near = [f for f in fields if f.casefold() == ref.field.casefold()]
                hint = f" (fields are lower case: #{ref.step_id}.{near[0]})" if near else ""
                raise PlanError(
                    f"{where}: input {ref} never resolves: {steps[at].op} answers only {', '.join(fields)}{hint}"
                )


def _check_notation(where: str, template: str, bare: bool, defined: set[int]) -> None:
    """PlanError when `template` writes a placeholder in another notation than `#E<n>`."""
    found = foreign_placeholder(template, defined, bare)
    if found is not None:
        digits = re.search(r"[0-9]+", found)
        form = f"#E{digits.group()}" if digits else "#E<n>"
        raise PlanError(
            f"{where}: {found!r} is not the placeholder form: write {form} "
            "(a step's result is #E<n>, one of its fields #E<n>.field)"
        )


def _topological(steps: Sequence[PlanStep], by_id: dict[str, int]) -> list[int]:
    """Kahn's order, ties in file order; PlanError naming a cycle when there is one."""
    import heapq

    n = len(steps)
    deps = [sorted({by_id[r.step_id] for r in s.refs()}) for s in steps]
    waiting = [len(d) for d in deps]
    users: list[list[int]] = [[] for _ in range(n)]
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    ready = [i for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < n:
        stuck = next(i for i in range(n) if waiting[i] > 0)
        cycle = _find_cycle(stuck, deps, waiting)
        path = " -> ".join(f"#{steps[i].id}" for i in cycle)
        raise PlanError(f"step #{steps[cycle[0]].id}: cycle {path}")
    return order


def _find_cycle(start: int, deps: list[list[int]], waiting: list[int]) -> list[int]:
    """Walk unresolved inputs from `start` until a step repeats: that loop is a cycle."""
    seen: dict[int, int] = {}
    path: list[int] = []
    at = start
    while at not in seen:
        seen[at] = len(path)
        path.append(at)
        at = next(d for d in deps[at] if waiting[d] > 0)
    loop = path[seen[at]:]
    return [*loop, loop[0]]


def _check_used(steps: tuple[PlanStep, ...], answer: str) -> None:
    used = {r.step_id for r in refs_in(answer)}
    for step in reversed(steps):
        if step.id not in used:
            raise PlanError(f"step #{step.id}: its result is never used (no later step or the answer names it)")
        used.update(r.step_id for r in step.refs())


def renumber(plan: Plan, shapes: Mapping[str, OpShape]) -> Plan:
    """The same plan with its steps named `#E1..#En` in plan order (placeholders follow)."""
    new = {s.number: i + 1 for i, s in enumerate(plan.steps)}

    def rename(ref: Ref) -> str:
        return f"#E{new[ref.number]}" + (f".{ref.field}" if ref.field else "")

    steps = [PlanStep(new[s.number], s.op, tuple(fill(a, rename) for a in s.args)) for s in plan.steps]
    return make_plan(steps, fill(plan.answer, rename), shapes, plan.title)


def parse_plan(text: str, shapes: Mapping[str, OpShape] | None = None) -> Plan:
    """Read a plan in the module's text format and check it (PlanError, one line, naming the step)."""
    if shapes is None:
        from .ops import shapes as op_shapes

        shapes = op_shapes()
    steps: list[PlanStep] = []
    answer: str | None = None
    title = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("# ") or line == "#":
            title = title or line[1:].strip()
            continue
        m = _STEP_LINE.match(line)
        if m:
            if answer is not None:
                raise PlanError(f"line {lineno}: step #E{m.group(1)} comes after the answer line")
            steps.append(PlanStep(int(m.group(1)), m.group(2), _parse_args(m.group(3), f"step #E{m.group(1)}")))
            continue
        m = _ANSWER_LINE.match(line)
        if m:
            if answer is not None:
                raise PlanError(f"line {lineno}: a second answer line")
            answer = m.group(1)
            continue
        raise PlanError(f"line {lineno}: not a step ('#E<n> = op(args)'), a comment or 'answer = ...': {line[:60]!r}")
    if answer is None:
        raise PlanError("the plan has no 'answer = ...' line")
    if not steps:
        raise PlanError("the plan has no steps")
    defined = {s.number for s in steps}
    for step in steps:
        for arg in step.args:
            _check_notation(f"step #{step.id}", arg, bool(_BARE.fullmatch(arg)), defined)
    _check_notation("answer", answer, True, defined)
    return make_plan(steps, answer, shapes, title)


def _parse_args(body: str, where: str) -> tuple[str, ...]:
    args: list[str] = []
    pos = 0
    body = body.strip()
    if not body:
        return ()
    while True:
        while pos < len(body) and body[pos] in " \t":
            pos += 1
        m = _STRING.match(body, pos)
        if m:
            try:
                args.append(json.loads(m.group()))
            except json.JSONDecodeError:
                raise PlanError(f"{where}: bad string input {m.group()[:40]}") from None
        else:
            m = _BARE.match(body, pos)
            if not m:
                raise PlanError(f"{where}: cannot read the inputs at {body[pos:pos + 20]!r}")
            args.append(m.group())
        pos = m.end()
        while pos < len(body) and body[pos] in " \t":
            pos += 1
        if pos == len(body):
            return tuple(args)
        if body[pos] != ",":
            raise PlanError(f"{where}: expected ',' between inputs at {body[pos:pos + 20]!r}")
        pos += 1
