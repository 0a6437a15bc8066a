"""Runs started for an agent are durable jobs (#24 §6): they outlive the MCP session and the
server (even its kill -9), any server on the same root finds, watches and cancels them, and
a user's own task file under the root can be run.

Real processes throughout: `maker mcp` over stdio with the SDK's client, background
`maker run` children, the session's Ray instance (joined through RAY_ADDRESS).  The only
fake is the simulator (`sim:P`) at the model boundary; its results are labelled simulated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")
from mcp import ClientSession  # noqa: E402

from maker.agents.runs import Runs, process_alive  # noqa: E402
from maker.errors import UsageError  # noqa: E402

from .test_mcp_server import _error, _payload, drive  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.subprocess]  # every run here is a `maker` child process
ROOT = Path(__file__).resolve().parents[3]
#: A run long enough to still be going when the test acts: 63 steps, 50 ms a sample (simulated).
SLOW = {"task": "hanoi", "options": {"disks": 6}, "models": ["sim:0.99,latency=0.05"], "k": 2}
#: One that is surely still going when it is cancelled: 1,023 steps, 0.2 s a sample (simulated).
LONG = {"task": "hanoi", "options": {"disks": 10}, "models": ["sim:0.99,latency=0.2"], "k": 2}


def wait_for(predicate, timeout: float = 120.0, every: float = 0.3) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


@pytest.fixture
def joined(monkeypatch: pytest.MonkeyPatch, ray_address: str) -> str:
    """Background runs (and MCP servers) join the session's Ray instead of starting their own."""
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    return ray_address


def test_a_run_outlives_the_session_that_started_it_and_a_new_server_finds_it(tmp_path: Path, joined: str) -> None:
    async def first(session: ClientSession) -> dict[str, Any]:
        return _payload(await session.call_tool("run", SLOW))

    started = drive(tmp_path, first)  # the session (and its server) ends here, mid-run

    async def second(session: ClientSession) -> dict[str, Any]:
        listed = _payload(await session.call_tool("runs", {}))
        final = _payload(await session.call_tool("status", {"run_id": started["run_id"], "wait_s": 180}))
        unknown = _error(await session.call_tool("status", {"run_id": "../../etc"}))
        return {"listed": listed, "final": final, "unknown": unknown}

    out = drive(tmp_path, second)
    assert [r["run_id"] for r in out["listed"]["runs"]] == [started["run_id"]]
    final = out["final"]
    assert final["state"] == "done", final
    assert final["steps"] == final["total_steps"] == 63 and final["errors"] == 0
    assert final["result"]["solved"] is True and final["result"]["simulated"] is True
    assert "no run '../../etc'" in out["unknown"] and started["run_id"] in out["unknown"]


def test_kill_9_of_the_server_leaves_a_run_that_a_new_server_finds_and_cancels(tmp_path: Path, joined: str) -> None:
    """The starting 'server' is a process holding `Runs`, killed with SIGKILL mid-run."""
    code = ("import json, sys, time; from pathlib import Path; from maker.agents.runs import Runs;"
            f"r = Runs(Path({str(tmp_path)!r})); print(r.start(**json.loads(sys.argv[1])), flush=True);"
            "time.sleep(600)")
    server = subprocess.Popen([sys.executable, "-c", code, json.dumps(LONG)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        run_id = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert run_id, "no run started"
    finally:
        server.kill()
        server.wait()
    runs = Runs(tmp_path)  # a new server on the same root
    assert runs.list() == [run_id]
    running = wait_for(lambda: (st := runs.status(run_id))["state"] == "running" and st["steps"] > 0 and st)
    pid = json.loads((tmp_path / "maker-runs" / run_id / "run.json").read_text())["pid"]
    assert process_alive(pid, None)
    runs.cancel(run_id)
    final = wait_for(lambda: (st := runs.status(run_id))["state"] != "running" and st, timeout=60)
    assert final["state"] == "cancelled", final
    assert final["steps"] < 1023 and final["exit_code"] == 130  # the child stopped as on Ctrl-C and said so
    assert not process_alive(pid, None)
    assert final["steps"] >= running["steps"] > 0  # every decided step is still in the log
    assert Runs(tmp_path).status(run_id)["state"] == "cancelled"  # the same from a third server


def test_a_run_killed_without_a_word_is_lost_not_running(tmp_path: Path, joined: str) -> None:
    runs = Runs(tmp_path)
    run_id = runs.start(**LONG)
    wait_for(lambda: runs.status(run_id)["steps"] > 0)
    pid = runs.get(run_id).pid
    os.killpg(pid, signal.SIGKILL)
    runs.get(run_id).process.wait()  # type: ignore[union-attr]
    other = Runs(tmp_path).status(run_id)  # a server that did not start it: nothing on disk says how it ended
    assert other["state"] == "lost" and "SIGKILL" in other["error"] and other["steps"] > 0
    ours = runs.status(run_id)  # the starting server saw the signal
    assert ours["state"] == "failed" and ours["exit_code"] == -signal.SIGKILL


def test_a_users_own_task_file_under_the_root_runs(tmp_path: Path, joined: str) -> None:
    shutil.copy(ROOT / "examples" / "ledger.py", tmp_path / "my_ledger.py")

    def inside(path: str) -> Path:
        resolved = (tmp_path / path).resolve()
        if not resolved.is_relative_to(tmp_path):
            raise UsageError(f"path {path!r} is outside the root")
        return resolved

    runs = Runs(tmp_path)
    run_id = runs.start("my_ledger.py:ledger", {"n": 12, "start": 40}, ["sim:0.95"], k=2, resolve_path=inside)
    bad = runs.start("my_ledger.py:ledger", {"nn": 3}, ["sim:0.95"], k=2, resolve_path=inside)  # both at once
    final = wait_for(lambda: (st := runs.status(run_id))["state"] != "running" and st)
    assert final["state"] == "done", final
    assert final["steps"] == final["total_steps"] == 12 and final["errors"] == 0
    assert final["result"]["simulated"] is True
    failed = wait_for(lambda: (st := runs.status(bad))["state"] != "running" and st)
    assert failed["state"] == "failed" and "nn" in failed["error"] and "\n" not in failed["error"]
    for task, message in [("../outside.py:x", "outside the root"), ("missing.py:x", "does not exist"),
                          ("os.path:join", "cannot be run here"), ("my_ledger.py:a;b", "not an attribute")]:
        with pytest.raises(UsageError, match=message):
            runs.start(task, {}, ["sim:0.9"], resolve_path=inside)
