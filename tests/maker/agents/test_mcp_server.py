"""`maker mcp` started as a subprocess and driven over stdio by the MCP SDK's own client."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

import maker  # noqa: E402

SERVER = "import sys; from maker.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def _error(result: Any) -> str:
    assert result.is_error
    return result.content[0].text


def drive(root, script) -> Any:
    """Start `maker mcp --root ROOT`, run `script(session)` against it, return what it returns."""
    params = StdioServerParameters(command=sys.executable, args=["-c", SERVER, "mcp", "--root", str(root)],
                                   env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, cwd=str(root))

    async def main() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await script(session)

    return anyio.run(main)


@pytest.mark.subprocess
def test_tools_plan_vote_verify_and_refusals(tmp_path) -> None:
    async def script(session: ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {}
        listed = await session.list_tools()
        out["tools"] = {t.name: t for t in listed.tools}
        out["plan"] = _payload(await session.call_tool("margin", {"p": 0.9978, "steps": 1048575, "target": 0.95}))
        out["plan_cost"] = _payload(await session.call_tool(
            "margin", {"p": 0.998, "steps": 1000, "target": 0.95, "tokens_in": 1000, "tokens_out": 0, "price_in": 1.0}))
        out["vote"] = _payload(await session.call_tool("vote", {
            "prompt": "What is 6 * 7?", "models": ["sim:0.8"], "k": 3, "key": "integer", "expected": "42",
            "seed": 4, "log": "votes/one"}))
        out["verify"] = _payload(await session.call_tool("verify", {"log": "votes/one"}))
        out["outside"] = _error(await session.call_tool("verify", {"log": "../elsewhere"}))
        out["absolute"] = _error(await session.call_tool("vote", {
            "prompt": "q", "models": ["sim:0.8"], "expected": "1", "key": "integer", "log": "/tmp/maker-mcp-escape"}))
        out["mistyped"] = _error(await session.call_tool("margin", {"p": "high", "steps": 10}))
        out["missing"] = _error(await session.call_tool("vote", {"prompt": "q"}))
        out["bad_key"] = _error(await session.call_tool("vote", {"prompt": "q", "models": ["sim:0.9"], "key": "os:system",
                                                                "expected": "1"}))
        out["no_truth"] = _error(await session.call_tool("vote", {"prompt": "q", "models": ["sim:0.9"]}))
        out["plan_shared"] = _payload(await session.call_tool("margin", {
            "p": 0.998, "steps": 1000, "tokens_in": 1000, "price_in": 1.0, "model": "openai/x", "api_base": "http://h/v1",
            "speculate": 0}))
        out["extra_arg"] = _error(await session.call_tool("margin", {"p": 0.99, "steps": 100, "stpes": 5}))
        out["extra_args"] = _error(await session.call_tool("tasks", {"verbose": True, "all": 1}))
        out["tasks"] = _payload(await session.call_tool("tasks", {}))
        out["still"] = _payload(await session.call_tool("margin", {"p": 0.99, "steps": 100, "target": 0.9}))
        return out

    out = drive(tmp_path, script)
    assert set(out["tools"]) == {"vote", "margin", "run", "status", "runs", "cancel", "verify", "tasks"}
    props = {name: set(t.input_schema["properties"]) for name, t in out["tools"].items()}
    assert {"prompt", "models", "k", "key"} <= props["vote"] and {"log"} <= props["verify"]
    assert {"task", "models", "options", "k"} <= props["run"] and {"run_id"} <= props["status"]
    assert "ctx" not in props["run"] | props["status"]
    assert all(len(t.description or "") > 100 for name, t in out["tools"].items() if name != "tasks")
    schema = out["tools"]["margin"].input_schema
    assert {"p", "steps", "target"} <= set(schema["properties"]) and set(schema["required"]) == {"p", "steps"}
    assert out["plan"]["k"] == 3 and out["plan"]["run_success"] >= 0.95
    assert out["plan_cost"]["expected_cost"] == pytest.approx(maker.margin(
        0.998, 1000, 0.95, cost=maker.SampleCost(tokens_in=1000, price_in=1.0)).expected_cost)
    shared = out["plan_shared"]  # the prompt once per request: cheaper by the requests saved
    assert shared["shares_prompt"] and not out["plan_cost"]["shares_prompt"]
    assert shared["expected_cost"] == pytest.approx(1000 * shared["requests_per_step"] * 1000 * 1.0 / 1e6)
    assert shared["requests_per_step"] < out["plan_cost"]["requests_per_step"] == out["plan_cost"]["expected_samples"]
    vote = out["vote"]
    assert vote["key"] == "42" and vote["simulated"] is True and vote["correct"] is True
    assert sum(vote["votes"].values()) <= vote["samples"] and vote["votes"]["42"] >= 3
    assert (tmp_path / "votes" / "one").is_dir()
    assert out["verify"]["valid"] and out["verify"]["solved"] and out["verify"]["simulated"]
    assert "outside the server's root" in out["outside"] and "outside the server's root" in out["absolute"]
    assert not os.path.exists("/tmp/maker-mcp-escape")
    assert "p" in out["mistyped"] and "models" in out["missing"]
    assert "\n" not in out["mistyped"] and "\n" not in out["missing"]  # one line, not pydantic's report
    assert out["mistyped"].startswith("bad arguments for margin: p:"), out["mistyped"]
    assert out["extra_arg"] == "unknown argument for margin: stpes"  # refused, not silently dropped
    assert out["extra_args"] == "unknown argument for tasks: all, verbose"
    assert "names code to import: refused" in out["bad_key"] and "expected=" in out["no_truth"]
    names = {t["name"] for t in out["tasks"]["tasks"]}
    assert {"hanoi", "chase"} <= names and "vote" not in names
    assert out["still"]["k"] >= 1  # the server kept serving after every error


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.subprocess
def test_run_then_status_until_done_with_progress(tmp_path, ray_address, monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_address)  # the run joins the session's Ray instead of starting its own
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async def script(session: ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["bad_task"] = _error(await session.call_tool("run", {"task": "rm -rf", "models": ["sim:0.99"]}))
        out["bad_option"] = _error(await session.call_tool("run", {"task": "hanoi", "models": ["sim:0.99"],
                                                                   "options": {"disks": "--help"}}))
        started = _payload(await session.call_tool("run", {"task": "hanoi", "options": {"disks": 4},
                                                           "models": ["sim:0.99"], "k": 2}))
        out["started"] = started
        out["final"] = _payload(await session.call_tool("status", {"run_id": started["run_id"], "wait_s": 120},
                                                        progress_callback=on_progress))
        out["verify"] = _payload(await session.call_tool("verify", {"log": out["final"]["log"]}))
        out["unknown"] = _error(await session.call_tool("status", {"run_id": "nope"}))
        return out

    out = drive(tmp_path, script)
    assert "cannot be run here" in out["bad_task"] and "must be an integer" in out["bad_option"]
    final = out["final"]
    assert final["state"] == "done", final
    assert final["steps"] == final["total_steps"] == 15 and final["errors"] == 0
    assert final["result"]["solved"] is True and final["result"]["simulated"] is True
    assert final["samples_per_step"] >= 2
    assert progress and progress[-1] == (15, 15)
    assert out["verify"]["valid"] and out["verify"]["solved"]
    assert "no run 'nope'" in out["unknown"]


@pytest.mark.subprocess
def test_no_tool_imports_code_a_client_names(tmp_path) -> None:
    # A file under the root that records being imported: `py:` models and `file.py:attr` task names
    # are code references, which `maker run` honours for a user -- never for an agent's arguments.
    (tmp_path / "evil.py").write_text("import pathlib\npathlib.Path('imported').write_text('x')\n"
                                      "def factory():\n    return lambda prompt, temperature, seed: '42'\n")
    log = tmp_path / "vote"
    maker.vote("6*7?", ["sim:0.9"], key="integer", expected="42", seed=1, log=log)
    import pyarrow.parquet as pq

    for part in sorted(log.glob("part-*.parquet")):  # the same log, naming a task in evil.py
        table = pq.read_table(part)
        meta = dict(table.schema.metadata)
        run = json.loads(meta[b"maker.run"])
        run["task"] = "evil.py:Task"
        meta[b"maker.run"] = json.dumps(run, sort_keys=True).encode()
        pq.write_table(table.replace_schema_metadata(meta), part)

    async def script(session: ClientSession) -> dict[str, Any]:
        return {
            "vote": _error(await session.call_tool("vote", {"prompt": "6*7?", "models": ["py:evil.py:factory"],
                                                            "key": "integer"})),
            "run": _error(await session.call_tool("run", {"task": "hanoi", "options": {"disks": 3},
                                                          "models": ["py:evil:factory"]})),
            "verify": _error(await session.call_tool("verify", {"log": "vote"})),
        }

    out = drive(tmp_path, script)
    assert "names code to import" in out["vote"] and "names code to import" in out["run"], out
    assert "code to import" in out["verify"], out
    assert not (tmp_path / "imported").exists()
    assert not (tmp_path / "maker-runs").exists()  # no run was started


@pytest.mark.subprocess
def test_http_serves_the_same_tools_on_loopback_only(tmp_path) -> None:
    import socket
    import subprocess
    import time

    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, "mcp", "--root", str(tmp_path), "--http", str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "maker mcp --http did not start"
                time.sleep(0.5)

        async def main() -> dict[str, Any]:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    listed = await session.list_tools()
                    return {"tools": {t.name for t in listed.tools},
                            "plan": _payload(await session.call_tool("margin", {"p": 0.9978, "steps": 1048575})),
                            "outside": _error(await session.call_tool("verify", {"log": "/etc"}))}

        out = anyio.run(main)
        assert out["tools"] == {"vote", "margin", "run", "status", "runs", "cancel", "verify", "tasks"}
        assert out["plan"]["k"] == 3 and "outside the server's root" in out["outside"]
        for address in _own_addresses() - {"127.0.0.1"}:  # this machine's other addresses: nothing listens there
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=1).close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "127.0.0.1:" + str(port) in server.stderr.read()


def _own_addresses() -> set[str]:
    """This machine's IPv4 addresses other than loopback, as far as they can be found offline."""
    import socket

    found = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP: sends nothing, picks the outgoing interface
            found.add(s.getsockname()[0])
        except OSError:
            pass
    return found


def test_http_port_in_use_is_one_line(maker_cli) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = maker_cli("mcp", "--http", str(port))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"127.0.0.1:{port} is in use" in done.stderr
