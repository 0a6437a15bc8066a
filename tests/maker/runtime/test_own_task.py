"""A user's own task, model and project, run through real Ray workers (issue 15).

The task lives in a temporary folder outside the package, on the driver's sys.path only:
the workers can import it only because it travels by value (cluster/worker.py)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
from maker.tasks import TaskSpec, build_task

import maker
from maker.cli.main import main
from maker.runtime.driver import ClusterConfig

pytestmark = pytest.mark.ray

TASK_FILE = '''
from maker.tasks.base import TaskOption
from maker.tasks.chain_task import chain_task
from maker.tasks.fields import last_field

AMOUNTS = [(i * 37) % 41 - 20 for i in range(1000)]


def ledger(n: int = 20, start: int = 100):
    """A running balance over n transactions."""
    if n > 1000:
        raise ValueError("at most 1000 transactions")
    amounts = AMOUNTS[:n]
    return chain_task(
        name="ledger", start=start, steps=n, key="integer",
        prompt=lambda balance, i: f"balance = {balance}\\ntransaction = {amounts[i]:+d}\\nnew balance =",
        parse=lambda reply: last_field("balance = " + reply, "balance"),
        truth=lambda balance, i: balance + amounts[i],
    )


ledger.options = (TaskOption("n", int, "transactions", default=20), TaskOption("start", int, "opening balance"))


def no_truth(n: int = 5):
    return chain_task(name="guess", start=0, steps=n, key="integer", prompt=lambda s, i: f"{s}+1=")


def locked():
    task = ledger(3)
    task.lock = threading.Lock()
    return task


import os  # noqa: E402
import threading  # noqa: E402

from maker.tasks.chain_task import OracleChainTask  # noqa: E402


def _rebuild(pid):
    if os.getpid() != pid:
        raise FileNotFoundError("/driver/only/settings.yaml")
    return ledger(3)


class Fragile(OracleChainTask):
    """A task that pickles on the driver but cannot be rebuilt anywhere else."""

    def __reduce__(self):
        return (_rebuild, (os.getpid(),))


def fragile():
    task = ledger(3)
    task.__class__ = Fragile
    return task


not_a_task = 42
'''

MODELS = '''
import os
from maker.cluster import FunctionClient


def adder(prompt, temperature, seed):
    """A deterministic solver: reads the prompt (chat messages or one text), adds."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    lines = dict(line.split(" = ") for line in text.splitlines() if " = " in line)
    return str(int(lines["balance"]) + int(lines["transaction"]))


def only_on_driver():
    if os.environ.get("MAKER_TEST_DRIVER_PID") != str(os.getpid()):
        raise RuntimeError("this node has no credentials for my backend")
    return FunctionClient(adder, name="driver-only")
'''


PLAN_FILE = '''
import json
from maker.tasks.plans.plan_task import plan_task
from maker.tasks.plans.user_ops import operation, tool

RECORDS = [{"id": i, "price": (i * 17) % 50 + 1} for i in range(5)]
price = operation("price", key="integer", render=lambda p: f"price = {p}",
                  prompt=lambda args: f"Record: {args[0]}\\nprice =",
                  parse=lambda reply: reply.rpartition("price =")[2] if "price =" in reply else None,
                  truth=lambda args: json.loads(args[0])["price"])
LINES = [f"#E{i + 1} = price({json.dumps(json.dumps(r))})" for i, r in enumerate(RECORDS)]


def records(fail: bool = False):
    def total(*prices):
        if fail:
            raise ZeroDivisionError("the ledger is closed")
        return sum(int(p) for p in prices)
    text = "\\n".join([*LINES, "#E9 = total(" + ", ".join(f"#E{i + 1}" for i in range(5)) + ")", "answer = #E9"])
    return plan_task(text, ops=[price, tool("total", total)], name="records")


