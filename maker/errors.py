"""maker's errors: one tree, rooted in `cluster.errors.MakerError` (see that module).

The CLI maps `UsageError` (bad input) to exit code 2 and every other `MakerError` to
exit code 1, printing the message as one line.
"""

from __future__ import annotations

from maker.cluster.errors import MakerError, ModelConfigError, ModelError


class UsageError(MakerError, ValueError):
    """Bad input from the user: nothing was run, nothing was written."""


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


class DetectorError(MakerError):
    """A user's red-flag detector raised during a run (at start it is a UsageError)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


__all__ = [
    "EndpointDownError",
    "DetectorError",
    "DiscardStreakError",
    "MakerError",
    "ModelConfigError",
    "ModelError",
    "StepLogError",
    "UsageError",
    "VoteCapError",
]
