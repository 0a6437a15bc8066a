"""`chain_task(...)`: a chained task from a few plain functions.

A chained task walks a state through N steps; each step asks a model for one answer.
The user gives the start state, the step prompt, a parser, how the state moves on, and
(optionally) a rule check, prompt variants and ground truth; `ChainTask` supplies the
rest of the task protocol (`maker.tasks.base.Task`, and `Oracle` when ground truth is
given, which enables the simulator ``sim:P``, `maker.estimate` and error counting).

    >>> from maker.tasks.chain_task import chain_task
    >>> from maker.tasks.fields import last_field
    >>> amounts = [5, -3, 10]
    >>> ledger = chain_task(
    ...     name="ledger", start=100, steps=len(amounts), key="integer",
    ...     prompt=lambda balance, i: f"Balance {balance}, transaction {amounts[i]:+d}. New balance = ",
    ...     parse=lambda reply: last_field("balance = " + reply, "balance"),
    ...     truth=lambda balance, i: balance + amounts[i],
    ... )
    >>> step = ledger.first_step()
    >>> ledger.judge(step, "105").key, ledger.judge(step, "about 105").red_flag
    ('105', 'malformed')
    >>> ledger.step_after(0, "105").premise
    105

How a reply becomes a vote: ``parse(reply)`` gives the answer's text (or value; a parser
that raises or returns None makes the reply a ``malformed`` red flag, never a crash);
the key normaliser (`maker.tasks.keys`: ``integer``, ``decimal``, ``text``, ``choice:a,b``,
``json``, ``literal``, ``line_set``, or a function) turns it into the canonical vote key, so
"42", " 42." and "**42**" are one vote; ``valid(state, answer)`` (optional) returning
False or raising makes it a ``rule_breaking`` red flag.  `answer` is the key decoded back
to a value (an int for ``integer``, a Decimal for ``decimal``, a JSON value for ``json``,
a Python literal for ``literal``, a list of lines for ``line_set``, else the key string).

State: without `next_state` the state after a step *is* its answer (a running balance);
with it, the vote key carries the next state too (``<answer>\\nstate = <repr>``, as the
paper votes on move plus next state), so a resumed run or an audit can rebuild any step
from its decision alone.  A state must be a hashable Python literal (int, str, tuple...).

Ground truth: ``truth(state, index) -> answer`` (a solver on any premise; the simulator
answers from it).  ``render(answer) -> reply text`` is how a correct reply looks (default
``str``; it must parse back) and ``wrong(state, index, answer) -> answers`` gives
plausible wrong answers (default: values near the right one that the key accepts --
numbers off by one or ten, another choice, a changed value or line set; see `maker.tasks.wrong`).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal
from typing import Any

from .base import Prompt, PromptStyle, StepInput, TaskSpec, Verdict, preview
from .keys import NORMALISERS, Normaliser, apply_key, normaliser
from .wrong import generic_candidates, near_values, only_answer, wrong_texts

_STATE = "\nstate = "

#: How a built-in normaliser's key reads back as a value for `valid` and `next_state`.
_DECODE: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "decimal": Decimal,
    "json": json.loads,
    "literal": ast.literal_eval,
    "line_set": lambda key: key.split("\n") if key else [],
}


class ChainTask:
    """A chained task built from functions (see the module docstring; use `chain_task`)."""

    summary = "a chained task built with maker.tasks.chain_task.chain_task"

    def __init__(
        self,
        *,
        name: str,
        start: Hashable,
        prompt: Callable[[Any, int], Prompt] | Sequence[Callable[[Any, int], Prompt]],
        steps: int,
        parse: Callable[[str], Any] | None = None,
        next_state: Callable[[Any, Any], Hashable] | None = None,
        done: Callable[[Any, int], bool] | None = None,
        valid: Callable[[Any, Any], bool] | None = None,
        key: str | Normaliser = "text",
        truth: Callable[[Any, int], Any] | None = None,
        render: Callable[[Any], str] = str,
        wrong: Callable[[Any, int, Any], Sequence[Any]] | None = None,
        prompt_style: PromptStyle = "chat",
        stop: Sequence[str] = (),
    ) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"chain task {name!r}: steps must be an integer >= 1, got {steps!r}")
        prompts = tuple(prompt) if isinstance(prompt, (list, tuple)) else (prompt,)
        if not prompts or not all(callable(p) for p in prompts):
            raise ValueError(f"chain task {name!r}: prompt must be a function (state, index) -> prompt, or a list of them")
        try:
            hash(start)
        except TypeError:
            raise ValueError(f"chain task {name!r}: the state must be hashable (a tuple, not a list)") from None
        if next_state is not None and _literal(repr(start)) != start:
            raise ValueError(f"chain task {name!r}: the state must be a Python literal (ints, strs, tuples), got {start!r}")
        self.spec = TaskSpec(name)
        self.start = start
        self.prompts = prompts
        self.variants = len(prompts)
        self.steps = steps
        self.parse = parse
        self.next_state = next_state
        self.done = done
        self.valid = valid
        self.key_name = key if isinstance(key, str) else None
        self.normalise: Normaliser = normaliser(key)
        self.decode: Callable[[str], Any] = _DECODE.get(key, str) if isinstance(key, str) else str
        self.truth_fn = truth
        self.render = render
        self.wrong = wrong
        self.prompt_style = prompt_style
        self.stop = tuple(stop)
        self._path: list[tuple[str, Any]] = []  # the true trajectory: (key, state after), cached

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_path": []}  # workers recompute what they need

    # -- the Task protocol ---------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.steps

    def first_step(self) -> StepInput:
        return StepInput(0, self.start)

    def prompt(self, step: StepInput, style: PromptStyle = "chat", variant: int = 0) -> Prompt:
        out = self.prompts[variant](step.premise, step.index)
        if style == "chat" and isinstance(out, str):
            return [{"role": "user", "content": out}]
        if style == "completion" and not isinstance(out, str):
            return "\n\n".join(m.get("content", "") for m in out)
        return out

    def judge(self, step: StepInput, reply: str, variant: int = 0) -> Verdict:
        """The reply's vote key, or a red flag: `malformed` when the parser raises, finds
        nothing, or the normaliser refuses the answer; `rule_breaking` when `valid` says no."""
        try:
            raw = self.parse(reply) if self.parse is not None else reply
        except Exception as exc:  # the user's parser: a reply it cannot read is malformed
            return Verdict(None, "malformed", f"parser raised {type(exc).__name__}: {exc}"[:200])
        if raw is None:
            return Verdict(None, "malformed", "the parser found no answer")
        answer_key, why = apply_key(self.normalise, raw)
        if answer_key is None:
            return Verdict(None, "malformed", why or f"not a valid {self.key_name or 'key'} answer: {preview(raw)}")
        try:
            answer = self.decode(answer_key)
            if self.valid is not None and not self.valid(step.premise, answer):
                return Verdict(None, "rule_breaking", f"{answer_key!r} breaks the rule on state {step.premise!r}"[:200])
            return Verdict(self._key(step.premise, answer_key, answer))
        except Exception as exc:  # a rule or next_state that raises on this answer: it breaks the rules
            return Verdict(None, "rule_breaking", f"{type(exc).__name__}: {exc}"[:200])

    def _key(self, state: Any, answer_key: str, answer: Any) -> str:
        if self.next_state is None:
            return answer_key
        return answer_key + _STATE + repr(self.next_state(state, answer))

    def step_after(self, index: int, key: str) -> StepInput:
        if self.next_state is None:
            return StepInput(index + 1, self.decode(key))
        return StepInput(index + 1, _literal(key.rpartition(_STATE)[2]))

    def is_solved(self, step: StepInput) -> bool:
        if self.done is not None:
            return bool(self.done(step.premise, step.index))
        return step.index >= self.steps



class OracleChainTask(ChainTask):
    """A `ChainTask` with ground truth (`truth=` given): also an `Oracle`, so the simulator,
    `maker.estimate` and the run's error count work on it."""

    def _answer(self, state: Any, index: int) -> Any:
        if self.truth_fn is None:
            raise TypeError(f"task {self.spec.name} has no ground truth (give chain_task truth=...)")
        return self.truth_fn(state, index)

    def truth(self, index: int) -> str:
        """The true vote key of step `index` on the true trajectory (computed once, in order)."""
        while len(self._path) <= index:
            state = self._path[-1][1] if self._path else self.start
            i = len(self._path)
            key = self._reference_key(state, i)
            self._path.append((key, self.step_after(i, key).premise))
        return self._path[index][0]

    def _reference_key(self, state: Any, index: int) -> str:
        verdict = self.judge(StepInput(index, state), self.render(self._answer(state, index)))
        if verdict.key is None:
            raise ValueError(f"task {self.spec.name}: the true answer of step {index} does not pass its own "
                             f"parser and rules ({verdict.detail}); check render= and parse=")
        return verdict.key

    def is_solved(self, step: StepInput) -> bool:
        """At the end, on the true final state (a run that decided a wrong step is not solved)."""
        if not super().is_solved(step):
            return False
        last = min(step.index, self.steps) - 1
        return last < 0 or step.premise == self.step_after(last, self.truth(last)).premise

    def reference_reply(self, step: StepInput) -> str:
        return self.render(self._answer(step.premise, step.index))

    def wrong_replies(self, step: StepInput) -> list[str]:
        """Valid replies whose key differs from the right one (`maker.tasks.wrong`): the
        user's `wrong=` answers, else (or when none of those passes) values near the right
        one under the key.  Empty only when the key admits no other answer (a one-option
        `choice`); NoWrongAnswer (one line) when the key refuses every candidate."""
        right = self._answer(step.premise, step.index)
        right_key = self.judge(step, self.render(right)).key or ""

        def key_of(text: str) -> str | None:
            return self.judge(step, text).key

        out: list[str] = []
        if self.wrong is not None:
            out = wrong_texts(list(self.wrong(step.premise, step.index, right)), self.render, key_of, right_key)
        if out:
            return out
        options = getattr(self.normalise, "options", None)
        if options is not None and len(options) < 2:
            return []  # a one-option choice: every valid answer is the right one
        out = wrong_texts(near_values(right, options), self.render, key_of, right_key)
        if not out:
            out = wrong_texts(generic_candidates(right, right_key), self.render, key_of, right_key)
        if not out:
            raise only_answer(f"task {self.spec.name}", f"step {step.index}", right_key)
        return out

    def broken_reply(self, step: StepInput, kind: str) -> str:
        return "I am not sure what the answer is."


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return object()  # never equal: the caller reports the state as not a literal


def chain_task(**kwargs: Any) -> ChainTask:
    """A `ChainTask` (an `OracleChainTask` when `truth` is given); the keyword arguments
    are documented on the module.

    Raises ValueError (one line) for a bad step count, prompt, state or key name."""
    return OracleChainTask(**kwargs) if kwargs.get("truth") is not None else ChainTask(**kwargs)


__all__ = ["NORMALISERS", "ChainTask", "OracleChainTask", "chain_task"]
