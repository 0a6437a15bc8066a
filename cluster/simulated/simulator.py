"""The simulator `sim:P`: a test instrument that answers from a task's ground truth.

It lets us run million-step chains, inject faults and study correlated errors without
paying for a model.  Results obtained with it must always be labelled as simulated.

Every reply is a pure function of (simulator seed, draw seed, premise), so a seeded run
gives the same trajectory however it is batched, resumed or speculated.

Model string: ``sim:P[,option=value...]`` with options

* ``redflag=R``  fraction of replies that a red flag must catch (malformed, illegal or
  overlong, in turn);
* ``hard=H``     fraction of steps that are hard: there the accuracy is ``hard_p`` and
  every error names the same wrong answer (correlated errors);
* ``hard_p=Q``   accuracy on hard steps (default 0.4);
* ``latency=S``, ``jitter=S``  seconds per call (uniform jitter added);
* ``seed=N``     the simulator's own seed;
* ``fail=F``     fraction of calls that fail like a dead endpoint (``Sample.error`` set;
  ``fail=1``: a model that errors on every call);
* ``confused=R`` fraction of wrong replies that show the symptoms real models show when
  confused: half ramble on past the output-token cap after the answer (finish reason
  ``length``), half drift in format (the answer fenced as code) -- red flags catch both,
  the strict parser alone catches neither;
* ``variant_bias=B``  how much of a hard step's confusion is tied to prompt variant 0:
  on hard steps, requests for other variants have accuracy ``hard_p + B * (P - hard_p)``
  (``B=1``: only variant 0 is misled; default 0: every variant is).

Example:
    >>> cfg = parse_sim_model("sim:0.99,redflag=0.05,hard=0.001")
    >>> (cfg.p, cfg.red_flag_rate, cfg.hard_fraction)
    (0.99, 0.05, 0.001)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from maker.tasks.base import Oracle, Task, optional
from maker.tasks.wrong import NoWrongAnswer

from maker.errors import ModelConfigError

from ..protocol import Sample, SampleRequest

_MASK = (1 << 64) - 1


def mix64(*values: int) -> int:
    """splitmix64 over several integers: a cheap, well-spread, reproducible hash."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v & _MASK)) & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
    return x


def uniform(*values: int) -> float:
    """A float in [0, 1) determined by the values."""
    return mix64(*values) / 18446744073709551616.0


@dataclass(frozen=True)
class SimConfig:
    p: float
    red_flag_rate: float = 0.0
    hard_fraction: float = 0.0
    hard_p: float = 0.4
    latency: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    fail_rate: float = 0.0
    confused: float = 0.0
    variant_bias: float = 0.0


_OPTIONS = {
    "redflag": ("red_flag_rate", float),
    "hard": ("hard_fraction", float),
    "hard_p": ("hard_p", float),
    "latency": ("latency", float),
    "jitter": ("jitter", float),
    "seed": ("seed", int),
    "fail": ("fail_rate", float),
    "confused": ("confused", float),
    "variant_bias": ("variant_bias", float),
}


