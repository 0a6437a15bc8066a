"""Nothing decided is lost, and a tool runs once (issue 24 §2-§4).

A plan of N voted `age` steps and a `total` tool step that appends a line to a file (a side
effect whose calls can be counted).  The model is a plain function at the model boundary
(`--model py:FILE:slow`) that copies the age, and hangs on the record a STUCK file names,
so one batch never finishes: every other decided step must still reach the log, and an
interrupt (SIGTERM, kill -9) must keep it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maker import ClusterConfig, VotingConfig, run, verify_log
from maker.cli.main import main
from maker.log.steplog import decisions, open_log, read_table

pytestmark = pytest.mark.ray

MODULE = '''
import asyncio
import json
from pathlib import Path

from maker.tasks.base import TaskOption
from maker.tasks.plans.plan_task import plan_task
from maker.tasks.plans.user_ops import operation, tool

CALLS = Path({calls!r})
STUCK = Path({stuck!r})
NAMES = ["Ada", "Ben", "Cleo", "Dev"]


def _age(args):
    return int(args[0].split("age: ")[1].split(";")[0])


AGE = operation("age", key="integer", prompt=lambda args: f"Copy the age.\\nRecord: {{args[0]}}\\nage:",
                parse=lambda reply: reply.strip(), truth=_age, render=lambda a: f" {{a}}")
ECHO = operation("echo", key="integer", prompt=lambda args: f"Copy the number.\\nnumber: {{args[0]}}\\ncopy:",
                 parse=lambda reply: reply.strip(), truth=lambda args: int(args[0]), render=lambda a: f" {{a}}")


def total(*ages):
    """The tool: a side effect (one line per call) and the sum."""
    with CALLS.open("a") as fh:
        fh.write(",".join(ages) + "\\n")
    return sum(int(a) for a in ages)


def records(n: int = 2, echo: bool = False, pure: bool = False):
    lines = [f"#E{{i + 1}} = age({{json.dumps(f'name: {{NAMES[i % 4]}}; age: {{20 + i}}; id: {{i}}')}})" for i in range(n)]
    lines.append(f"#E{{n + 1}} = total({{', '.join(f'#E{{i + 1}}' for i in range(n))}})")
    last = n + 1
    if echo:
        lines.append(f"#E{{n + 2}} = echo(#E{{n + 1}})")
        last = n + 2
    lines.append(f"answer = #E{{last}}")
    task = plan_task("\\n".join(lines), ops=[AGE, ECHO, tool("total", total, pure=pure)], name="counted")
    task.prompt_style = "completion"
    return task


records.options = (TaskOption("n", int, "records", default=2),)


async def slow(prompt, temperature, seed):
    """Copies the number after the last 'age: ' or 'number: '; hangs on a prompt holding the
    text the STUCK file names; answers some records wrong (WRONG file: one age per line)."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    if STUCK.exists() and STUCK.read_text() in text:
        await asyncio.sleep(3600)
    await asyncio.sleep(0.01)
    last = text.rsplit("Record: ", 1)[-1] if "Record: " in text else text
    value = int(last.split("age: ")[1].split(";")[0]) if "age: " in last else int(text.split("number: ")[-1].split()[0])
    wrong = Path(str(STUCK) + ".wrong")
    if wrong.exists() and str(value) in wrong.read_text().split():
        value += 1
    return f" {{value}}"
