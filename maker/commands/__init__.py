"""One module per `maker` subcommand (see maker.cli)."""