def clashing():
    return plan_task("#E1 = mul(2, 3)\\nanswer = #E1", ops={"mul": lambda a, b: 0})
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project folder: their task module, a model module, and their own `tasks.py`
    and `cluster/` (common names) that must not shadow maker's packages."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "ledger_task_q15.py").write_text(TASK_FILE)
    (proj / "my_models_q15.py").write_text(MODELS)
    (proj / "records_plan_q15.py").write_text(PLAN_FILE)
    (proj / "tasks.py").write_text("MINE = 'user tasks.py'\n")
    (proj / "cluster").mkdir()
    (proj / "cluster" / "__init__.py").write_text("MINE = 'user cluster'\n")
    monkeypatch.chdir(proj)
    return proj


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_python_run_of_a_task_defined_outside_the_package(project, monkeypatch, ray_address) -> None:
    monkeypatch.syspath_prepend(str(project))
    module = importlib.import_module("ledger_task_q15")
    result = maker.run(module.ledger(25), ["sim:0.9"], maker.VotingConfig(k=2),
                       cluster=ClusterConfig(address=ray_address), seed=3)
    assert result.solved and result.errors == 0 and result.steps == 25 and result.simulated
    # estimate on the same object: p measured against its ground truth, on the workers
    report = maker.estimate(module.ledger(25), ["sim:0.9"], samples=60, seed=5, cluster=ClusterConfig(address=ray_address))
    (est,) = report.models
    # 60 asked of a 25-step task: each step once (a repeat would redraw the same seeded samples)
    assert report.simulated and est.measured_steps == 25 and est.valid == 50 and 0.75 < est.p < 1.0 and est.k >= 1
    # a deterministic solver as the model: a FunctionClient, not labelled simulated
    models = importlib.import_module("my_models_q15")
    result = maker.run(module.ledger(10), [maker.FunctionClient(models.adder)], maker.VotingConfig(k=1),
                       cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.errors == 0 and not result.simulated and result.samples == 10


def test_python_run_by_name_then_replay_verify(project, ray_address, tmp_path, capsys) -> None:
    task = build_task(TaskSpec(f"{project}/ledger_task_q15.py:ledger", {"n": 12}))
    log = tmp_path / "py.parquet"
    result = maker.run(task, ["sim:0.85"], maker.VotingConfig(k=2), log=log, cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.errors == 0
    report = maker.verify_log(log)
    assert report.valid and report.steps == 12
    code, out, _ = run_cli(capsys, "replay", str(log), "--verify", "--json")
    assert code == 0 and json.loads(out)["valid"]


def test_cli_run_resume_and_verify_a_task_file(project, ray_address, tmp_path, capsys) -> None:
    log = tmp_path / "cli.parquet"
    ref = str(project / "ledger_task_q15.py") + ":ledger"
    common = ["--model", "sim:0.9", "--k", "2", "--log", str(log), "--address", ray_address, "--quiet", "--json"]
    code, out, err = run_cli(capsys, "run", "--task", ref, "--n", "30", "--max-steps", "12", *common)
    assert code == 0, err
    first = json.loads(out)
    assert first["steps"] == 12 and not first["solved"] and first["task"].endswith("ledger_task_q15.py:ledger n=30")
    code, out, err = run_cli(capsys, "run", "--task", ref, "--opt", "n=30", "--resume", *common)
    assert code == 0, err
    second = json.loads(out)
    assert second["solved"] and second["resumed_from_step"] == 12 and second["errors"] == 0
    code, out, _ = run_cli(capsys, "replay", str(log), "--verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["valid"] and report["steps"] == 30
    code, out, _ = run_cli(capsys, "tasks", "--task", ref, "--json")
    (row,) = json.loads(out)
    assert [o["name"] for o in row["options"]] == ["n", "start"] and row["origin"].startswith("file ")


@pytest.mark.subprocess
def test_cli_subprocess_from_a_folder_with_its_own_tasks_and_cluster(project, ray_address, tmp_path) -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # the import probe and the `maker` run at once (neither depends on the other)
    probe = subprocess.Popen(
        [sys.executable, "-c", "import maker, tasks, cluster; from maker.tasks import TASKS; "
         "import maker.cluster; print(tasks.MINE, '|', cluster.MINE, '|', 'hanoi' in TASKS)"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    log = tmp_path / "sub.parquet"
    maker_cli = os.path.join(os.path.dirname(sys.executable), "maker")
    done = subprocess.Popen(
        [maker_cli, "run", "--task", "ledger_task_q15:ledger", "--n", "8", "--model", "py:my_models_q15:adder",
         "--k", "1", "--log", str(log), "--address", ray_address, "--quiet", "--json"],
        cwd=project, env={**env, "PYTHONPATH": str(project)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    probe_out, probe_err = probe.communicate(timeout=120)
    out, err = done.communicate(timeout=300)
    assert probe.returncode == 0, probe_err
    assert probe_out.strip() == "user tasks.py | user cluster | True"
    assert done.returncode == 0, err
    result = json.loads(out)
    assert result["solved"] and result["errors"] == 0 and not result["simulated"]
    assert result["models"] == ["py:my_models_q15:adder"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--task", "no_such_module_q15:task"], "no module named 'no_such_module_q15'"),
        (["--task", "{file}:missing"], "has no attribute 'missing'"),
        (["--task", "{file}:not_a_task"], "not a task"),
        (["--task", "{file}:ledger", "--n", "5000"], "the factory raised ValueError: at most 1000"),
        (["--task", "{file}:ledger", "--opt", "colour=red"], "does not take option(s) colour"),
        (["--task", "{file}:no_truth"], "the simulator needs ground truth"),
        (["--task", "{file}:no_truth", "--digits", "3"], "does not take option(s) digits (it takes: n)"),
        (["--task", "{file}:locked"], "cannot be sent to the Ray workers"),
        (["--task", "{file}:ledger", "--model", "py:{models}:nothing"], "no callable 'nothing'"),
        (["--task", "{plan}:clashing"], "clashes with the built-in operation mul"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(project, capsys, args, needle) -> None:
    files = {"file": project / "ledger_task_q15.py", "models": project / "my_models_q15.py",
             "plan": project / "records_plan_q15.py"}
    args = [a.format(**files) for a in args]
    model = [] if "--model" in args else ["--model", "sim:0.9"]
    code, out, err = run_cli(capsys, "run", *args, *model, "--k", "2")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("maker: error:") and "Traceback" not in err
    assert needle in err
    assert not (project / "runs").exists()


def test_a_model_that_fails_only_on_the_workers_stops_before_ray_retries(project, monkeypatch, ray_address, capsys,
                                                                          tmp_path) -> None:
    monkeypatch.setenv("MAKER_TEST_DRIVER_PID", str(os.getpid()))
    ref = str(project / "ledger_task_q15.py") + ":ledger"
    code, _, err = run_cli(capsys, "run", "--task", ref, "--n", "5", "--model", f"py:{project}/my_models_q15.py:only_on_driver",
                           "--k", "1", "--address", ray_address, "--log", str(tmp_path / "w.parquet"), "--quiet")
    assert code == 2
    assert err.count("\n") == 1 and "this node has no credentials for my backend" in err
    assert "WorkerLostError" not in err and "died" not in err
    code, _, err = run_cli(capsys, "run", "--task", str(project / "ledger_task_q15.py") + ":fragile", "--model", "sim:0.9",
                           "--k", "1", "--address", ray_address, "--log", str(tmp_path / "f.parquet"), "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "could not load the task" in err and "FileNotFoundError: /driver/only/settings.yaml" in err


def test_plan_with_a_user_operation_and_a_tool_step(project, ray_address, tmp_path, capsys) -> None:
    log = tmp_path / "plan.parquet"
    ref = str(project / "records_plan_q15.py") + ":records"
    code, out, err = run_cli(capsys, "run", "--task", ref, "--model", "sim:0.8", "--k", "2", "--log", str(log),
                             "--address", ray_address, "--quiet", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["solved"] and result["extra"]["answer"] == result["extra"]["expected_answer"] == "75"
    import pyarrow.dataset as ds

    rows = ds.dataset(str(log)).to_table().to_pylist()
    tool_rows = [r for r in rows if r["kind"] == "tool"]  # its own row kind, never a voted decision
    assert len(tool_rows) == 1 and tool_rows[0]["answer"] == "value = 75" and tool_rows[0]["votes"] == 0
    assert "[tool]" in tool_rows[0]["detail"] and tool_rows[0]["step"] not in [r["step"] for r in rows if r["kind"] == "decision"]
    assert not [r for r in rows if r["kind"] == "sample" and r["step"] == tool_rows[0]["step"]]  # never voted
    code, out, _ = run_cli(capsys, "replay", str(log), "--verify", "--json")
    assert code == 0 and json.loads(out)["valid"]
    code, _, err = run_cli(capsys, "run", "--task", ref, "--opt", "fail=True", "--model", "sim:0.9", "--k", "1",
                           "--log", str(tmp_path / "fail.parquet"), "--address", ray_address, "--quiet")
    assert code == 1 and err.count("\n") == 1
    assert "tool total raised ZeroDivisionError: the ledger is closed" in err and "#E9" in err


def test_an_installed_plugin_runs_by_short_name_and_is_listed(project, monkeypatch, ray_address, tmp_path,
                                                              capsys) -> None:
    site = tmp_path / "site"
    (site / "ledger_plugin_q15").mkdir(parents=True)
    (site / "ledger_plugin_q15" / "__init__.py").write_text(TASK_FILE)
    dist = site / "ledger_plugin_q15-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ledger-plugin-q15\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[maker.tasks]\nledgerq = ledger_plugin_q15:ledger\n")
    monkeypatch.syspath_prepend(str(site))
    code, out, _ = run_cli(capsys, "tasks", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["ledgerq"]["origin"].startswith("plugin ledger-plugin-q15 1.2")
    assert [o["name"] for o in rows["ledgerq"]["options"]] == ["n", "start"] and rows["hanoi"]["origin"] == "built-in"
    log = tmp_path / "plugin.parquet"
    code, out, err = run_cli(capsys, "run", "ledgerq", "--n", "6", "--model", "sim:0.9", "--k", "2", "--log", str(log),
                             "--address", ray_address, "--quiet", "--json")
    assert code == 0, err
    assert json.loads(out)["solved"]
    code, out, _ = run_cli(capsys, "replay", str(log), "--verify", "--json")
    assert code == 0 and json.loads(out)["valid"]


@pytest.mark.parametrize("speculate", ["0", "4"])
def test_task_code_that_raises_mid_run_is_one_line_exit_1(project, ray_address, tmp_path, capsys, speculate) -> None:
    # the prompt passes the preflight on step 0 and raises at step 3, on a worker
    (project / "late.py").write_text(
        "import maker\n"
        "def _prompt(state, i):\n"
        "    if i == 3:\n"
        "        raise RuntimeError('prompt blew up at 3')\n"
        "    return f's {state}'\n"
        "def late(n: int = 6):\n"
        "    return maker.chain_task(name='late.py:late', start=0, steps=n, prompt=_prompt,\n"
        "                            parse=lambda r: r.strip(), key='integer', truth=lambda s, i: s + 1)\n"
    )
    capsys.readouterr()
    log = tmp_path / "late.parquet"
    code = main(["run", "--task", str(project / "late.py") + ":late", "--model", "sim:0.95", "--k", "1",
                 "--address", ray_address, "--log", str(log), "--quiet", "--speculate", speculate])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("maker: error: the run stopped in a worker: RuntimeError: prompt blew up at 3")
    # the steps decided before it are logged (a speculative window waits until step 3's premise is decided)
    from maker.log.steplog import decisions

    assert [step for step, _ in decisions(log)] == [0, 1, 2]
