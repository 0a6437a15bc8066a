"""The one error tree of maker, rooted here because every layer above can import it.

    MakerError
     ├── ModelError            a model could not be used (fields: model)
     │    └── ModelConfigError  a setting is missing or wrong (API key, base URL, model name)
     └── (maker.errors adds: UsageError, StepLogError, VoteCapError)

Errors carry fields instead of pre-formatted context, and nothing here logs: the CLI
turns any MakerError into one line on stderr and a non-zero exit.
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
