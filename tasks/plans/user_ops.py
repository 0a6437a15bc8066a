"""A user's own plan steps: voted operations from plain functions, and tool steps.

Two kinds, both usable in a plan (`tasks.plans.plan`) next to the built-in operations
(`tasks.plans.ops`):

* `operation(name, prompt=..., parse=..., key=...)`: a step a model answers and maker
  votes on, written like a `chain_task` step -- ``prompt(args) -> prompt``,
  ``parse(reply) -> answer text`` (raises or None: a ``malformed`` red flag), a key
  normaliser (`tasks.keys`), an optional rule ``valid(args, answer)`` and ground truth
  ``truth(args) -> answer``.  Its answer is one field (`field`, default ``value``), so a
  later step names it as ``#E3`` or ``#E3.value``.
* `tool(name, fn)` or, inline in a plan file, ``#E9 = tool:pkg.module:fn(#E2, #E3)``
  (``tool:path/to/file.py:fn`` works too): a plain Python function run once on its
  decided inputs (strings), never voted, as ReWOO's workers call tools between planned
  reasoning steps.  Its result (str() of what it returns, JSON when that is not one
  line) is the step's `value`.  A tool that raises fails its step with one line
  naming it, and nothing that depends on it runs.  A tool is a side effect (a database
  write, an email): it runs exactly once per run, on the driver, and its output and
  inputs are logged; ground truth, estimates, preflight checks and `replay --verify`
  never run it again.  `tool(name, fn, pure=True)` declares it free of side effects:
  then it is its own ground truth and `replay --verify` runs it again and compares.

A name that clashes with a built-in operation is refused (`PlanError`, one line).

    >>> double = operation("double", prompt=lambda args: f"2 * {args[0]} =", key="integer",
    ...                    truth=lambda args: 2 * int(args[0]))
    >>> double.judge(("21",), " 42 ").key, double.reference(("21",))
    ('value = 42', 'value = 42')
    >>> total = tool("total", lambda *xs: sum(int(x) for x in xs))
    >>> total.run(("1", "2", "3"))
    'value = 6'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..base import Prompt, PromptStyle, Verdict, preview
from ..keys import Normaliser, apply_key, normaliser
from ..wrong import generic_candidates, near_values, only_answer, wrong_texts
from .plan import PlanError

#: `#E9 = tool:pkg.mod:fn(` -- a tool named inline in a plan file.
INLINE_TOOL = re.compile(r"#E\d+\s*=\s*(tool:[^\s(]+)\s*\(")


class UserOp:
    """A voted operation built from functions (see `operation`)."""

    arity: tuple[int, int | None]
    is_tool = False

    def __init__(self, name: str, *, prompt: Callable[[tuple[str, ...]], Prompt],
                 parse: Callable[[str], Any] | None = None, key: str | Normaliser = "text",
                 valid: Callable[[tuple[str, ...], str], bool] | None = None,
                 truth: Callable[[tuple[str, ...]], Any] | None = None, field: str = "value",
                 arity: tuple[int, int | None] = (0, None), summary: str = "",
                 render: Callable[[Any], str] = str, wrong: Callable[[tuple[str, ...], Any], Sequence[Any]] | None = None):
        _check_name(name)
        self.name = name
        self.summary = summary or f"user operation {name}"
        self.fields = (field,)
        self.arity = arity
        self.has_truth = truth is not None
        self.prompt_fn = prompt
        self.parse = parse
        self.normalise = normaliser(key)
        self.valid = valid
        self.truth = truth
        self.render = render
        self.wrong_fn = wrong

    def check_arg(self, position: int, value: str) -> str | None:
        return None

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt:
        out = self.prompt_fn(args)
        if style == "chat" and isinstance(out, str):
            return [{"role": "user", "content": out}]
        if style == "completion" and not isinstance(out, str):
            return "\n\n".join(m.get("content", "") for m in out)
        return out

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict:
        """`field = <key>` for a well-formed, rule-abiding reply; else a red flag, never an exception."""
        head = f"{self.fields[0]} = "
        rest = reply[len(head):] if reply.startswith(head) else None
        if rest is not None and apply_key(self.normalise, rest)[0] == rest:
            raw: Any = rest  # a canonical answer (the vote key) reads back as itself
        else:
            try:
                raw = self.parse(reply) if self.parse is not None else reply
            except Exception as exc:  # the user's parser: a reply it cannot read is malformed
                return Verdict(None, "malformed", f"parser raised {type(exc).__name__}: {exc}"[:200])
        key, why = (None, None) if raw is None else apply_key(self.normalise, raw)
        if key is None or "\n" in key:
            return Verdict(None, "malformed", why or f"not a one-line answer of {self.name}: {preview(raw)}")
        if self.valid is not None:
            try:
                ok = self.valid(args, key)
            except Exception as exc:
                return Verdict(None, "rule_breaking", f"{type(exc).__name__}: {exc}"[:200])
            if not ok:
                return Verdict(None, "rule_breaking", f"{key!r} breaks the rule of {self.name} on {args!r}"[:200])
        return Verdict(f"{self.fields[0]} = {key}")

    def _right(self, args: tuple[str, ...]) -> Any:
        if self.truth is None:
            raise TypeError(f"operation {self.name} has no ground truth")
        return self.truth(args)

    def reference(self, args: tuple[str, ...]) -> str:
        verdict = self.judge(args, self.render(self._right(args)))
        if verdict.key is None:
            raise ValueError(f"operation {self.name}: its true answer fails its own parser ({verdict.detail})")
        return verdict.key

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        """Vote keys of valid wrong answers (`maker.tasks.wrong`): the user's `wrong=`
        answers, else (or when none of those passes) values near the right one under the
        key.  Empty only when the key admits no other answer (a one-option `choice`);
        NoWrongAnswer (one line) when the key refuses every candidate."""
        right = self._right(args)
        good = self.reference(args)

        def key_of(text: str) -> str | None:
            return self.judge(args, text).key

        keys: list[str] = []
        if self.wrong_fn is not None:
            keys = [key_of(t) or "" for t in wrong_texts(list(self.wrong_fn(args, right)), self.render, key_of, good)]
        if keys:
            return keys
        options = getattr(self.normalise, "options", None)
        if options is not None and len(options) < 2:
            return []  # a one-option choice: every valid answer is the right one
        value = good.partition(" = ")[2]
        near = near_values(right, options)
        if isinstance(right, int) and not isinstance(right, bool):
            near = near[:3]  # off by one either way or by ten up, as before: seeded runs draw as they did
        for candidates in (near, generic_candidates(right, value)):
            keys = [key_of(t) or "" for t in wrong_texts(candidates, self.render, key_of, good)]
            if keys:
                return keys
        raise only_answer(f"operation {self.name}", f"arguments {args!r}"[:80], value)

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        return "I am not sure."


class ToolOp:
    """A tool step: ``fn(*args) -> value``, run once on decided inputs, never voted.

    `pure`: the function has no side effects, so maker may run it again (for ground truth,
    and in `replay --verify`); a tool that is not pure runs once per run and nowhere else.
    """

    is_tool = True
    #: deterministic: a tool's result on the true inputs is the truth.  For a tool that is not
    #: pure it is never computed by running it (`tasks.plans.plan_task.OraclePlanTask.truth_values`).
    has_truth = True
    arity: tuple[int, int | None] = (0, None)
    fields = ("value",)

    def __init__(self, name: str, fn: Callable[..., Any], summary: str = "", pure: bool = False) -> None:
        if not callable(fn):
            raise PlanError(f"tool {name}: {type(fn).__name__} is not callable")
        self.name = name
        self.fn = fn
        self.pure = bool(pure)
        self.summary = summary or f"tool {name} (a Python function, run once, not voted{'; pure' if pure else ''})"

    def check_arg(self, position: int, value: str) -> str | None:
        return None

    def run(self, args: tuple[str, ...]) -> str:
        """The step's canonical answer, ``value = <result>``.  Raises `ToolError` naming the tool."""
        try:
            out = self.fn(*args)
        except Exception as exc:
            raise ToolError(f"tool {self.name} raised {type(exc).__name__}: {exc}") from None
        text = out if isinstance(out, str) else str(out)
        if "\n" in text or text != text.strip():
            text = json.dumps(out if not isinstance(out, str) else text)
        return f"value = {text}"

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt:
        raise TypeError(f"{self.name} is a tool step: it is run, never prompted")

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict:
        """A tool's answer is right when running it again gives the same.  Runs the tool: only
        for a pure tool, or when the user asks (`replay --verify --rerun-tools`)."""
        try:
            expected = self.run(args)
        except ToolError as exc:
            return Verdict(None, "rule_breaking", str(exc))
        return Verdict(expected) if reply == expected else Verdict(None, "rule_breaking", f"{self.name} gives {expected!r}")

    def reference(self, args: tuple[str, ...]) -> str:
        """The true output on true inputs: runs the tool, so only a pure one (ValueError otherwise)."""
        if not self.pure:
            raise ValueError(f"tool {self.name} is not pure: it runs once per run, never for ground truth")
        return self.run(args)

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        return []

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        return ""


