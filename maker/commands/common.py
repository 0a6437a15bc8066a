"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse
from typing import Any

from cluster import ModelSpec


def add_model_arguments(p: argparse.ArgumentParser) -> Any:
    g = p.add_argument_group("models")
    g.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="sim:P, or a litellm model string (repeat to mix models within each step's votes)",
    )
    g.add_argument("--api-base", help="base URL of an OpenAI-compatible server for the litellm models")
    g.add_argument("--concurrency", type=int, default=16, help="concurrent requests per model client (default 16)")
    g.add_argument("--rpm", type=float, help="most requests per minute per litellm model (default: no limit)")
    g.add_argument("--tpm", type=float, help="most tokens (prompt + reply) per minute per litellm model (default: no limit)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds before a model call is abandoned and retried (default 60)")
    return g


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    from ..errors import UsageError

    if args.concurrency < 1:
        raise UsageError("--concurrency must be >= 1")
    for name in ("rpm", "tpm", "timeout"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise UsageError(f"--{name} must be > 0, got {value}")
    return [
        ModelSpec(
            m,
            api_base=args.api_base,
            concurrency=args.concurrency,
            timeout_s=getattr(args, "timeout", 60.0),
            rpm=getattr(args, "rpm", None),
            tpm=getattr(args, "tpm", None),
        )
        for m in args.model
    ]
