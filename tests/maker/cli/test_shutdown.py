"""A user's mistake or an interrupt is one line on stderr; Ray never writes to stdout and never
outlives an interrupted `maker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maker.cli.main import main


@pytest.mark.ray
def test_rays_own_messages_go_to_stderr(ray_address, capfd) -> None:
    from ray._private import worker as ray_worker

    capfd.readouterr()
    # what Ray's error listener prints for a task killed by ray.kill, exactly as it calls it
    ray_worker.print_to_stdstream({"lines": ["A worker died: node lost"], "pid": "raylet", "is_err": False},
                                  ignore_prefix=False)
    out, err = capfd.readouterr()
    assert out == "" and "node lost" in err
    # what it prints when maker's pool kills its own actors: noise in a one-line error, dropped
    ray_worker.print_to_stdstream(
        {"lines": ["Task ModelWorker.call failed. Error: The actor is dead because it was killed by `ray.kill`."],
         "pid": "raylet", "is_err": False},
        ignore_prefix=False,
    )
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.ray
def test_resume_on_a_damaged_log_offers_a_way_that_exists(ray_address, tmp_path, capsys) -> None:
    log = tmp_path / "d.parquet"
    base = ["run", "hanoi", "--disks", "6", "--model", "sim:0.99", "--k", "2", "--speculate", "0", "--segment-steps", "10",
            "--quiet", "--address", ray_address, "--log", str(log)]
    assert main([*base, "--max-steps", "30"]) == 0
    parts = sorted(log.iterdir())
    assert len(parts) >= 2
    parts[-1].write_bytes(parts[-1].read_bytes()[:100])
    capsys.readouterr()
    assert main([*base, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--salvage reads" not in err and f"move {parts[-1].name}" in err
    parts[-1].rename(tmp_path / parts[-1].name)  # what the message says to do
    assert main([*base, "--resume"]) == 0


def _ray_processes_of(session_pid: int) -> list[int]:
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.Error, TypeError):
            continue
        if ("ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd) and env.get("MAKER_TEST_SESSION") == str(session_pid):
            out.append(proc.info["pid"])
    return out


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_twice_exits_non_zero_and_leaves_no_ray_process(tmp_path: Path) -> None:
    """The second Ctrl-C lands while Ray is stopping: the exit is non-zero and Ray is gone."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, as a user's
    env["MAKER_TEST_SESSION"] = str(os.getpid())
    # as the `maker` program: main() without arguments reads sys.argv
    cmd = [sys.executable, "-c", "from maker.cli.main import main; raise SystemExit(main())", "run", "hanoi", "--disks",
           "20", "--model", "sim:0.99", "--k", "2", "--log", str(tmp_path / "c.parquet"), "--json", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not (tmp_path / "c.parquet").exists() or not any((tmp_path / "c.parquet").glob("part-*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err
    assert out == ""  # --json prints nothing when there is no result, and Ray nothing at all
    assert "Exception ignored" not in err
    deadline = time.monotonic() + 15
    while _ray_processes_of(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes_of(os.getpid()) == []


def test_ray_that_does_not_start_is_one_line_exit_1(tmp_path, monkeypatch, maker_cli) -> None:
    # on a loaded machine Ray's node can time out at start-up: Ray raises a bare Exception
    import ray

    def timed_out(**kwargs):
        raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", timed_out)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    r = maker_cli("run", "hanoi", "--disks", "2", "--model", "sim:0.9", "--k", "1", "--quiet",
                  "--log", str(tmp_path / "r"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("maker: error: cannot start a local Ray: Exception: The current node timed out")
