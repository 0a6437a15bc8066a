"""The `maker` command: one module per subcommand, `main.py` dispatches (see `maker.cli.main`)."""

from maker.cli.main import main

__all__ = ["main"]
