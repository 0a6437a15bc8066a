"""A task of one step per conformance case, for one `maker run` over many personalities
(`test_conformance.test_run_of_many`): step i asks the conformance question tagged with case
i's name, and the fake provider routes each request to that case's personality (`routed`).

Loaded by `maker run --task tests/providers/case_steps.py:CaseSteps --opt cases=a,b,...`
(a Ray worker rebuilds it from that file).  Nothing in it is maker's code under test: it is
`OnePrompt` with more than one step."""

from __future__ import annotations

import re
from typing import Any

from maker.tasks.base import PromptStyle, StepInput, TaskOption, TaskSpec
from maker.tasks.builtin.one_prompt import OnePrompt

QUESTION = "What is 6*7?"
TAG = re.compile(r"\(case ([\w-]+)\)")


class CaseSteps(OnePrompt):
    """`len(cases)` steps; step i's prompt is ``What is 6*7? (case NAME)`` for ``cases[i]``."""

    summary = "one conformance question per case, a step each"
    options = (TaskOption("cases", str, "comma-separated case names, one step each", required=True),)

    def __init__(self, cases: str) -> None:
        super().__init__(QUESTION, "integer")
        self.cases = [c for c in cases.split(",") if c]
        self.spec = TaskSpec("case_steps", {"cases": cases})

    @property
    def total_steps(self) -> int:
        return len(self.cases)

    def prompt(self, step: StepInput, style: PromptStyle = "chat") -> Any:
        text = f"{QUESTION} (case {self.cases[step.index]})"
        return [{"role": "user", "content": text}] if style == "chat" else text

    def is_solved(self, step: StepInput) -> bool:
        return step.index >= len(self.cases)

    def label(self, index: int) -> str:
        return self.cases[index] if 0 <= index < len(self.cases) else "done"


def routed(personalities: dict[str, Any]) -> Any:
    """A personality that answers each request as the personality its prompt's case names,
    as if that case had the server to itself: `Call.index` counts that case's requests only
    (its "first request fails" quirks fire once per case); response ids stay unique."""
    import threading
    from dataclasses import replace

    counts: dict[str, int] = {}
    lock = threading.Lock()

    def personality(call: Any) -> Any:
        name = TAG.search(call.prompt).group(1)
        with lock:
            index = counts.get(name, 0)
            counts[name] = index + 1
        answer = personalities[name](replace(call, index=index))
        if isinstance(answer.json, dict) and "id" in answer.json:
            answer.json["id"] = f"fake-{call.index}"
        return answer

    return personality
