"""One prompt as a one-step task: what `maker.vote` runs, and what `maker replay` rebuilds.

Why a task: a voted call must be exactly a one-step run -- the same requests, red flags,
ballot and log rows -- so it goes through the same step voter as every other task, and
its log names a task (`vote`) that replay and `--verify` can rebuild from the options
alone.  The step's prompt is the user's prompt; the judge is a key normaliser
(`maker.tasks.keys`): a reply whose normaliser returns None is `malformed`.  Nothing in
a reply is executed: the normalisers parse with regular expressions, `json.loads` and
`ast.literal_eval`.

With `expected=` the task has ground truth (`OnePromptWithTruth`, an `Oracle`), which is
what the simulator `sim:P` answers from: with probability P it says `expected`, otherwise
a well-formed wrong answer.  Without it, `sim:` cannot be used (there is nothing to
simulate from) and the decision's correctness is unknown (None).

Options (all JSON values, so that they survive the log's metadata and a Ray worker):
``prompt`` (a string, or a list of ``{"role", "content"}`` messages), ``key`` (a normaliser
name from `NORMALISERS`, or ``choice:a,b``), ``expected`` (optional answer text).

    >>> t = OnePrompt(prompt="What is 6 * 7?", key="integer")
    >>> t.judge(t.first_step(), " **42** ").key
    '42'
    >>> t.judge(t.first_step(), "forty-two").red_flag
    'malformed'
"""

from __future__ import annotations

from typing import Any

from ..base import Prompt, PromptStyle, StepInput, TaskOption, TaskSpec, Verdict, checked_advance
from ..keys import Normaliser, apply_key, normaliser
from ..wrong import generic_candidates, near_values, only_answer, wrong_texts

#: Decision rows of a plan-style voter carry a label; a voted call's one step is this.
LABEL = "vote"


def check_prompt(prompt: Any) -> Prompt:
    """`prompt` if it is a non-empty string or a non-empty list of {"role", "content"} string
    messages; ValueError (one line) otherwise."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt:
        for i, message in enumerate(prompt):
            if (
                not isinstance(message, dict)
                or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)
            ):
                raise ValueError(f"prompt message {i} is not a {{'role': str, 'content': str}} dict")
        return [dict(m) for m in prompt]
    raise ValueError(f"the prompt must be a string or a list of chat messages, got {type(prompt).__name__}")


class OnePrompt:
    """A task of exactly one step whose prompt is `prompt` and whose vote key is `key(reply)`."""

    summary = "one prompt voted as a single step (what maker.vote runs)"
    options = (
        TaskOption("prompt", str, "the prompt text", required=True),
        TaskOption("key", str, "key normaliser: integer, decimal, text, json, literal, lines, choice:a,b", default="text"),
        TaskOption("expected", str, "the right answer (ground truth, for the simulator)"),
    )

    def __init__(self, prompt: Any, key: str | Normaliser = "text", expected: str | None = None) -> None:
        self.prompt_value = check_prompt(prompt)
        self.normalise = normaliser(key)
        self.key_name = key if isinstance(key, str) else _callable_name(key)
        options: dict[str, Any] = {"prompt": self.prompt_value, "key": self.key_name}
        if expected is not None:
            options["expected"] = expected
        self.spec = TaskSpec("vote", options)

    @property
    def total_steps(self) -> int:
        return 1

    def first_step(self) -> StepInput:
        return StepInput(0, None)

    def prompt(self, step: StepInput, style: PromptStyle = "chat") -> Prompt:
        """The user's prompt; a string becomes one user message in the chat style."""
        if isinstance(self.prompt_value, str) and style == "chat":
            return [{"role": "user", "content": self.prompt_value}]
        return self.prompt_value

    def judge(self, step: StepInput, reply: str) -> Verdict:
        key, why = apply_key(self.normalise, reply)
        if key is None:
            return Verdict(None, "malformed", why or f"not a valid {self.key_name} answer")
        return Verdict(key)

    def advance(self, step: StepInput, key: str) -> StepInput:
        return checked_advance(self, step, key)

    def step_after(self, index: int, key: str) -> StepInput:
        return StepInput(index + 1, key)

    def is_solved(self, step: StepInput) -> bool:
        return step.index >= 1

    def describe_premise(self, step: StepInput) -> str:
        return "the prompt" if step.index == 0 else f"answered {step.premise!r}"

    def label(self, index: int) -> str:
        return LABEL


class OnePromptWithTruth(OnePrompt):
    """`OnePrompt` with ground truth: `expected` is the right answer (an `Oracle`)."""

    def __init__(self, prompt: Any, key: str | Normaliser = "text", expected: str = "") -> None:
        super().__init__(prompt, key, expected)
        self.expected = expected
        truth = self.normalise(expected)
        if truth is None:
            raise ValueError(f"expected answer {expected!r} is not a {self.key_name} answer")
        self.truth_key = truth

    def truth(self, index: int) -> str:
        return self.truth_key

    def reference_reply(self, step: StepInput) -> str:
        return self.expected

    def wrong_replies(self, step: StepInput) -> list[str]:
        """One well-formed answer that is not the expected one (the simulator's wrong answers,
        `maker.tasks.wrong`); empty when the key admits no other answer (a one-option
        choice); NoWrongAnswer (one line) when the key refuses every candidate."""
        options = getattr(self.normalise, "options", None)
        if options is not None and len(options) < 2:
            return []
        for candidates in (near_values(self.expected, options), generic_candidates(self.expected, self.truth_key)):
            out = wrong_texts(candidates, str, self.normalise, self.truth_key)
            if out:
                return out[:1]  # the binary worst case: one fixed wrong answer
        raise only_answer("this call", "its one step", self.truth_key)

    def broken_reply(self, step: StepInput, kind: str) -> str:
        """A reply the normaliser refuses (kind 'malformed'; a one-step task has no other rules)."""
        for text in ("\u2753", "{not an answer", "n/a n/a", "-"):
            if self.normalise(text) is None:
                return text
        return "\u2753"


def _callable_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def one_prompt(prompt: Any, key: str | Normaliser = "text", expected: str | None = None) -> OnePrompt:
    """The task for `prompt`: with ground truth when `expected` is given.

    Raises ValueError (one line) for a bad prompt, an unknown key normaliser, or an
    `expected` answer the normaliser refuses."""
    if expected is None:
        return OnePrompt(prompt, key)
    return OnePromptWithTruth(prompt, key, expected)


one_prompt.summary = OnePrompt.summary  # type: ignore[attr-defined]
one_prompt.options = OnePrompt.options  # type: ignore[attr-defined]
