"""Parallel against sequential dispatch of the same plan (a DAG of atomic steps).

For `multiply --digits 10` (100 independent digit products, then a chain of 19 column
sums) and `sort --n 500` (a 9,511-step sorting network, 45 levels up to 250 wide), run
the plan twice through Ray: parallel dispatch (every ready step goes out at once, in
batches over --workers actors) and forced sequential dispatch (one step per Ray call,
one call at a time).  Draws are seeded by (run seed, node, sample), so both must decide
exactly the same answers; the script checks that, zero errors, and the final answer.

Models, all simulated (every figure here is simulated):
* `sim:0.99` in-process, no latency: what the dispatch itself costs;
* `sim:0.99,latency=L`: each model call takes L seconds, as a hosted model does;
* `maker sim-server` with latency, behind real HTTP and litellm.  The sim-server only
  knows Hanoi prompts, so this script registers a reader for plan-step prompts with it
  (`tasks.plans.ops.step_from_prompt`, `OpOracle`) -- a stopgap until sim_server.py offers a hook.
  litellm costs tens of milliseconds of CPU per request on a busy 2-core machine, so the
  sort runs there use a smaller network (--server-sort-n, default 64 numbers).

    python bench/dag.py                          # several minutes on 2 cores
    python bench/dag.py --quick                  # smaller sizes
    python bench/dag.py --only multiply --repeat 3 --latency 0.02

Times: `dispatch` is first dispatch to last decision (no Ray or actor start-up); `wall`
is the whole maker.run call.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def one(task, model, workers: int, sequential: bool, log: Path) -> dict:
    from maker import ClusterConfig, VotingConfig
    from maker.config import DagConfig
    from maker.log.steplog import decisions
    from maker.runtime.driver import run as run_plan

    r = run_plan(task, [model], VotingConfig(k=3), log=log, cluster=ClusterConfig(workers=workers),
                 dag=DagConfig(sequential=sequential))
    return {
        "dispatch": "sequential" if sequential else "parallel",
        "dispatch_s": r.extra["dispatch_s"],
        "wall_s": r.wall_s,
        "steps": r.steps,
        "errors": r.errors,
        "answer_ok": r.extra["answer_correct"],
        "samples_per_step": r.samples_per_step,
        "ray_calls": r.extra["ray_calls"],
        "decisions": decisions(log),
    }


def compare(name: str, task, model, label: str, workers: int, work: Path, repeat: int = 1) -> list[dict]:
    """Parallel then sequential dispatch of the same plan; with `repeat`, the fastest of that many runs each."""
    rows = []
    for sequential in (False, True):
        tries = []
        for attempt in range(repeat):
            log = work / f"{name}-{label}-{'seq' if sequential else 'par'}-{attempt}.parquet".replace(" ", "_").replace(",", "_")
            tries.append(one(task, model, workers, sequential, log))
        row = min(tries, key=lambda r: r["dispatch_s"])
        row.update(task=name, model=label, runs=repeat)
        rows.append(row)
        print(f"  {label:<28} {row['dispatch']:<10} dispatch {row['dispatch_s']:7.2f}s  wall {row['wall_s']:7.2f}s  "
              f"errors {row['errors']}  answer {'ok' if row['answer_ok'] else 'WRONG'}", flush=True)
    par, seq = rows
    same = par["decisions"] == seq["decisions"]
    for row in rows:
        row["same_decisions"] = same
        row["speedup"] = round(seq["dispatch_s"] / par["dispatch_s"], 2) if par["dispatch_s"] else None
    return rows


def register_ops_reader() -> None:
    """Let `maker sim-server` answer mul/column/cmp prompts (see the module docstring)."""
    import maker.cluster.simulated.sim_server as sim_server
    from maker.tasks.plans.ops import OpOracle, step_from_prompt

    oracle = OpOracle()

    def reader(_disks: int | None):
        def read(text: str):
            step = step_from_prompt(text)
            return None if step is None else (oracle, step)

        return read

    sim_server._READERS.setdefault("ops", reader)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--digits", type=int, default=10)
    ap.add_argument("--sort-n", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--latency", type=float, default=0.01, help="seconds per call of the in-process simulator (default 0.01)")
    ap.add_argument("--server-latency", type=float, default=0.01, help="seconds per request of the sim-server (default 0.01)")
    ap.add_argument("--skip-server", action="store_true", help="no sim-server runs")
    ap.add_argument("--only", choices=("multiply", "sort"), help="run one of the two tasks only")
    ap.add_argument("--server-sort-n", type=int, default=64,
                    help="sort size on the sim-server (default 64: 9,511 steps through litellm take minutes here)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per row; the fastest is reported (default 1)")
    ap.add_argument("--quick", action="store_true", help="digits 6, sort 128")
    args = ap.parse_args()
    if args.quick:
        args.digits, args.sort_n = 6, 128

    from maker.cluster import ModelSpec, ensure_ray
    from maker.tasks import get_task

    ensure_ray()
    tasks = {f"multiply --digits {args.digits}": get_task("multiply", digits=args.digits),
             f"sort --n {args.sort_n}": get_task("sort", n=args.sort_n)}
    tasks = {name: task for name, task in tasks.items() if args.only is None or name.startswith(args.only)}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, task in tasks.items():
            print(f"# {name}: {task.total_steps:,} steps, {len(task.plan.widths())} levels, widest {max(task.plan.widths())}",
                  flush=True)
            rows += compare(name, task, "sim:0.99", "sim:0.99", args.workers, work, args.repeat)
            lat = f"sim:0.99,latency={args.latency}"
            rows += compare(name, task, lat, lat, args.workers, work, args.repeat)
        if not args.skip_server:
            from maker.cluster.simulated.sim_server import SimServer, SimServerConfig

            register_ops_reader()
            config = SimServerConfig(task="ops", p=0.99, latency=args.server_latency, concurrency=512)
            with SimServer(config) as server:
                spec = ModelSpec("openai/sim", api_base=server.url, concurrency=256, timeout_s=30)
                for name, task in tasks.items():
                    if name.startswith("sort"):
                        name, task = f"sort --n {args.server_sort_n}", get_task("sort", n=args.server_sort_n)
                    print(f"# {name} on maker sim-server (HTTP + litellm)", flush=True)
                    rows += compare(name, task, spec, f"sim-server latency={args.server_latency}", args.workers, work,
                                    args.repeat)
    print()
    head = f"{'task':<22} {'model':<28} {'dispatch':<10} {'dispatch_s':>10} {'wall_s':>8} {'speedup':>7} " \
           f"{'calls':>6} {'smp/step':>8} {'errors':>6} {'answer':>6} {'same':>5}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['task']:<22} {r['model']:<28} {r['dispatch']:<10} {r['dispatch_s']:>10.2f} {r['wall_s']:>8.2f} "
              f"{(r['speedup'] or 0):>7.2f} {r['ray_calls']:>6} {r['samples_per_step']:>8.3f} {r['errors']:>6} "
              f"{'ok' if r['answer_ok'] else 'WRONG':>6} {'yes' if r['same_decisions'] else 'NO':>5}")
    print("\nall figures simulated; speedup = sequential dispatch_s / parallel dispatch_s")
    bad = [r for r in rows if r["errors"] or not r["answer_ok"] or not r["same_decisions"]]
    if bad:
        raise SystemExit(f"{len(bad)} runs with errors, a wrong answer or differing decisions")


if __name__ == "__main__":
    main()
