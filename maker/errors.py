"""maker's errors: one tree, rooted in `cluster.errors.MakerError` (see that module).

The CLI maps `UsageError` (bad input) to exit code 2 and every other `MakerError` to
exit code 1, printing the message as one line.
"""

from __future__ import annotations

from cluster.errors import MakerError, ModelConfigError, ModelError


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


__all__ = ["MakerError", "ModelConfigError", "ModelError", "StepLogError", "UsageError", "VoteCapError"]
