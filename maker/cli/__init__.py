"""The `maker` command: `main.py` dispatches, one module per subcommand (see `maker.cli.main`)."""
