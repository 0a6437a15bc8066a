"""`maker sim-server`: serve the simulator as an OpenAI-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import signal
import sys
from typing import Any

from maker.cluster.simulated.sim_server import FAULT_KINDS, SIM_TASKS, SimApp, SimServerConfig, bind, start
from maker.errors import UsageError

DESCRIPTION = """Serve a simulated model over HTTP, OpenAI-style (POST /v1/chat/completions and
/v1/completions, GET /v1/models and /stats), on 127.0.0.1 only. Each request's step is
read from the prompt text and answered from the task's ground truth: right with
probability --p, after --latency (+ up to --jitter) seconds. Everything it serves is
simulated. litellm, and so `maker run`, reach it like a hosted model:
--model openai/sim --api-base http://127.0.0.1:PORT/v1."""

EPILOG = f"""examples:
  maker sim-server --port 8400 --p 0.998 --latency 0.2
  maker run hanoi --disks 8 --model openai/sim --api-base http://127.0.0.1:8400/v1 --k 3

  maker sim-server --port 8401 --latency 0.5 --jitter 0.5 --concurrency 64
      a slow, uneven provider that answers 64 requests at a time
  maker sim-server --port 8402 --fault-rate 0.05 --faults 429,500,hang --retry-after 1
      5% of requests fail: rate limited, server error, or no answer at all
  curl -s http://127.0.0.1:8402/stats        what the server saw (faults injected, tokens)

faults: {", ".join(FAULT_KINDS)} (hang: answers after --hang seconds, so the client's
timeout fires; reset: drops the connection; truncated: half a JSON body; huge: a 1 MB
reply that ignores max_tokens).
Stop with Ctrl-C or SIGTERM. exit codes: 0 stopped, 2 bad input (e.g. port in use)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sim-server",
        help="serve a simulated model over OpenAI-compatible HTTP (load tests, fault drills)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8400, help="port on 127.0.0.1 (default 8400; 0 picks a free one)")
    p.add_argument("--p", type=float, default=0.998, help="probability that an answer is right (default 0.998)")
    p.add_argument("--latency", type=float, default=0.2, help="seconds before each answer (default 0.2)")
    p.add_argument("--jitter", type=float, default=0.0, help="extra seconds, uniform in [0, JITTER], per request (default 0)")
    p.add_argument("--concurrency", type=int, default=256, help="requests answered at once; more wait in line (default 256)")
    p.add_argument("--task", default="hanoi", choices=SIM_TASKS,
                   help=f"task whose step prompts it answers: {' or '.join(SIM_TASKS)} (default hanoi)")
    p.add_argument("--disks", type=int, help="hanoi: refuse prompts with another number of disks (default: any)")
    p.add_argument("--redflag", type=float, default=0.0, help="fraction of answers a red flag must catch (default 0)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    f = p.add_argument_group("fault injection")
    f.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests that fail (default 0)")
    f.add_argument("--faults", default=",".join(FAULT_KINDS), help=f"comma-separated kinds to draw from (default all: {','.join(FAULT_KINDS)})")
    f.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent with a 429 (default 1)")
    f.add_argument("--hang", type=float, default=600.0, help="seconds a 'hang' fault waits before answering (default 600)")
    o = p.add_argument_group("output")
    o.add_argument("--quiet", action="store_true", help="print only the listening line")
    o.add_argument("--stats-every", type=float, default=10.0, help="print a stats line every S seconds (default 10; 0: never)")
    o.add_argument("--duration", type=float, help="stop after this many seconds (default: run until stopped)")
    p.set_defaults(handler=main)


def config_from_args(args: argparse.Namespace) -> SimServerConfig:
    config = SimServerConfig(
        p=args.p,
        latency=args.latency,
        jitter=args.jitter,
        concurrency=args.concurrency,
        task=args.task,
        disks=args.disks,
        red_flag_rate=args.redflag,
        seed=args.seed,
        fault_rate=args.fault_rate,
        faults=tuple(f.strip() for f in args.faults.split(",") if f.strip()),
        retry_after_s=args.retry_after,
        hang_s=args.hang,
        port=args.port,
    )
    problems = config.problems()
    if args.duration is not None and not args.duration > 0:
        problems.append("--duration must be > 0")
    if problems:
        raise UsageError(problems[0])
    return config


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        sock = bind(config.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"127.0.0.1:{config.port} is already in use; choose another --port (0 picks a free one)") from None
        raise UsageError(f"cannot listen on 127.0.0.1:{config.port}: {exc.strerror or exc}") from None
    app = SimApp(config)
    port = sock.getsockname()[1]
    asyncio.run(_serve(app, sock, port, args))
    return 0


async def _serve(app: SimApp, sock: Any, port: int, args: argparse.Namespace) -> None:
    runner = await start(app, sock)
    cfg = app.config
    print(
        f"maker sim-server: listening on http://127.0.0.1:{port}/v1 [simulated model: {cfg.task}, p={cfg.p}, "
        f"latency {cfg.latency}s + up to {cfg.jitter}s, fault rate {cfg.fault_rate}]",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    every = args.stats_every if not args.quiet else 0
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=every or None)
            except asyncio.TimeoutError:
                print("maker sim-server: " + _line(app.stats.to_dict()), file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()
    if not args.quiet:
        print(json.dumps(app.stats.to_dict()), flush=True)


def _line(stats: dict[str, Any]) -> str:
    return (
        f"{stats['requests']:,} requests, {stats['answered']:,} answered, {stats['faults_total']:,} faults, "
        f"{stats['in_flight']} in flight (max {stats['max_in_flight']}), {stats['disconnected']} abandoned by clients"
    )
