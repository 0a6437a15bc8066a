"""`maker mcp`: serve maker's tools to agents over the Model Context Protocol (see maker.agents.mcp_server)."""

from __future__ import annotations

import argparse
from typing import Any

from maker.errors import UsageError

DESCRIPTION = """Serve maker's tools to coding agents and agent frameworks over MCP: vote (one voted
call), margin (k and cost for a target), run (start a task in the background), status (its
progress; progress notifications while waiting), verify (replay --verify on a log), tasks.
Over stdio by default; --http PORT serves streamable HTTP on 127.0.0.1 only. Every path a
tool takes is confined to --root (default: the working directory)."""

EPILOG = """examples:
  maker mcp                                stdio (what agents spawn)
  maker mcp --root ~/experiments           logs and runs only under ~/experiments
  maker mcp --http 8765                    http://127.0.0.1:8765/mcp
  maker mcp --local-replicas 1             one embedded-model server for `models: ["local"]`
  claude mcp add maker -- maker mcp --root .   register it with a coding agent"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("mcp", help="serve maker's tools to agents over MCP (stdio or --http on 127.0.0.1)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=".", help="the only directory tools may read or write under (default: .)")
    p.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT instead of stdio")
    p.add_argument("--local-replicas", type=int, metavar="N",
                   help="servers of the embedded model (models: local) for the vote tool and for each run (default 4)")
    p.add_argument("--local-threads", type=int, metavar="N", help="llama.cpp threads per such server (default: one per two cores)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.http is not None and not 1 <= args.http <= 65535:
        raise UsageError(f"--http must be a port in 1..65535, got {args.http}")
    if args.http is not None:
        _check_port_free(args.http)
    local = {name: value for name in ("replicas", "threads") if (value := getattr(args, f"local_{name}", None)) is not None}
    if local:  # the vote tool's servers (this process); each run's job gets the same settings
        from maker.cluster.local.serving import configure
        from maker.runtime.local_models import local_settings

        configure(local_settings(**local))  # UsageError for a value < 1
    try:
        from maker.agents.mcp_server import serve
    except ImportError as exc:  # the SDK is a dependency; a broken install says what to do
        raise UsageError(f"maker mcp needs the MCP SDK: pip install 'mcp>=2.3,<3' ({exc})") from None
    serve(args.root, args.http, local)
    return 0


def _check_port_free(port: int) -> None:
    """UsageError (one line) when 127.0.0.1:`port` cannot be bound, before the server starts
    (the HTTP server would log it and exit with a code of its own)."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(f"--http {port}: 127.0.0.1:{port} is in use or not allowed ({exc.strerror})") from None
