"""The CLI's contract for bad input: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maker.cli.main import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "sudoku", "--model", "sim:0.9"], "unknown task"),
        (["run", "hanoi", "--disks", "0", "--model", "sim:0.9"], "disks"),
        (["run", "hanoi", "--disks", "-3", "--model", "sim:0.9"], "disks"),
        (["run", "hanoi", "--disks", "41", "--model", "sim:0.9"], "disks"),
        (["run", "hanoi", "--model", "sim:0.9"], "--disks"),
        (["run", "hanoi", "--disks", "5", "--model", "sim:0.9", "--k", "0"], "--k"),
        (["run", "hanoi", "--disks", "5", "--model", "sim:0.9", "--k", "x"], "--k"),
        (["run", "hanoi", "--disks", "5", "--model", "sim:0.9", "--k", "auto", "--estimate-samples", "0"], "--estimate-samples"),
        (["run", "hanoi", "--disks", "5", "--model", "sim:0.9", "--k", "auto", "--p", "0.4"], "p"),
        (["run", "hanoi", "--disks", "5", "--model", "nonsense"], "unknown model"),
        (["run", "hanoi", "--disks", "5", "--model", "sim:2"], "accuracy"),
        (["run", "hanoi", "--disks", "8", "--model", "openai/gpt-4.1-mini"], "OPENAI_API_KEY"),
        (["replay", "/nonexistent/log.parquet", "--verify"], "no such"),
        (["run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--resume"], "--resume needs --log"),
        (["run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--log", ""], "--log is empty"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, monkeypatch, tmp_path, args, needle) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("maker: error:")
    assert needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_existing_log_is_not_overwritten(capsys, tmp_path) -> None:
    log = tmp_path / "h.parquet"
    log.mkdir()
    (log / "part-000000.parquet").write_bytes(b"precious")
    code, _, err = run_cli(capsys, "run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--log", str(log))
    assert code == 2 and "already exists" in err
    assert (log / "part-000000.parquet").read_bytes() == b"precious"


def test_foreign_log_for_resume_and_replay(capsys, tmp_path) -> None:
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    code, _, err = run_cli(capsys, "replay", str(foreign), "--verify")
    assert code == 2 and "not a maker step log" in err
    code, _, err = run_cli(capsys, "run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--log", str(foreign), "--resume")
    assert code == 2 and "not a maker step log" in err


def test_help_teaches(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for needle in ("--disks", "--k", "--resume", "--address", "sim:P", "examples:"):
        assert needle in out


@pytest.mark.ray
def test_run_json_and_replay_verify(capsys, ray_address, tmp_path) -> None:
    log = tmp_path / "h6.parquet"
    code, out, _ = run_cli(capsys, "run", "hanoi", "--disks", "6", "--model", "sim:0.998", "--k", "auto", "--p", "0.99",
                           "--target", "0.95", "--log", str(log), "--json", "--quiet")
    assert code == 0
    result = json.loads(out)
    for key in ("task", "steps", "solved", "errors", "samples", "red_flags", "k", "wall_s", "cost_usd"):
        assert key in result
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 63 and result["k"] == 2
    code, out, _ = run_cli(capsys, "replay", str(log), "--verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["valid"] and report["steps"] == 63 and report["first_bad_step"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "hanoi", "--disks", "3", "--n", "3"], "hanoi does not take --n"),
        (["run", "chase", "--hops", "5", "--disks", "3"], "chase does not take --disks"),
        (["run", "hanoi", "--disks", "3", "--opt", "disks=4"], "give disks once"),
    ],
)
def test_another_tasks_flag_is_refused_not_ignored(args, needle, tmp_path, capsys) -> None:
    log = tmp_path / "never.parquet"
    code = main([*args, "--model", "sim:0.95", "--k", "2", "--log", str(log)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not log.exists()


USER_TASK = '''
from maker import chain_task


def build(n: float = 5.0, start: int = 0):
    return chain_task(name="count", start=start, steps=int(n), prompt=lambda s, i: f"{s} + 1?",
                      next_state=lambda s, reply: int(reply), truth=lambda s, i: str(s + 1))
'''


def test_a_user_tasks_option_named_like_a_built_in_one_is_the_user_tasks(tmp_path, capsys) -> None:
    """`--n` is also sort's flag (an int, "sort: how many numbers"): for --task it takes the
    user's type and help, under the user task's options."""
    from maker.cli.main import build_parser

    path = tmp_path / "mytask.py"
    path.write_text(USER_TASK)
    ref = f"{path}:build"
    args = build_parser(ref).parse_args(["run", "--task", ref, "--n", "2.5", "--model", "sim:0.9"])
    assert args.task_n == 2.5
    with pytest.raises(SystemExit):
        main(["run", "--task", ref, "--help"])
    help_text = capsys.readouterr().out
    options = help_text.split(f"{ref} options:", 1)[1]
    assert "--n TASK_N" in options and "float, default 5.0 (from the signature)" in options
    assert "sort: how many numbers" not in help_text
