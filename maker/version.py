"""maker's version: one place, read by the package (`maker.__version__`), the run metadata
of every step log, the MCP server and `maker --version`.

A module of its own so that a module inside maker can name the version without importing
the package's `__init__` (which imports that module back: an import cycle)."""

__version__ = "0.1.0"
