"""Reliability: kills of the driver and of workers, unwritable logs, planted secrets.

The model is the simulator (the test double at the model boundary) or, for the secret
test, a loopback HTTP server that plays a provider rejecting a key.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from maker.tasks import get_task

from maker import ClusterConfig, VotingConfig, run, verify_log
from maker.errors import StepLogError
from maker.log.steplog import decisions, open_log, read_table

pytestmark = pytest.mark.ray


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "maker.cli.main", *args]


#: kill -9s of `maker run` in test_repeated_kills_then_resume_equals_an_uninterrupted_run
KILLS = 3


@pytest.mark.subprocess
def test_repeated_kills_then_resume_equals_an_uninterrupted_run(ray_address, tmp_path) -> None:
    """kill -9 of the CLI at random points (one leaves a half-written temp part, as a kill
    in the middle of a write does), a --resume after each: the log ends as an
    uninterrupted run's."""
    model, disks = "sim:0.98,redflag=0.02,seed=4", 11
    reference = tmp_path / "ref.parquet"
    run(get_task("hanoi", disks=disks), [model], VotingConfig(k=3), log=reference, cluster=ClusterConfig(segment_steps=60))
    log = tmp_path / "killed.parquet"
    args = ["run", "hanoi", "--disks", str(disks), "--model", model, "--k", "3", "--quiet",
            "--address", ray_address, "--segment-steps", "60", "--log", str(log)]
    rng = random.Random(7)
    kills = 0
    for attempt in range(KILLS):
        extra = ["--resume"] if log.exists() else []
        before = len(list(log.glob("part-*.parquet"))) if log.exists() else 0
        proc = subprocess.Popen(cli(*args, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wanted = before + rng.randint(1, 3)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if len(list(log.glob("part-*.parquet"))) >= wanted:
                break
            time.sleep(0.01)
        if proc.poll() is not None:
            break  # finished before we could kill it
        time.sleep(rng.random() * 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if attempt == 1:  # a kill in the middle of a write leaves a partial temp part behind
            (log / f".part-{before + 99:06d}.tmp").write_bytes(b"PAR1 half a part")
    assert kills >= KILLS - 1
    assert len(decisions(log)) < len(decisions(reference))  # the resume below has work left
    done = subprocess.run(cli(*args, "--resume", "--json"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert decisions(log) == decisions(reference)  # none missing, none duplicated, same decisions
    assert not list(log.glob(".part-*.tmp"))
    assert verify_log(log).solved


@pytest.mark.ray
def test_a_run_killed_before_its_first_part_resumes_from_the_start(ray_address, tmp_path) -> None:
    """What a kill -9 between creating the log folder and renaming the first part leaves:
    a folder with at most a temp part.  --resume starts over; a folder holding anything
    else is not taken for a log."""
    task = get_task("hanoi", disks=5)
    log = tmp_path / "early.parquet"
    log.mkdir()
    (log / ".part-000000.tmp").write_bytes(b"PAR1 half a part")
    result = run(task, ["sim:0.99,seed=2"], VotingConfig(k=2), log=log, resume=True)
    assert result.solved and result.resumed_from_step == 0 and verify_log(log).solved
    assert not list(log.glob(".part-*.tmp"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StepLogError, match="empty step log"):
        run(task, ["sim:0.99,seed=2"], VotingConfig(k=2), log=foreign, resume=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_a_killed_worker_is_replaced_and_the_run_finishes(ray_address, tmp_path, model_worker_pids) -> None:
    worker_pids = model_worker_pids
    before = set(worker_pids())
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = run(get_task("hanoi", disks=10), ["sim:0.99,latency=0.001"], VotingConfig(k=2),
                                    log=tmp_path / "w.parquet", cluster=ClusterConfig(segment_steps=50))
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.time() + 60
    victims: list[int] = []
    while time.time() < deadline and not victims:
        victims = [p for p in worker_pids() if p not in before]
        time.sleep(0.2)
    assert victims, "no worker appeared"
    while not list((tmp_path / "w.parquet").glob("part-*.parquet")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victims[0], signal.SIGKILL)
    thread.join(timeout=240)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.solved and result.errors == 0
    assert verify_log(tmp_path / "w.parquet").solved


@pytest.fixture
def small_disk(tmp_path):
    """A real 192 KiB filesystem (tmpfs), so writes fail with ENOSPC as on a full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.subprocess
def test_disk_full_stops_cleanly_with_the_log_intact(ray_address, small_disk) -> None:
    log = small_disk / "full.parquet"
    done = subprocess.run(
        cli("run", "hanoi", "--disks", "14", "--model", "sim:0.99", "--k", "2", "--quiet", "--address", ray_address,
            "--segment-steps", "300", "--log", str(log)),
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and "Traceback" not in done.stderr, done.stderr
    info = open_log(log)  # every part on disk is whole
    steps = [s for s, _ in decisions(log)]
    assert steps == list(range(len(steps))) and steps, (steps[:5], len(steps), done.stderr)
    assert not list(log.glob(".part-*.tmp")), (sorted(p.name for p in log.iterdir()), done.stderr)
    assert info.parts


def test_unwritable_log_path_fails_before_any_work(tmp_path, capsys) -> None:
    from maker.cli.main import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--log", str(blocker / "x.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err


@pytest.mark.subprocess
def test_a_planted_key_never_reaches_logs_errors_or_json(ray_address, tmp_path) -> None:
    planted = "sk-planted-0123456789abcdef"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}",
                                         "type": "invalid_request_error"}}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = tmp_path / "secret.parquet"
    env = dict(os.environ, OPENAI_API_KEY=planted)
    try:
        done = subprocess.run(
            cli("run", "hanoi", "--disks", "3", "--model", "openai/fake", "--api-base",
                f"http://127.0.0.1:{server.server_address[1]}/v1", "--k", "1", "--max-samples-per-step", "3",
                "--quiet", "--json", "--address", ray_address, "--log", str(log)),
            capture_output=True, text=True, timeout=300, env=env,
        )
    finally:
        server.shutdown()
    assert done.returncode != 0
    assert "Incorrect API key" in "".join(read_table(open_log(log), ["error"])["error"].drop_null().to_pylist())
    assert planted not in done.stdout + done.stderr
    for part in log.glob("*.parquet"):
        assert planted.encode() not in part.read_bytes()
        assert b"0123456789abcdef" not in part.read_bytes()


@pytest.mark.ray
@pytest.mark.subprocess
def test_the_local_ray_maker_starts_demands_its_token(ray_address) -> None:
    """Ray's ports listen on every interface, so the instance maker starts must refuse a
    client without the token; one with it (a child process, as `--address` users) joins."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert os.environ.get("RAY_AUTH_MODE") == "token" and is_token_auth_enabled()
    join = f"import ray; ray.init(address={ray_address!r}, logging_level='ERROR'); print(ray.is_initialized())"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    # the two clients at once (each pays a Python and Ray start; neither depends on the other)
    clients = {name: subprocess.Popen([sys.executable, "-c", join], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=e) for name, e in (("without", env), ("with_token", None))}
    (out, err), (out_token, err_token) = (clients[n].communicate(timeout=120) for n in ("without", "with_token"))
    assert clients["without"].returncode != 0 and "True" not in out
    assert "token" in err, err[-2000:]  # refused for the missing token (Ray says so after ~20 s of retries)
    assert clients["with_token"].returncode == 0 and out_token.strip().endswith("True"), err_token[-2000:]