'''


@pytest.fixture
def counted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(the task module, the tool's call file, the STUCK file) in a fresh folder."""
    folder = tmp_path / "proj"
    folder.mkdir()
    calls, stuck = folder / "calls.txt", folder / "stuck.txt"
    module = folder / "counted_q24.py"
    module.write_text(MODULE.format(calls=str(calls), stuck=str(stuck)))
    return module, calls, stuck


def _calls(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def _kinds(log: Path) -> dict[str, int]:
    table = read_table(open_log(log), ["step"])
    kinds = table["kind"].to_pylist()
    return {k: kinds.count(k) for k in set(kinds)}


def _args(module: Path, log: Path, ray_address: str, *extra: str) -> list[str]:
    """`maker run` of the counted task with the `slow` model, as CLI arguments."""
    return ["run", "--task", f"{module}:records", *extra, "--model", f"py:{module}:slow", "--k", "2", "--log", str(log),
            "--address", ray_address, "--quiet", "--json"]


def _cmd(module: Path, log: Path, ray_address: str, *extra: str) -> list[str]:
    """The same as a `maker` process (a run that is to be interrupted must be one)."""
    return [sys.executable, "-c", "from maker.cli.main import main; raise SystemExit(main())",
            *_args(module, log, ray_address, *extra)]


def _wait_for(proc: subprocess.Popen, ready, what: str, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ready():
                return
        except Exception:  # a part being renamed into place as we look
            pass
        time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"{what} never happened (exit {proc.returncode}): {err[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
@pytest.mark.subprocess
def test_decided_steps_reach_the_log_while_their_batch_still_runs(counted, ray_address, tmp_path, how, capsys) -> None:
    """One batch of 20 steps never finishes (its last record hangs): the other 39 of 40 voted
    steps are on disk anyway, an interrupt keeps them, and --resume finishes without
    re-voting them or running the tool twice."""
    module, calls, stuck = counted
    stuck.write_text("age: 59;")  # the 40th record
    log = tmp_path / "w40.parquet"
    proc = subprocess.Popen(_cmd(module, log, ray_address, "--n", "40"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(proc, lambda: len(decisions(log)) == 39, "39 decided steps on disk")
    assert proc.poll() is None  # still running: the stuck step's batch has not come back
    os.kill(proc.pid, how)
    _, err = proc.communicate(timeout=120)
    if how == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated (SIGTERM)" in err and err.count("\n") == 1, err
    else:
        assert proc.returncode == -signal.SIGKILL
    kept = decisions(log)
    assert len(kept) == 39 and 39 not in dict(kept)  # every decided step kept; the hung one not
    assert _calls(calls) == 0  # the tool waits for all 40
    stuck.unlink()
    capsys.readouterr()
    code = main(_args(module, log, ray_address, "--n", "40", "--resume"))  # in this process: only the kill needs one
    done = capsys.readouterr()
    assert code == 0, done.err
    out = json.loads(done.out)
    assert out["solved"] and out["resumed_from_step"] == 39 and out["extra"]["tools_run"] == 1
    assert out["extra"]["answer"] == str(sum(range(20, 60))) == out["extra"]["expected_answer"]
    assert _kinds(log)["decision"] == 40 and _kinds(log)["tool"] == 1 and _calls(calls) == 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_resume_never_runs_a_tool_whose_output_is_logged(counted, ray_address, tmp_path, capsys) -> None:
    """The tool ran (its row is on disk), the step after it hangs, SIGTERM; --resume finishes
    the plan and the tool has still run once."""
    module, calls, stuck = counted
    stuck.write_text("Copy the number.")
    log = tmp_path / "echo.parquet"
    args = _args(module, log, ray_address, "--n", "3", "--opt", "echo=True")
    proc = subprocess.Popen(_cmd(module, log, ray_address, "--n", "3", "--opt", "echo=True"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(proc, lambda: _kinds(log).get("tool") == 1, "the tool row on disk")
    assert _calls(calls) == 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    stuck.unlink()
    capsys.readouterr()
    code = main([*args, "--resume"])  # in this process: only the interrupted run needs one
    done = capsys.readouterr()
    assert code == 0, done.err
    out = json.loads(done.out)
    assert out["solved"] and out["extra"]["tools_run"] == 0 and out["extra"]["answer"] == "63"
    assert _calls(calls) == 1
    tool = read_table(open_log(log), ["step", "answer", "reply"], kind="tool").to_pylist()
    assert [(r["answer"], json.loads(r["reply"])) for r in tool] == [("value = 63", ["20", "21", "22"])]


def test_a_tool_runs_once_per_run_and_never_in_verify_or_estimate(counted, ray_address, tmp_path, capsys) -> None:
    """The issue's example: two voted ages, then `total`.  After the run the tool has run
    once; replay --verify checks its row without running it; estimate never runs it;
    --rerun-tools runs it on request."""
    module, calls, _ = counted
    log = tmp_path / "two.parquet"
    ref = f"{module}:records"
    assert main(["run", "--task", ref, "--model", "sim:0.9", "--k", "2", "--log", str(log), "--address", ray_address,
                 "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["solved"] and out["extra"]["answer"] == "41" and _calls(calls) == 1
    assert out["extra"]["expected_answer"] == "41"  # known from the run's own tool call on right inputs
    for _ in range(2):
        assert main(["replay", str(log), "--verify", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["valid"] and report["solved"] and report["tools_rerun"] == 0
    assert _calls(calls) == 1
    assert main(["estimate", "--task", ref, "--n", "10", "--model", "sim:0.9", "--samples", "10",
                 "--address", ray_address, "--json"]) == 0, capsys.readouterr().err
    estimated = json.loads(capsys.readouterr().out)
    assert estimated["measured_steps"] == 10 and estimated["steps"] == 10 and _calls(calls) == 1  # k for the voted steps
    assert main(["replay", str(log), "--verify", "--rerun-tools", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tools_rerun"] == 1 and _calls(calls) == 2
    assert main(["replay", str(log), "--rerun-tools"]) == 2  # only with --verify
    assert "--rerun-tools goes with --verify" in capsys.readouterr().err


def test_a_pure_tool_is_its_own_ground_truth_and_verify_runs_it(counted, ray_address, tmp_path) -> None:
    module, calls, _ = counted
    from maker.tasks import get_task

    task = get_task(f"{module}:records", n=2, pure=True)
    assert task.expected_answer() == "41" and _calls(calls) == 1  # truth: a pure tool may run
    log = tmp_path / "pure.parquet"
    result = run(task, ["sim:0.9"], VotingConfig(k=2), log=log, cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.extra["answer_correct"] and _calls(calls) == 2
    report = verify_log(log)
    assert report.valid and report.solved and report.tools_rerun == 1 and _calls(calls) > 2  # pure: free to run again


def test_verify_names_every_wrong_step_and_the_consequential_tool(counted, ray_address, tmp_path, capsys) -> None:
    """Records 22, 25 and 31 (steps 2, 5, 11) are answered wrong every time: verify lists all
    three in step order, counts them, and calls the tool step fed by them consequential."""
    module, calls, stuck = counted
    Path(str(stuck) + ".wrong").write_text("22\n25\n31\n")
    log = tmp_path / "wrong.parquet"
    assert main(["run", "--task", f"{module}:records", "--n", "12", "--model", f"py:{module}:slow", "--k", "2",
                 "--log", str(log), "--address", ray_address, "--quiet", "--json"]) == 1  # not solved
    out = json.loads(capsys.readouterr().out)
    assert out["errors"] == 3 and out["first_error_step"] == 2 and not out["solved"]
    assert out["extra"]["expected_answer"] is None  # a side-effecting tool on wrong inputs: its truth is unknown
    assert main(["replay", str(log), "--verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["wrong_steps"] == [2, 5, 11] and report["wrong_decisions"] == 3 and report["first_bad_step"] == 2
    assert report["consequential_steps"] == [12] and report["consequential"] == 1 and not report["valid"]
    assert main(["replay", str(log), "--verify"]) == 1
    text = capsys.readouterr().out
    assert "3 wrong steps of 13 decided" in text and "first 2: 2, 5, 11" in text and "consequential" in text
    assert _calls(calls) == 1


def test_plan_show_previews_a_users_own_plan(counted, maker_cli) -> None:
    module, calls, _ = counted
    done = maker_cli("plan-show", "--task", f"{module}:records", "--n", "3")
    assert done.returncode == 0, done.stderr
    assert "#E4 = total(#E1, #E2, #E3)" in done.stdout and "[tool]" in done.stdout
    done = maker_cli("plan-show", "--task", f"{module}:records", "--n", "3", "--json")
    assert [s["tool"] for s in json.loads(done.stdout)["steps"]] == [False, False, False, True]
    done = maker_cli("plan-show", "hanoi", "--disks", "3")
    assert done.returncode == 2 and "hanoi is not a plan" in done.stderr and done.stderr.count("\n") == 1
    assert _calls(calls) == 0


def test_an_error_in_maker_itself_never_blames_the_users_code(counted) -> None:
    """Before, an estimate that prompted a tool step said "TypeError: total is a tool step ...
    (raised by the task's code?)".  A worker now tells maker's own errors from the task's."""
    import asyncio

    from maker.cluster import ModelSpec
    from maker.cluster.worker import ModelWorker
    from maker.tasks import get_task

    from maker.budget.estimate import EstimateJob, estimate_batch
    from maker.engine.red_flags import RedFlagPolicy
    from maker.errors import MakerError

    module, calls, _ = counted
    task = get_task(f"{module}:records", n=2)
    worker = ModelWorker(task, [ModelSpec("sim:0.9")])
    job = EstimateJob((2,), ("sim:0.9",), VotingConfig(k=2), RedFlagPolicy(), 0)  # step 2 is the tool: maker's mistake
    with pytest.raises(MakerError, match="an error in maker itself, not in your task") as info:
        asyncio.run(worker.call(estimate_batch, job))
    assert "raised by the task's code" not in str(info.value)

    def users_prompt(args):
        raise KeyError("no such column")

    task.ops["age"].prompt = lambda args, style="chat": users_prompt(args)  # the user's code raising
    job = EstimateJob((0,), ("sim:0.9",), VotingConfig(k=2), RedFlagPolicy(), 0)
    with pytest.raises(MakerError, match="raised by the task's code"):
        asyncio.run(worker.call(estimate_batch, job))
    assert _calls(calls) == 0


def test_verify_on_a_chain_counts_the_errors_the_run_counted(ray_address, tmp_path) -> None:
    """A chain goes on past a wrong decision on the premise it implies: verify names each step
    that is wrong on its own premise (what the run counted as errors) and calls the steps right
    on a premise an earlier error spoilt consequential."""
    from maker.tasks import get_task

    log = tmp_path / "h.parquet"
    result = run(get_task("chase", hops=60), ["sim:0.8,seed=3"], VotingConfig(k=1), log=log, seed=5,
                 cluster=ClusterConfig(address=ray_address, speculate=0))
    assert result.errors >= 2
    report = verify_log(log)
    assert report.wrong_decisions == result.errors == len(report.wrong_steps)
    assert report.wrong_steps == sorted(report.wrong_steps) and report.first_bad_step == result.first_error_step
    assert report.consequential + len(report.wrong_steps) <= report.steps and not report.valid and not report.solved


def test_the_preflight_probe_of_a_users_detector_never_runs_a_tool(counted) -> None:
    """`check_detectors` shows a user's detector a known-good reply: of a voted step, never a
    tool step's (finding its output would run the tool)."""
    from maker.tasks.plans.plan_task import plan_task
    from maker.tasks.plugins import import_where

    from maker.engine.red_flags import RedFlagPolicy, check_detectors

    module, calls, _ = counted
    mod = import_where(str(module))
    task = plan_task('#E1 = total(1, 2)\n#E2 = age("name: Ada; age: 33; id: 0")\n#E3 = echo(#E1)\n'
                     'answer = #E1 #E2 #E3', ops=[mod.AGE, mod.ECHO, mod.tool("total", mod.total)])
    seen = []
    policy = RedFlagPolicy(extra=(("probe", lambda sample, ctx: seen.append(ctx.step.index)),))
    check_detectors(task, policy)
    assert seen == [1] and _calls(calls) == 0  # step 1, the first voted step on a known premise


def test_a_worker_killed_mid_stream_is_replaced_and_only_the_steps_still_out_are_sent_again(
        ray_address, tmp_path, model_worker_pids) -> None:
    import threading

    from maker.tasks import get_task

    worker_pids = model_worker_pids
    before = set(worker_pids())
    log = tmp_path / "k.parquet"
    outcome: dict = {}
    task = get_task(str(Path(__file__).resolve().parents[3] / "examples" / "records.py") + ":records", n=150)

    def target() -> None:
        try:
            outcome["result"] = run(task, ["sim:0.99,latency=0.05,jitter=6"], VotingConfig(k=2), log=log,
                                    cluster=ClusterConfig(address=ray_address))
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (list(log.glob("part-*.parquet")) if log.exists() else []):
        time.sleep(0.05)
    victims = [p for p in worker_pids() if p not in before]
    assert victims and thread.is_alive(), "no worker to kill while the plan runs"
    on_disk = len(decisions(log))
    os.kill(victims[0], signal.SIGKILL)
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.solved and result.extra["workers_replaced"] >= 1 and 0 < on_disk < 150
    steps = read_table(open_log(log), ["step"], kind="decision")["step"].to_pylist()
    assert sorted(steps) == list(range(151))  # none missing, none twice
    assert verify_log(log).solved
