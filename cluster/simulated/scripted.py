"""The scripted model `script:NAME`: a fake at the model boundary, driven by a plain function.

Why: `maker solve` needs a model that plays two parts -- the decomposer that proposes
plans and the solver that answers atomic steps -- and the simulator cannot, because a
free-form problem has no ground truth to answer from.  A `ScriptedModel` is a
`ModelClient` fed by a handler `(prompt_text, request) -> reply`, as httpx's
`MockTransport` is fed by a function; tests pass their own handler, and Ray workers
build the named built-in scripts from the model string alone.  Results obtained with it
are simulated and are labelled so.

Built-in scripts (`script:NAME[,p=P][,seed=N]`):

* `arith`: arithmetic problems such as ``Compute (12 + 7) * (3 + 4) - 5``.  As
  decomposer it splits an expression at its last lowest-precedence operator (each
  non-trivial side becomes a step, then one step combines them) and answers `atomic`
  for a single operation; as solver it evaluates one operation exactly.  With ``p < 1``
  each reply is, with probability 1 - p, plausibly wrong: a plan that combines the
  sides the wrong way round, or an answer off by one (seeded by the draw, so a run
  repeats exactly).

Example:
    >>> model = make_scripted("script:arith")
    >>> arith_reply("Problem to split: Compute 2 + 3\\nNumber your steps from #E1.", 0, 1.0)
    'atomic'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from maker.errors import ModelConfigError

from ..protocol import Sample, SampleRequest
from .simulator import mix64, uniform

Handler = Callable[[str, SampleRequest], str]


class ScriptedModel:
    """A `ModelClient` whose replies come from `handler(prompt_text, request)`."""

    def __init__(self, handler: Handler, name: str = "script") -> None:
        self.handler = handler
        self.name = name

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        out = []
        for request in requests:
            text = prompt_text(request.prompt)
            reply = self.handler(text, request)
            out.append(Sample(reply, self.name, len(text) // 4 + 1, len(reply) // 4 + 1))
        return out


def prompt_text(prompt: str | list[dict[str, str]]) -> str:
    """A prompt as one text: a completion prompt as is, a chat prompt's messages joined."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m.get("content", "") for m in prompt)


@dataclass(frozen=True)
class ScriptConfig:
    script: str
    p: float = 1.0
    seed: int = 0


def parse_script_model(model: str) -> ScriptConfig:
    """Parse `script:NAME[,p=P][,seed=N]`; ModelConfigError with a one-line reason when malformed."""
    body = model.split(":", 1)[1] if ":" in model else ""
    parts = [p.strip() for p in body.split(",") if p.strip()]
    if not parts or parts[0] not in SCRIPTS:
        raise ModelConfigError(f"{model!r}: unknown script (known: {', '.join(sorted(SCRIPTS))})", model=model)
    kwargs: dict[str, float | int] = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        try:
            if name == "p":
                kwargs["p"] = float(value)
            elif name == "seed":
                kwargs["seed"] = int(value)
            else:
                raise ModelConfigError(f"{model!r}: unknown option {part!r} (known: p, seed)", model=model)
        except ValueError:
            raise ModelConfigError(f"{model!r}: {part!r} is not a number", model=model) from None
    config = ScriptConfig(parts[0], **kwargs)  # type: ignore[arg-type]
    if not 0.0 <= config.p <= 1.0:
        raise ModelConfigError(f"{model!r}: p must be in [0, 1]", model=model)
    return config


def make_scripted(model: str) -> ScriptedModel:
    """The built-in script a model string names (what a Ray worker builds)."""
    config = parse_script_model(model)
    script = SCRIPTS[config.script]

    def handler(text: str, request: SampleRequest) -> str:
        right = uniform(config.seed, request.seed) < config.p
        return script(text, mix64(config.seed, request.seed), 1.0 if right else 0.0)

    return ScriptedModel(handler, name=model)


# -- the arith script --------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(#E\d+|\d+(?:\.\d+)?|[-+*/()])")
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
Node = tuple  # ("atom", text) | (op, left, right)


def _parse(text: str) -> Node | None:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return None
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    at = 0

    def expr(level: int) -> Node:
        nonlocal at
        if level == 3:
            tok = tokens[at]
            at += 1
            if tok == "(":
                node = expr(1)
                if tokens[at] != ")":
                    raise ValueError("unbalanced")
                at += 1
                return node
            if tok in _PREC or tok == ")":
                raise ValueError(tok)
            return ("atom", tok)
        node = expr(level + 1)
        while at < len(tokens) and _PREC.get(tokens[at]) == level:
            op = tokens[at]
            at += 1
            node = (op, node, expr(level + 1))
        return node

    try:
        node = expr(1)
    except (IndexError, ValueError):
        return None
    return node if at == len(tokens) else None


def _render(node: Node, parent: int = 0, right: bool = False) -> str:
    if node[0] == "atom":
        return node[1]
    op, left, rhs = node
    text = f"{_render(left, _PREC[op])} {op} {_render(rhs, _PREC[op], True)}"
    return f"({text})" if _PREC[op] < parent or (right and _PREC[op] == parent) else text


def _expression(line: str) -> str:
    text = line.strip().rstrip("?.").strip()
    for prefix in ("Compute", "What is", "Calculate"):
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return text


def _split(node: Node, inputs: int, right: float) -> str:
    """The arith decomposer: `atomic`, or each non-trivial side as a step and a combining step."""
    if node[0] == "atom" or (node[1][0] == "atom" and node[2][0] == "atom"):
        return "atomic"
    op, left, rhs = node
    lines, number = [], inputs
    sides = []
    for side in (left, rhs):
        if side[0] == "atom":
            sides.append(side[1])
        else:
            number += 1
            lines.append(f"#E{number} = Compute {_render(side)}")
            sides.append(f"#E{number}")
    if not right:  # a plausible wrong plan: the sides combined the wrong way
        if op in "+*":
            op = "*" if op == "+" else "+"
        else:
            sides.reverse()
    lines.append(f"#E{number + 1} = Compute {sides[0]} {op} {sides[1]}")
    return "\n".join(lines)


def _value(node: Node) -> Fraction:
    if node[0] == "atom":
        if node[1].startswith("#E"):
            raise ValueError("unresolved placeholder")
        return Fraction(node[1])
    op, left, rhs = node
    a, b = _value(left), _value(rhs)
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]  # type: ignore[return-value]


def arith_reply(text: str, draw: int, right: float) -> str:
    """What the arith script replies to one prompt (`right` 0.0: a plausible wrong reply)."""
    from maker.tasks.plans.solve import DECOMPOSE_MARK, SOLVE_MARK

    if DECOMPOSE_MARK in text:
        line = text.rsplit(DECOMPOSE_MARK, 1)[1].split("\n", 1)[0]
        inputs = re.search(r"Number your steps from #E(\d+)", text)
        node = _parse(_expression(line))
        if node is None:
            return "atomic"
        return _split(node, int(inputs.group(1)) - 1 if inputs else 0, right)
    if SOLVE_MARK in text:
        line = text.rsplit(SOLVE_MARK, 1)[1].split("\n", 1)[0]
        node = _parse(_expression(line))
        try:
            value = _value(node) if node is not None else None
        except (ValueError, TypeError, ZeroDivisionError):
            value = None
        if value is None:
            return "answer = unknown"
        if not right:
            value += 1
        if value.denominator == 1:
            return f"answer = {value.numerator}"
        return f"answer = {float(value):.10g}"
    return "I can only do arithmetic."


SCRIPTS: dict[str, Callable[[str, int, float], str]] = {"arith": arith_reply}
