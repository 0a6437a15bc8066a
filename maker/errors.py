"""maker's errors: the one tree, rooted and drawn here, and `one_line`, an exception as one line.

A leaf module: it imports nothing of maker's at import time (only `one_line` reaches for
`maker.cluster.secrets.redact`, itself a leaf, when it runs), so every layer may import it --
`maker.cluster` and `maker.tasks` too, which may not import maker's runtime.

    MakerError
     ├── UsageError (and ValueError)  bad input: nothing was run, nothing written      exit 2
     ├── ModelError (model)           a model could not be used
     │    ├── ModelConfigError        a setting is missing or wrong (key, base URL, name) exit 2
     │    └── LocalServerError        the embedded model's server (maker.cluster.local.server)
     ├── StepLogError (path)          a step log cannot be read or written             exit 2
     ├── VoteCapError (step, samples) a step hit the sample cap undecided              exit 1
     │    └── DiscardStreakError (reasons)  every sample red-flagged, many in a row
     │         └── EndpointDownError        every call failed, many in a row
     ├── BudgetReached (spent_usd, cap_usd)  a voted call's next round would cross its cap   exit 1
     ├── DetectorError (name)         a user's red-flag detector raised mid-run
     └── WorkerLostError              Ray workers kept dying on one batch (maker.cluster.worker)

The task layer raises plain ValueErrors that name the user's mistake (`PlanError`,
`TaskNameError`, `ToolError`); the runtime turns them into UsageError or MakerError at
its boundary.  Errors carry fields instead of pre-formatted context and nothing here
logs: the CLI prints any MakerError as one line on stderr with the exit code above
(1 where none is given).
"""

from __future__ import annotations


class MakerError(Exception):
    """Root of every error maker raises on purpose."""


class ModelError(MakerError):
    """A model could not be used; `model` names it when known."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class ModelConfigError(ModelError):
    """The model cannot be called as configured; retrying will not help."""


class UsageError(MakerError, ValueError):
    """Bad input from the user: nothing was run, nothing was written (the CLI exits 2)."""


class StepLogError(MakerError):
    """A step log cannot be read, is foreign, or cannot be written."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class VoteCapError(MakerError):
    """A step drew its maximum number of samples without a decision: the run stops loudly."""

    def __init__(self, message: str, *, step: int, samples: int) -> None:
        super().__init__(message)
        self.step = step
        self.samples = samples


class DiscardStreakError(VoteCapError):
    """Every sample a step drew was red-flagged, `max_discards_in_a_row` of them: the policy
    or the model discards everything, so the run stops instead of paying on."""

    def __init__(self, message: str, *, step: int, samples: int, reasons: dict[str, int]) -> None:
        super().__init__(message, step=step, samples=samples)
        self.reasons = reasons


class EndpointDownError(DiscardStreakError):
    """A step's calls all failed, `max_failed_calls` of them after their retries: the model
    endpoint is down or hangs, so the run stops instead of timing out sample after sample."""


class BudgetReached(MakerError):
    """A voted call could not send its next round within `max_cost_usd` (a run does not
    raise: it stops cleanly with `RunResult.status` "budget_reached"); `spent_usd` was
    spent against `cap_usd`."""

    def __init__(self, message: str, *, spent_usd: float, cap_usd: float) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.cap_usd = cap_usd


class DetectorError(MakerError):
    """A user's red-flag detector raised during a run (at start it is a UsageError)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


def one_line(exc: BaseException | str, limit: int | None = 300, *, typed: bool = False) -> str:
    """An exception (or a message) as one line for stderr, MCP, a log or a result file.

    Whitespace runs become one space; API keys and other secrets are redacted
    (`maker.cluster.secrets.redact`) before the text is cut to `limit` characters (None: no
    cut), so a cut never leaves part of a key; a huge message (a 1 MB error body) is read to
    its first 64 KB.  `typed` prefixes the exception's type ("KeyError: 'x'").  Never
    raises: an exception whose ``__str__`` fails reads "(no message)".

    >>> one_line(ValueError("bad\n   input"), typed=True)
    'ValueError: bad input'
    """
    from maker.cluster.secrets import redact

    try:
        message = str(exc)[:65536]
    except Exception:  # a user's exception with a broken __str__
        message = "(no message)"
    text = " ".join(message.split())
    if typed and isinstance(exc, BaseException):
        text = f"{type(exc).__name__}: {text}"
    text = redact(text)
    return text if limit is None else text[:limit]


__all__ = [
    "BudgetReached",
    "EndpointDownError",
    "DetectorError",
    "DiscardStreakError",
    "MakerError",
    "ModelConfigError",
    "ModelError",
    "StepLogError",
    "UsageError",
    "VoteCapError",
    "one_line",
]
