"""A resumed run is the same run: which logged settings a `--resume` may not change.

Why: a step log is re-judged and re-decided from its own metadata (`maker replay
--rejudge`, `--verify`) and counted as one run.  If a resume drew later steps at other
temperatures, on other prompt variants, with another output-token cap or red-flag
policy, the log would hold two runs under one identity, and the run's own recorded
policy would no longer reproduce its decisions.  So every setting the metadata records
about *what is drawn and how it is judged* must match; a resume that changes one is
refused, naming each setting that differs.

The task's code is part of the run: `code_fingerprint` hashes the file that defines the
task (a ``file.py:attr`` or ``pkg.module:attr`` reference, a plugin's module, a built-in's
own module) and the run records it as ``task_code``.  A resume whose code differs is
refused like any other difference (a re-seeded move list would otherwise continue a run
whose first half no longer fits its task); `allow_code_change` goes on anyway, and the
driver then records the change in the log (an event row, ``code_change``).

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

import hashlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
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


def code_fingerprint(task: Any) -> dict[str, Any] | None:
    """What the run records as ``task_code``: ``{"file": PATH, "sha256": HEX, "options":
    HEX}`` -- the file that defines the task (found from its recorded name) and a hash of
    its options -- or None when no file can be named (a task object made in Python under
    a name that does not resolve, or a file that cannot be read)."""
    from maker.tasks.registry import TaskNameError, resolve

    spec = getattr(task, "spec", None)
    name = getattr(spec, "name", None)
    if not isinstance(name, str):
        return None
    try:
        target = resolve(name).target
    except (TaskNameError, Exception):  # noqa: BLE001 -- an unresolvable name is simply not fingerprinted
        return None
    module = inspect.getmodule(target) or inspect.getmodule(type(target))
    path = getattr(module, "__file__", None)
    if not path:
        return None
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
    options = json.dumps(getattr(spec, "options", {}) or {}, sort_keys=True, default=repr)
    return {"file": str(Path(path).resolve()), "sha256": digest,
            "options": hashlib.sha256(options.encode()).hexdigest()}


def code_change(logged: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """How the task's code differs between the logged run and now, in words; None when it
    does not (or an older log recorded no fingerprint)."""
    before, after = logged.get("task_code"), current.get("task_code")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping) or before.get("sha256") == after.get("sha256"):
        return None
    where = before.get("file") if before.get("file") == after.get("file") else f"{before.get('file')} -> {after.get('file')}"
    return f"the task's code changed ({where}: sha256 {str(before.get('sha256'))[:12]} in the log, {str(after.get('sha256'))[:12]} now)"


def resume_refusal(logged: Mapping[str, Any], current: Mapping[str, Any], allow_code_change: bool = False) -> str | None:
    """The one-line message that refuses a resume, or None when it may go on (a changed
    task code only with `allow_code_change`)."""
    conflicts = resume_conflicts(logged, current)
    changed = code_change(logged, current)
    if changed and not allow_code_change:
        conflicts.insert(0, changed + "; --resume-changed-code goes on anyway and records it in the log")
    if not conflicts:
        return None
    return (
        "cannot resume: this run changes what the log was drawn and judged with ("
        + "; ".join(conflicts)
        + "); rerun with the logged settings, or start a new --log"
    )


__all__ = ["MAY_CHANGE", "code_change", "code_fingerprint", "resume_conflicts", "resume_refusal"]
