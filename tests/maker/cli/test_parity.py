"""CLI/Python parity (#27 §1): every command with --json prints the returned library object's
dict for the same inputs -- the CLI is parse, one library call, print.

Simulated models (sim:P) and small sizes; figures that differ between any two runs (wall
time, the log and output paths the two calls were given) are left out of the comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from maker.tasks.registry import task_from_options

import maker
from maker.cli.main import main

#: keys whose values differ between two runs of the same inputs (the paths each call was given; and every
#: figure in seconds, NAME_s)
VOLATILE = {"wall_s", "log", "out", "elapsed_s"}


def stable(value: Any) -> Any:
    """`value` without the VOLATILE keys (at any depth), through JSON (tuples become lists)."""
    value = json.loads(json.dumps(value))

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in VOLATILE and not k.endswith("_s")}  # seconds: timings
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(value)


def cli_json(capsys, *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out)


def test_margin_is_maker_margins(capsys) -> None:
    code, printed = cli_json(capsys, "margin", "--p", "0.99", "--error", "0.1", "--p", "0.4", "--steps", "1000",
                             "--tokens-in", "300", "--price-in", "0.4", "--escalate-fraction", "0.1",
                             "--escalate-price-in", "2")
    table = maker.margins([0.99, 0.4, 1 - 0.1], 1000, 0.95, cost=maker.SampleCost(tokens_in=300, price_in=0.4),
                          escalate_fraction=0.1, escalate_cost=maker.SampleCost(tokens_in=300, price_in=2.0))
    assert code == 1 and printed == stable(table.to_dict())  # every --p, then every --error  # exit 1: p = 0.4 has no margin, as all_reach says
    assert not table.all_reach


@pytest.mark.ray
def test_run_and_the_log_commands_are_the_library(capsys, tmp_path) -> None:
    """run, replay --verify, replay --k, tune: each --json is the library object's dict."""
    cli_log, py_log = tmp_path / "cli.parquet", tmp_path / "py.parquet"
    code, printed = cli_json(capsys, "run", "hanoi", "--disks", "4", "--model", "sim:0.95", "--k", "2", "--seed", "3",
                             "--log", str(cli_log), "--quiet")
    result = maker.run(task_from_options("hanoi", {"disks": 4}), ["sim:0.95"], maker.VotingConfig(k=2), seed=3,
                       log=py_log)
    assert code == 0 and printed["steps"] == 15 and printed["simulated"] is True
    assert stable(printed) == stable(result.to_dict())

    code, printed = cli_json(capsys, "replay", str(cli_log), "--verify")
    assert code == 0 and stable(printed) == stable(maker.verify_log(cli_log).to_dict())

    from maker.audit.redecide import redecide_log

    code, printed = cli_json(capsys, "replay", str(cli_log), "--k", "1")
    assert stable(printed) == stable(redecide_log(cli_log, k=1).to_dict())

    code, printed = cli_json(capsys, "tune", str(cli_log), "--target", "0.9")
    assert stable(printed) == stable(maker.tune_log(cli_log, 0.9).to_dict())


@pytest.mark.ray
def test_run_with_k_auto_is_choose_k_then_run(capsys, tmp_path) -> None:
    """--k auto --p P: the k maker.choose_k gives, and the same run (whose guard plans with that p)."""
    code, printed = cli_json(capsys, "run", "hanoi", "--disks", "3", "--model", "sim:0.99", "--k", "auto", "--p", "0.99",
                             "--log", str(tmp_path / "cli.parquet"), "--quiet")
    choice = maker.choose_k("auto", 7, p=0.99)
    result = maker.run(task_from_options("hanoi", {"disks": 3}), ["sim:0.99"], maker.VotingConfig(k=choice.k),
                       log=tmp_path / "py.parquet", guard=maker.GuardConfig(p_assumed=0.99))
    assert code == 0 and printed["k"] == choice.k and stable(printed) == stable(result.to_dict())


@pytest.mark.ray
def test_estimate_is_maker_estimate(capsys) -> None:
    code, printed = cli_json(capsys, "estimate", "hanoi", "--disks", "6", "--model", "sim:0.97", "--samples", "20")
    report = maker.estimate(task_from_options("hanoi", {"disks": 6}), ["sim:0.97"], samples=20,
                            voting=maker.VotingConfig(k=1))
    assert code == 0 and stable(printed) == stable(report.to_dict())


@pytest.mark.ray
def test_map_is_maker_map(capsys, tmp_path) -> None:
    rows = pa.table({"question": [f"{a} + {a}" for a in range(12)], "expected": [str(2 * a) for a in range(12)]})
    pq.write_table(rows, tmp_path / "rows.parquet")
    prompt = "Q: {question}\nA:"
    code, printed = cli_json(capsys, "map", str(tmp_path / "rows.parquet"), "--prompt", prompt, "--key", "integer",
                             "--truth", "expected", "--model", "sim:0.95", "--k", "2", "--out", str(tmp_path / "o.parquet"),
                             "--log", str(tmp_path / "cli.parquet"), "--quiet")
    table = maker.map(str(tmp_path / "rows.parquet"), ["sim:0.95"], maker.VotingConfig(k=2), prompt=prompt,
                      key="integer", truth="expected", log=tmp_path / "py.parquet")
    summary = json.loads(table.schema.metadata[b"maker.map"])
    assert code == 0 and stable(printed) == stable(summary)
    assert pq.read_table(tmp_path / "o.parquet").column("answer").to_pylist() == table.column("answer").to_pylist()


def test_python_recipes_exist_for_each_command() -> None:
    """The library entry points the commands call are public (README's Python recipes)."""
    for name in ("run", "map", "margins", "margin", "choose_k", "estimate", "tune_log", "verify_log", "solve"):
        assert callable(getattr(maker, name)), name
    assert Path(maker.__file__).parent.joinpath("cli").is_dir()
