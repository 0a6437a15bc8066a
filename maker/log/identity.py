"""A resumed run is the same run: which logged settings a `--resume` may not change.

Why: a step log is re-judged and re-decided from its own metadata (`maker replay
--rejudge`, `--verify`) and counted as one run.  If a resume drew later steps at other
temperatures, on other prompt variants, with another output-token cap or red-flag
policy, the log would hold two runs under one identity, and the run's own recorded
policy would no longer reproduce its decisions.  So every setting the metadata records
about *what is drawn and how it is judged* must match; a resume that changes one is
refused, naming each setting that differs.

What may change: the give-up caps (`max_samples_per_step`, `max_discards_in_a_row`,
`max_failed_calls`).  They decide when a run stops undecided, never what a decided step
is, and raising one is how a run stopped by its cap goes on.  Settings that an older
log does not record cannot be compared and are not refused.

Shapes: both arguments are run metadata as `maker.runtime.driver.run_metadata` writes it
(plus ``red_flags``, `RedFlagPolicy.to_metadata()`): plain JSON-able dicts.

Example:
    >>> logged = {"task": "hanoi", "voting": {"k": 2, "temperature": 0.1, "max_samples_per_step": 100}}
    >>> now = {"task": "hanoi", "voting": {"k": 2, "temperature": 0.7, "max_samples_per_step": 500}}
    >>> resume_conflicts(logged, now)
    ['--temperature: log 0.1, now 0.7']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Top-level settings that name the run: (metadata key, how a user sets it).  `simulated`
#: follows from --model and --api-base together (the same `openai/NAME` may be a
#: `maker sim-server` or a real server): a log labelled simulated never gains real steps,
#: nor a real one simulated steps.
RUN_KEYS = (("task", "task"), ("task_options", "task options"), ("models", "--model"), ("seed", "--seed"),
            ("simulated", "simulated model (--model, --api-base)"))
#: Sections compared key by key; each key named by its option.
SECTIONS = ("voting", "red_flags")
#: Voting settings a resume may change: when a run gives up, not what it decides.
MAY_CHANGE = frozenset({"max_samples_per_step", "max_discards_in_a_row", "max_failed_calls", "max_cut_off"})
#: How a user sets each compared key (default: ``--`` + the key with dashes).
_OPTION = {
    ("voting", "k"): "--k",
    ("red_flags", "enabled"): "red flags on/off (--no-red-flags)",
    ("red_flags", "max_output_tokens"): "--max-output-tokens",  # one setting, recorded twice: named once
    ("red_flags", "identical_min_chars"): "--identical-min-chars",
    ("red_flags", "skip"): "skipped red flags",
    ("red_flags", "detectors"): "red-flag detectors",
    ("red_flags", "extra"): "user red-flag detectors",
}


def _option(section: str, key: str) -> str:
    return _OPTION.get((section, key), "--" + key.replace("_", "-"))


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resume_conflicts(logged: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each setting `current` changes from what the `logged` metadata records, as
    ``"<option>: log <value>, now <value>"``, in a fixed order; empty when the run may resume.

    Pure: compares the two dicts only.  Keys absent from `logged` (an older log) are not
    compared; a section absent from `current` compares as empty (every logged key differs).
    """
    out: list[str] = []
    for key, option in RUN_KEYS:
        if key in logged and logged[key] != current.get(key):
            out.append(f"{option}: log {_show(logged[key])}, now {_show(current.get(key))}")
    for section in SECTIONS:
        before = logged.get(section)
        if not isinstance(before, Mapping):
            continue
        after = dict(current.get(section) or {})
        if section == "red_flags" and "max_output_tokens" not in after:
            # the cap's one owner is the voting config; a policy records it only as a what-if override
            after["max_output_tokens"] = (current.get("voting") or {}).get("max_output_tokens")
        for key in before:
            if section == "voting" and key in MAY_CHANGE:
                continue
            line = f"{_option(section, key)}: log {_show(before[key])}, now {_show(after.get(key))}"
            if before[key] != after.get(key) and line not in out:
                out.append(line)
    return out


def resume_refusal(logged: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """The one-line message that refuses a resume, or None when it may go on."""
    conflicts = resume_conflicts(logged, current)
    if not conflicts:
        return None
    return (
        "cannot resume: this run changes what the log was drawn and judged with ("
        + "; ".join(conflicts)
        + "); rerun with the logged settings, or start a new --log"
    )


__all__ = ["MAY_CHANGE", "resume_conflicts", "resume_refusal"]
