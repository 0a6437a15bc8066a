"""The contract between a task plugin and the runner.

A task is cut into atomic steps.  Each step sees only its `StepInput` (its index and a
small, immutable premise such as the current state and the previous move), never the
history, so every prompt is short and every sample of a step is drawn on exactly the
same context.  The runner never looks inside a premise: it asks the task for a prompt,
for a verdict on a reply, and for the next step once a vote has decided.

Two protocols, so that a task can be run without a known solution:

* `Task` is what the runner needs.
* `Oracle` is ground truth.  The simulator answers from it and the run counts errors
  against it; a task without ground truth simply does not implement it.

Prompt variants (optional): a task may say the same step in several surface forms
(other names, another notation, the rules in another order) so that a step's votes do
not all share one misleading wording.  Such a task sets a class attribute
`variants = N` and accepts `variant=0..N-1` in `prompt` and `judge`; `judge` maps every
variant's reply back to the one canonical vote key.  An `Oracle` with variants also
offers `variant_reply(step, reply, variant)`, the canonical reply in that surface form.
Tasks without variants need none of this: the helpers below (`variants_of`,
`task_prompt`, `task_judge`) call them exactly as before when `variant == 0`.

Every member the runtime may read is declared on `Task` (or, for ground truth, `Oracle`):
the required ones, then the optional ones with their defaults.  A task class may subclass
`Task` to inherit those defaults (the built-in tasks do), or leave them out entirely: the
runtime reads an optional member through `optional(task, name)`, which falls back to the
declared default.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union, runtime_checkable

from maker.errors import one_line

#: A chat prompt (OpenAI-style messages) or a plain completion prompt.
Prompt = Union[str, list[dict[str, str]]]
PromptStyle = Literal["chat", "completion"]


@dataclass(frozen=True, slots=True)
class StepInput:
    """Everything one step may see: its position and the premise it starts from.

    `premise` must be hashable and immutable: votes are only ever counted for the step
    whose premise they were drawn on, and premises are compared by value.
    """

    index: int
    premise: Hashable


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a task says about one reply.

    `key` is the canonical vote key (formatting differences vanish in it) when the reply
    is well formed and obeys the task's rules; otherwise `red_flag` names why not
    ("malformed" or "rule_breaking") and `detail` says what exactly, for the log.
    """

    key: str | None
    red_flag: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A picklable recipe for a task: how Ray workers and resumed runs rebuild it."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name} {opts}".strip()


@dataclass(frozen=True)
class TaskOption:
    """One command-line option of a task (`--disks 10`), declared as data so the CLI
    can offer it without knowing the task."""

    name: str
    type: type
    help: str
    default: Any = None
    required: bool = False


class _WithDefaults(type(Protocol)):  # type: ignore[misc]
    """`isinstance` against a protocol below checks its `REQUIRED` members only (a callable
    one must not be None): its optional members have defaults, so a task that leaves them
    out is still a task.  Any other protocol is checked as `typing` checks it."""

    def __instancecheck__(cls, instance: Any) -> bool:
        required = cls.__dict__.get("REQUIRED")
        if required is None:
            return super().__instancecheck__(instance)
        return all(hasattr(instance, name) and (not callable(cls.__dict__.get(name)) or getattr(instance, name) is not None)
                   for name in required)


@runtime_checkable
class Task(Protocol, metaclass=_WithDefaults):
    """A long task as a chain of atomic, independently promptable steps.

    The members up to `is_solved` are required (`REQUIRED`: what `isinstance(obj, Task)`
    checks); the rest are optional, with the defaults declared here (`optional`)."""

    REQUIRED = ("spec", "total_steps", "first_step", "prompt", "judge", "step_after", "is_solved")

    spec: TaskSpec

    @property
    def total_steps(self) -> int:
        """How many steps a correct run takes."""
        ...

    def first_step(self) -> StepInput: ...

    def prompt(self, step: StepInput, style: PromptStyle = "chat") -> Prompt:
        """The step's prompt; a task with `variants` also takes `variant=0..variants-1`."""
        ...

    def judge(self, step: StepInput, reply: str) -> Verdict:
        """Strictly parse a reply and check the task's rules; never executes anything.

        A task with `variants` also takes `variant=`: the reply is read in that variant's
        surface form and the key is the canonical one, the same for every variant."""
        ...

    def step_after(self, index: int, key: str) -> StepInput:
        """The step after step `index` was decided as `key`, rebuilt from the key alone.

        Lets a resumed run or an audit pick up at any decided step without replaying
        the whole chain; `checked_advance` is this plus the rule check.
        """
        ...

    def is_solved(self, step: StepInput) -> bool:
        """Whether the premise of `step` is the task's goal."""
        ...

    # -- optional members: a task may leave any out; `optional(task, name)` gives these defaults --
    #: prompt variants: `prompt` and `judge` take ``variant=0..variants-1`` (see the module docstring)
    variants: int = 1
    #: stop sequences sent with every request (e.g. ``("\n",)`` for a one-line answer)
    stop: tuple[str, ...] = ()
    #: the task's own red-flag detectors, ``(name, fn)`` pairs (`maker.engine.red_flags`); a
    #: class attribute, since workers rebuild the task from its spec
    red_flags: tuple[tuple[str, Callable[..., Any]], ...] = ()
    #: the prompt style the task is written for ("chat" or "completion"); None: chat
    prompt_style: PromptStyle | None = None
    #: where the task came from (built-in, plugin, module, file): set by `maker.tasks.registry`
    maker_origin: str | None = None
    #: the steps a model answers (a plan's voted steps, never its tools); None: every step
    voted_steps: Callable[[], Sequence[int]] | None = None

    def label(self, index: int) -> str:
        """Step `index` as messages name it (a plan: "#E3 mul")."""
        return f"#{index}"

    def describe(self) -> str:
        """The task as reports name it: its spec, "hanoi disks=10"."""
        return self.spec.describe()


