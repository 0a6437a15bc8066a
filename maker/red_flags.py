"""Red flags: throw away samples that must not vote, and say why.

A red-flagged sample is not a vote; the runner draws another.  The paper's finding is
that overlong and malformed replies are far more often wrong, and that discarding them
mostly removes *correlated* errors, so a flag is cheap insurance.  Nothing from a reply
is ever executed: the task parses with regular expressions and integer conversion only.

Detectors run in order and the first that fires names the reason.  Each is a pure
function of the sample (and the policy); the task's own strict parser and rule check
come last.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cluster.protocol import Sample
from tasks.base import StepInput, Task, Verdict

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_CODE = re.compile(
    r"```|<script|__import__|\bimport\s+[A-Za-z_]|\bdef\s+\w+\s*\(|\b(?:eval|exec|system|popen)\s*\("
    r"|\bsubprocess\b|\brm\s+-rf\b|\$\(|\blambda\b"
)


@dataclass(frozen=True)
class RedFlagPolicy:
    """Thresholds of the built-in detectors."""

    max_output_tokens: int = 750
    flag_code: bool = True


Detector = Callable[[Sample, RedFlagPolicy], "str | None"]


def transport(sample: Sample, policy: RedFlagPolicy) -> str | None:
    return sample.error


def empty(sample: Sample, policy: RedFlagPolicy) -> str | None:
    return "empty reply" if not sample.text.strip() else None


def overlong(sample: Sample, policy: RedFlagPolicy) -> str | None:
    if sample.finish_reason == "length":
        return "finish_reason=length"
    if sample.tokens_out > policy.max_output_tokens:
        return f"{sample.tokens_out} output tokens > {policy.max_output_tokens}"
    return None


def binary(sample: Sample, policy: RedFlagPolicy) -> str | None:
    match = _CONTROL.search(sample.text)
    return f"control or undecodable character {match.group()!r}" if match else None


#: Cheap substring checks that every `_CODE` match contains one of: the regex only runs
#: when one is present, which keeps the common case at a few C-level scans.
_CODE_HINTS = ("`", "<script", "import", "def", "eval", "exec", "system", "popen", "subprocess", "rm", "$(", "lambda")


def code(sample: Sample, policy: RedFlagPolicy) -> str | None:
    if not policy.flag_code:
        return None
    text = sample.text
    if not any(hint in text for hint in _CODE_HINTS):
        return None
    match = _CODE.search(text)
    return f"contains code ({match.group()!r})" if match else None


#: Reason name -> detector, in the order they are tried.  The first three look at the
#: sample's metadata, the last two at its text only (so their verdict can be shared by
#: identical replies of a step).
DETECTORS: dict[str, Detector] = {
    "transport": transport,
    "empty": empty,
    "overlong": overlong,
    "binary": binary,
    "code": code,
}
TEXT_ONLY = frozenset({"binary", "code"})
_META_DETECTORS = tuple((n, d) for n, d in DETECTORS.items() if n not in TEXT_ONLY)
_TEXT_DETECTORS = tuple((n, d) for n, d in DETECTORS.items() if n in TEXT_ONLY)

#: Every reason a sample can be discarded for, the task's own two included.
REASONS = (*DETECTORS, "malformed", "rule_breaking")


class StepJudge:
    """Judges the samples of one step, remembering verdicts of identical reply texts.

    Most samples of a step are the same text (the right answer), so the text-only
    checks and the task's parser run once per distinct reply, not once per sample.
    """

    __slots__ = ("_memo", "_meta", "_policy", "_step", "_task", "_text")

    def __init__(self, task: Task, step: StepInput, policy: RedFlagPolicy) -> None:
        self._task = task
        self._step = step
        self._policy = policy
        self._memo: dict[str, Verdict] = {}
        self._meta = _META_DETECTORS
        self._text = _TEXT_DETECTORS

    def __call__(self, sample: Sample) -> Verdict:
        policy = self._policy
        for reason, detector in self._meta:
            detail = detector(sample, policy)
            if detail is not None:
                return Verdict(None, reason, detail)
        return self.text(sample.text, sample)

    def text(self, text: str, sample: Sample | None = None) -> Verdict:
        verdict = self._memo.get(text)
        if verdict is None:
            probe = sample if sample is not None else Sample(text, "")
            for reason, detector in self._text:
                detail = detector(probe, self._policy)
                if detail is not None:
                    verdict = Verdict(None, reason, detail)
                    break
            else:
                verdict = self._task.judge(self._step, text)
            self._memo[text] = verdict
        return verdict


def judge_sample(task: Task, step: StepInput, sample: Sample, policy: RedFlagPolicy) -> Verdict:
    """A sample's vote key, or the first red flag it raises."""
    return StepJudge(task, step, policy)(sample)