class ToolError(ValueError):
    """A tool step raised: one line naming the tool (the run stops there)."""


def _check_name(name: str) -> None:
    from .ops import OPS

    if name in OPS:
        raise PlanError(f"operation name {name!r} clashes with the built-in operation {name}; choose another name")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise PlanError(f"operation name {name!r}: use lower-case letters, digits and _ (as in a plan's op(...))")


def operation(name: str, **kwargs: Any) -> UserOp:
    """A voted user operation (arguments: see `UserOp` and the module docstring)."""
    return UserOp(name, **kwargs)


def tool(name: str, fn: Callable[..., Any], summary: str = "", pure: bool = False) -> ToolOp:
    """A tool step named `name` (refused when it clashes with a built-in operation).

    `pure=True` declares `fn` free of side effects (see `ToolOp`): maker may then run it
    again for ground truth and in `replay --verify`."""
    _check_name(name)
    return ToolOp(name, fn, summary, pure)


def inline_tool(ref: str) -> ToolOp:
    """The tool ``tool:pkg.module:fn`` or ``tool:path/to/file.py:fn`` names (PlanError if it
    does not import or is not callable)."""
    from ..plugins import PluginError, load_ref

    try:
        fn = load_ref(ref[len("tool:"):])
    except PluginError as exc:
        raise PlanError(f"{ref}: {exc}") from None
    if not callable(fn):
        raise PlanError(f"{ref}: {ref.rpartition(':')[2]!r} is a {type(fn).__name__}, not a function")
    return ToolOp(ref, fn)


def plan_ops(text: str, ops: Sequence[Any] | Mapping[str, Any] = ()) -> dict[str, Any]:
    """Every operation a plan may use: the built-ins, the user's `ops` (UserOp/ToolOp
    objects, or a name -> op or name -> function mapping, a function being a tool), and the
    tools the text names inline.  PlanError for a name that clashes with a built-in."""
    from .ops import OPS

    table: dict[str, Any] = dict(OPS)
    items = ops.items() if isinstance(ops, Mapping) else ((getattr(o, "name", None), o) for o in ops)
    for name, op in items:
        if not isinstance(name, str):
            raise PlanError(f"{op!r} has no name")
        if not hasattr(op, "judge"):
            op = tool(name, op)
        if name in OPS:
            raise PlanError(f"operation name {name!r} clashes with the built-in operation {name}; choose another name")
        table[name] = op
    for ref in dict.fromkeys(INLINE_TOOL.findall(text)):
        table[ref] = inline_tool(ref)
    return table


__all__ = ["INLINE_TOOL", "ToolError", "ToolOp", "UserOp", "inline_tool", "operation", "plan_ops", "tool"]
