"""A task picks chat or completion prompts; --prompt-style overrides it; the log records it."""

from __future__ import annotations

import argparse

import pytest
from maker.tasks import get_task

from maker.audit.verify import verify_log
from maker.cli.common import prompt_style_of
from maker.cli.main import main
from maker.log.steplog import open_log


@pytest.mark.parametrize(
    "task,given,expected",
    [
        (get_task("chase", hops=3), None, "completion"),
        (get_task("chase", hops=3), "chat", "chat"),
        (get_task("hanoi", disks=3), None, "chat"),
        (get_task("hanoi", disks=3), "completion", "completion"),
        (object(), None, "chat"),
    ],
)
def test_prompt_style_of(task: object, given: str | None, expected: str) -> None:
    assert prompt_style_of(argparse.Namespace(prompt_style=given), task) == expected


@pytest.mark.ray
@pytest.mark.parametrize("extra,expected", [([], "completion"), (["--prompt-style", "chat"], "chat")])
def test_run_uses_and_logs_the_style(capsys, tmp_path, ray_address: str, extra: list[str], expected: str) -> None:
    """The chase task through the real runner on the simulator (simulated results)."""
    log = tmp_path / "c.parquet"
    code = main(["run", "chase", "--hops", "40", "--model", "sim:0.8", "--k", "3", "--prompt-variants", "4",
                 "--address", ray_address, "--log", str(log), "--quiet", *extra])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    assert open_log(log).run["voting"]["prompt_style"] == expected
    report = verify_log(log)
    assert report.valid and report.solved and report.steps == 40 and report.simulated
