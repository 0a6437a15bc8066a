"""The user-facing examples in examples/: each runs through real Ray workers on the
simulator and on a FunctionClient (a deterministic 'model' written as a plain function)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from maker.tasks import TaskSpec, build_task

import maker
from maker.runtime.driver import ClusterConfig
from maker.runtime.driver import run as run_plan

pytestmark = pytest.mark.ray
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, **options):
    return build_task(TaskSpec(f"{EXAMPLES / name}.py:{name}", options))


def adder(prompt, temperature, seed):
    """Reads the last 'balance B, amount A' line of a ledger prompt and adds (a perfect model)."""
    b, a = re.findall(r"balance (-?\d+), amount ([+-]\d+), new balance\Z", prompt)[-1]
    return f" {int(b) + int(a)}"


def copier(prompt, temperature, seed):
    """Copies the last record's age; one call in ten at temperature > 0 is off by one."""
    age = int(re.findall(r"age: (\d+)", prompt)[-1])
    return f" {age + 1}" if temperature > 0 and seed % 10 == 0 else f" {age}"


def test_ledger_on_the_simulator_and_replay_verify(ray_address, tmp_path) -> None:
    task = example("ledger", n=120)
    log = tmp_path / "ledger.parquet"
    result = maker.run(task, ["sim:0.9"], maker.VotingConfig(k=2), log=log, cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.errors == 0 and result.simulated and result.steps == 120
    assert maker.verify_log(log).valid


def test_ledger_on_a_function_model(ray_address) -> None:
    task = example("ledger", n=40, start=-5)
    voting = maker.VotingConfig(k=2, prompt_style="completion")  # the task's own choice; the CLI takes it by itself
    result = maker.run(task, [maker.FunctionClient(adder, name="adder")], voting,
                       cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.errors == 0 and not result.simulated
    assert result.samples == 80  # two agreeing votes per step, nothing red-flagged


def test_records_plan_on_the_simulator_and_a_function_model(ray_address, tmp_path) -> None:
    task = example("records", n=40)
    log = tmp_path / "records.parquet"
    result = run_plan(task, ["sim:0.95"], maker.VotingConfig(k=3), log=log, cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.extra["answer"] == result.extra["expected_answer"]
    assert maker.verify_log(log).valid
    result = run_plan(task, [maker.FunctionClient(copier)], maker.VotingConfig(k=3, temperature=0.5, prompt_style="completion"),
                      cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.errors == 0 and not result.simulated
    assert result.extra["answer"] == task.expected_answer() and result.samples > 3 * 40  # some votes were wrong