@runtime_checkable
class Oracle(Protocol, metaclass=_WithDefaults):
    """Ground truth for a task: the simulator's source of answers and the error count.

    `REQUIRED` members first (what `isinstance(obj, Oracle)` checks), then optional ones."""

    REQUIRED = ("truth", "reference_reply", "wrong_replies", "broken_reply")

    def truth(self, index: int) -> str:
        """The correct vote key of step `index` on the correct trajectory."""
        ...

    def reference_reply(self, step: StepInput) -> str:
        """A correct reply, in the task's own text format, for this premise."""
        ...

    def wrong_replies(self, step: StepInput) -> list[str]:
        """Plausible wrong but well-formed, rule-abiding replies for this premise."""
        ...

    def broken_reply(self, step: StepInput, kind: str) -> str:
        """A reply that a red flag must catch: kind is 'malformed' or 'rule_breaking'."""
        ...

    # -- optional members, read through `optional(task, name)` (None: the task has none) --
    #: ``variant_reply(step, reply, variant)``: the canonical reply in that variant's surface form
    variant_reply: Callable[[StepInput, str, int], str] | None = None
    #: ``true_step(index)``: step `index` on its true premise (default: walked from `truth`)
    true_step: Callable[[int], StepInput] | None = None
    #: ``gradable_steps()``: the steps graded on a known premise (a plan: its voted steps)
    gradable_steps: Callable[[], list[int]] | None = None
    #: ``truth_values()``: a plan's true value of every step, tools run (`OraclePlanTask`)
    truth_values: Callable[..., list[str | None]] | None = None


#: Every optional member, by the protocol that declares it (its default is that protocol's).
OPTIONAL: dict[str, type] = {
    **{name: Task for name in ("variants", "stop", "red_flags", "prompt_style", "maker_origin", "voted_steps", "label",
                               "describe")},
    **{name: Oracle for name in ("variant_reply", "true_step", "gradable_steps", "truth_values")},
}


def optional(task: Any, name: str) -> Any:
    """The task's optional member `name` (one of `OPTIONAL`), or the default its protocol
    declares when the task leaves it out (a task need not subclass `Task`); a default
    method comes bound to `task`.  KeyError for a name no protocol declares optional.

    >>> class Bare: spec = TaskSpec("bare")
    >>> optional(Bare(), "stop"), optional(Bare(), "describe")()
    ((), 'bare')
    """
    owner = OPTIONAL[name]
    try:
        return getattr(task, name)
    except AttributeError:
        default = owner.__dict__[name]
        return default.__get__(task) if callable(default) else default


def checked_advance(task: Any, step: StepInput, key: str) -> StepInput:
    """The next step for any task, after checking that `key` is a valid
    answer for `step` (a decision that breaks the rules must never move the state)."""
    verdict = task.judge(step, key)
    if verdict.key != key:
        raise ValueError(f"step {step.index}: {key!r} is not a valid decision ({verdict.detail})")
    return task.step_after(step.index, key)


def variants_of(task: Any) -> int:
    """How many prompt variants `task` offers (1 when it declares none)."""
    n = optional(task, "variants")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def task_prompt(task: Any, step: StepInput, style: PromptStyle = "chat", variant: int = 0) -> Prompt:
    """`task.prompt` for one variant; variant 0 calls it as a task without variants expects."""
    return task.prompt(step, style) if variant == 0 else task.prompt(step, style, variant=variant)


def task_judge(task: Any, step: StepInput, reply: str, variant: int = 0) -> Verdict:
    """`task.judge` for one variant's reply; the key is canonical whatever the variant.

    Never raises: no reply may crash the judge (nor, since sample 0 is drawn at
    temperature 0, every resumed run after it).  A judge that raises on a reply -- a
    user's parser or key function, a number too big for ``int()`` -- makes it a
    ``malformed`` red flag naming the exception; so does a key the step log could not
    store (not a string, or a string with a lone surrogate)."""
    try:
        verdict = task.judge(step, reply) if variant == 0 else task.judge(step, reply, variant=variant)
    except Exception as exc:  # a reply is data: whatever it does to a parser is a red flag
        return Verdict(None, "malformed", f"the judge raised {one_line(exc, typed=True)}"[:200])
    key = verdict.key
    if key is not None and not (isinstance(key, str) and (key.isascii() or _storable(key))):
        return Verdict(None, "malformed", f"the judge's key is not storable text: {type(key).__name__}"[:200])
    return verdict


def preview(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for a verdict's detail; never raises (the
    repr of an int of over 4,300 digits does, and a user's object's may)."""
    try:
        return repr(value if not isinstance(value, str) else value[: limit + 1])[:limit]
    except Exception:
        return f"<{type(value).__name__}>"


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
