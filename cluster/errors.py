"""The root of maker's one error tree, and the errors the model layer raises.

Rooted here because every layer above can import it (cluster imports nothing of
maker's runtime).  The whole tree is drawn once, in `maker.errors`.
"""

from __future__ import annotations


class MakerError(Exception):
    """Root of every error maker raises on purpose."""


class ModelError(MakerError):
    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class ModelConfigError(ModelError):
    """The model cannot be called as configured; retrying will not help."""


class UsageError(MakerError, ValueError):
    """Bad input from the user: nothing was run, nothing was written (the CLI exits 2)."""