def parse_sim_model(model: str) -> SimConfig:
    """Parse ``sim:P[,k=v...]``; ModelConfigError with a one-line reason when malformed."""
    body = model.split(":", 1)[1] if ":" in model else ""
    parts = [p.strip() for p in body.split(",") if p.strip()]
    if not parts:
        raise ModelConfigError(f"{model!r}: the simulator needs an accuracy, e.g. sim:0.998", model=model)
    try:
        p = float(parts[0])
    except ValueError:
        raise ModelConfigError(f"{model!r}: accuracy {parts[0]!r} is not a number", model=model) from None
    if not 0.0 <= p <= 1.0:
        raise ModelConfigError(f"{model!r}: accuracy must be in [0, 1]", model=model)
    kwargs: dict[str, float | int] = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        if name not in _OPTIONS or not value:
            known = ", ".join(_OPTIONS)
            raise ModelConfigError(f"{model!r}: unknown option {part!r} (known: {known})", model=model)
        field_name, kind = _OPTIONS[name]
        try:
            kwargs[field_name] = kind(value)
        except ValueError:
            raise ModelConfigError(f"{model!r}: {name}={value!r} is not a number", model=model) from None
    cfg = SimConfig(p=p, **kwargs)  # type: ignore[arg-type]
    for name in ("red_flag_rate", "hard_fraction", "hard_p", "fail_rate", "confused", "variant_bias"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ModelConfigError(f"{model!r}: {name} must be in [0, 1]", model=model)
    if cfg.latency < 0 or cfg.jitter < 0:
        raise ModelConfigError(f"{model!r}: latency and jitter must be >= 0", model=model)
    return cfg


class SimulatedModel:
    """A `ModelClient` that answers from the task's ground truth with a set error rate."""

    def __init__(self, task: Task, config: SimConfig, name: str = "sim") -> None:
        if not isinstance(task, Oracle):
            raise ModelConfigError(f"task {task.spec.name!r} has no ground truth to simulate from", model=name)
        self.task = task
        self.oracle: Oracle = task
        self.config = config
        self.name = name
        # Replies for the step last asked about: a step's samples come together.
        self._step: object = None
        self._reference: str | None = None
        self._wrong: list[str] | None = None
        self._rendered: dict[tuple[str, int], str] = {}

    def is_hard(self, step_index: int) -> bool:
        return uniform(self.config.seed, step_index, 0x4A4D) < self.config.hard_fraction

    def reply(self, request: SampleRequest) -> tuple[str, int, str]:
        if request.step is not self._step:
            self._step = request.step
            self._reference = None
            self._wrong = None
            self._rendered = {}
        return self._reply(request)

    def _render(self, text: str, variant: int) -> str:
        """The reply in the request's prompt variant (the task maps it back when judging)."""
        if not variant:
            return text
        key = (text, variant)
        out = self._rendered.get(key)
        if out is None:
            render = optional(self.oracle, "variant_reply")
            out = self._rendered[key] = render(self._step, text, variant) if render else text
        return out

    def _reference_reply(self) -> str:
        if self._reference is None:
            self._reference = self.oracle.reference_reply(self._step)
        return self._reference

    def _wrong_replies(self) -> list[str]:
        """The step's wrong replies; ModelConfigError (one line) when the task's key accepts
        none of the candidates (`maker.tasks.wrong.NoWrongAnswer`): a simulator that could
        never be wrong would report p = 1 for any sim:P."""
        if self._wrong is None:
            try:
                self._wrong = self.oracle.wrong_replies(self._step)
            except NoWrongAnswer as exc:
                raise ModelConfigError(f"{self.name}: {exc}", model=self.name) from None
        return self._wrong

    def _reply(self, request: SampleRequest) -> tuple[str, int, str]:
        """(text, output tokens, finish reason) for one draw."""
        cfg = self.config
        step = request.step
        if step is None:
            raise ModelConfigError("the simulator needs each request's step", model=self.name)
        u = uniform(cfg.seed, request.seed)
        if cfg.red_flag_rate and uniform(cfg.seed, request.seed, 1) < cfg.red_flag_rate:
            kind = mix64(cfg.seed, request.seed, 2) % 3
            v = request.variant
            if kind == 0:
                return self._render(self.oracle.broken_reply(step, "malformed"), v), 12, "stop"
            if kind == 1:
                return self._render(self.oracle.broken_reply(step, "rule_breaking"), v), 40, "stop"
            return self._render(self.oracle.reference_reply(step), v) + "\n" + "Let me double-check. " * 150, 800, "length"
        hard = cfg.hard_fraction and self.is_hard(step.index)
        p = cfg.hard_p if hard else cfg.p
        if hard and request.variant and cfg.variant_bias:
            p += cfg.variant_bias * (cfg.p - p)
        if u < p:
            text = self._reference_reply()
        else:
            wrong = self._wrong_replies()
            if not wrong:  # the key admits no other answer here (a one-option choice): right by necessity
                text = self._reference_reply()
            elif hard:
                text = wrong[0]
            else:
                text = wrong[mix64(cfg.seed, request.seed, 3) % len(wrong)]
            if cfg.confused and wrong and uniform(cfg.seed, request.seed, 6) < cfg.confused:
                return self._confused(text, request)
        if request.variant:
            text = self._render(text, request.variant)
        return text, len(text) // 4 + 1, "stop"

    def _confused(self, text: str, request: SampleRequest) -> tuple[str, int, str]:
        """A wrong answer with a confused model's symptoms (see ``confused=R``)."""
        if request.variant:
            text = self._render(text, request.variant)
        if mix64(self.config.seed, request.seed, 7) & 1:
            # rambling that names no answer field (a later "move" would make the parser
            # refuse the reply outright): what must catch it is the overlong red flag
            text = text + "\n" + "Wait, let me reconsider the previous line. " * 90
            tokens = len(text) // 4 + 1
            if tokens > request.max_tokens:
                return text[: 4 * request.max_tokens], request.max_tokens, "length"
            return text, tokens, "stop"
        text = "```\n" + text + "\n```"
        return text, len(text) // 4 + 1, "stop"

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        cfg = self.config
        delay = 0.0
        if cfg.latency or cfg.jitter:
            delay = cfg.latency + cfg.jitter * uniform(cfg.seed, requests[0].seed if requests else 0, 4)
            await asyncio.sleep(delay)
        out = []
        prompt_tokens: dict[int, int] = {}
        for req in requests:
            if cfg.fail_rate and uniform(cfg.seed, req.seed, 5) < cfg.fail_rate:
                out.append(Sample("", self.name, finish_reason="error", latency_s=delay, error="simulated call failure",
                                  faults=("simulated",)))
                continue
            text, tokens_out, finish = self.reply(req)
            pid = id(req.prompt)
            if pid not in prompt_tokens:
                prompt_tokens[pid] = _prompt_chars(req.prompt) // 4 + 1
            out.append(Sample(text, self.name, prompt_tokens[pid], tokens_out, finish, delay))
        return out


def can_be_wrong(config: SimConfig) -> bool:
    """Whether a simulator with these settings ever gives a wrong answer."""
    return config.p < 1.0 or (config.hard_fraction > 0.0 and config.hard_p < 1.0)


def check_can_be_wrong(task: Task, model: str) -> None:
    """Fail before a run when `sim:P` (P < 1) could never be wrong on `task`: its key
    refuses every wrong answer the simulator can build (`maker.tasks.wrong`).  Checks the
    first step (a plan: the first node of each operation, on its true inputs).

    Raises ModelConfigError (one line, naming the step and what to give: ``wrong=``)."""
    if not isinstance(task, Oracle) or not can_be_wrong(parse_sim_model(model)):
        return
    try:
        steps = [task.first_step()]
        if optional(task, "truth_values") is not None and hasattr(task, "plan"):
            values = dict(enumerate(task.truth_values()))  # type: ignore[attr-defined]
            firsts: dict[str, int] = {}
            for i, node in enumerate(task.plan.steps):  # type: ignore[attr-defined]
                firsts.setdefault(node.op, i)
            steps = [task.step_input(i, values) for i in sorted(firsts.values())]  # type: ignore[attr-defined]
        for step in steps:
            task.wrong_replies(step)
    except NoWrongAnswer as exc:
        raise ModelConfigError(f"{model}: {exc}", model=model) from None
    except Exception:  # noqa: BLE001 -- the task's own code fails here: the run reports that where it happens
        return


def _prompt_chars(prompt: str | list[dict[str, str]]) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(m.get("content", "")) for m in prompt)
