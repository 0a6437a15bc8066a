"""`maker.log.identity`: a resume may not change how samples are drawn and judged."""

from __future__ import annotations

import doctest
import hashlib
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from maker.cli.main import main
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.log import identity
from maker.log.identity import resume_conflicts, resume_refusal


def meta(voting: VotingConfig | None = None, policy: RedFlagPolicy | None = None, **top) -> dict:
    voting = voting or BASE
    policy = policy or RedFlagPolicy(max_output_tokens=voting.max_output_tokens)
    out = {"task": "hanoi", "task_options": {"disks": 5}, "models": ["sim:0.99"], "seed": 0, "simulated": True,
           "voting": asdict(voting), "red_flags": policy.to_metadata(), "started_at": "then", "maker_version": "0"}
    out.update(top)
    return out


BASE = VotingConfig(k=2, prompt_style="chat")  # a run logs the style it resolved (VotingConfig.style_for)


def _DETECTORS(enabled: bool) -> str:  # noqa: N802 -- what the logged policy lists, shortened as in the message
    text = str(RedFlagPolicy(enabled=enabled).to_metadata()["detectors"])
    return text if len(text) <= 60 else text[:57] + "..."


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (meta(), []),
        (meta(started_at="now", maker_version="1"), []),  # when and by which version: not the run's identity
        (meta(replace(BASE, max_samples_per_step=500)), []),  # give-up caps may change
        (meta(replace(BASE, max_discards_in_a_row=80, max_failed_calls=9)), []),
        (meta(replace(BASE, k=3)), ["--k: log 2, now 3"]),
        (meta(replace(BASE, temperature=0.7)), ["--temperature: log 0.1, now 0.7"]),
        (meta(replace(BASE, first_temperature=0.3)), ["--first-temperature: log 0.0, now 0.3"]),
        (meta(replace(BASE, prompt_variants=3)), ["--prompt-variants: log 1, now 3"]),
        (meta(replace(BASE, prompt_style="completion")), ["--prompt-style: log 'chat', now 'completion'"]),
        (meta(replace(BASE, max_output_tokens=40)), ["--max-output-tokens: log 750, now 40"]),  # named once
        (meta(policy=RedFlagPolicy(enabled=False)), ["red flags on/off (--no-red-flags): log True, now False",
                                                    f"red-flag detectors: log {_DETECTORS(True)}, now {_DETECTORS(False)}"]),
        (meta(policy=RedFlagPolicy(identical_min_chars=50)), ["--identical-min-chars: log 200, now 50"]),
        (meta(models=["sim:0.9"]), ["--model: log ['sim:0.99'], now ['sim:0.9']"]),
        (meta(task_options={"disks": 6}), ["task options: log {'disks': 5}, now {'disks': 6}"]),
        # the same openai/NAME at another --api-base: a sim-server's log may not gain real steps
        (meta(simulated=False), ["simulated model (--model, --api-base): log True, now False"]),
        (meta(replace(BASE, temperature=0.7, prompt_variants=3), seed=4),
         ["--seed: log 0, now 4", "--temperature: log 0.1, now 0.7", "--prompt-variants: log 1, now 3"]),
    ],
)
def test_resume_conflicts(now: dict, expected: list[str]) -> None:
    assert resume_conflicts(meta(), now) == expected


def test_an_older_log_is_compared_on_what_it_records() -> None:
    old = meta()
    del old["red_flags"]
    del old["voting"]["prompt_variants"]
    assert resume_conflicts(old, meta(replace(BASE, prompt_variants=3))) == []
    assert resume_conflicts(old, meta(replace(BASE, temperature=0.5))) == ["--temperature: log 0.1, now 0.5"]


def test_the_refusal_is_one_line_naming_each_setting() -> None:
    assert resume_refusal(meta(), meta()) is None
    line = resume_refusal(meta(), meta(replace(BASE, prompt_variants=3, temperature=0.7)))
    assert "\n" not in line and "--temperature" in line and "--prompt-variants" in line
    assert line.startswith("cannot resume:")


def test_examples_run() -> None:
    result = doctest.testmod(identity)
    assert result.attempted > 0 and result.failed == 0


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.ray
def test_the_issue_case_is_refused_and_the_log_untouched(tmp_path: Path, capsys) -> None:
    log = tmp_path / "rs.parquet"
    base = ["run", "hanoi", "--disks", "5", "--model", "sim:0.99", "--k", "2", "--log", str(log), "--quiet"]
    assert main([*base, "--max-steps", "10"]) in (0, 1)
    before = _digest(log)
    capsys.readouterr()
    code = main([*base, "--prompt-variants", "3", "--temperature", "0.7", "--max-output-tokens", "40", "--resume"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--prompt-variants" in lines[0] and "--temperature" in lines[0] and "--max-output-tokens" in lines[0]
    assert _digest(log) == before
    assert main([*base, "--max-samples-per-step", "200", "--resume", "--max-steps", "5"]) in (0, 1)  # a cap may change


@pytest.mark.ray
def test_a_simulated_log_is_not_resumed_on_a_real_endpoint(ray_address, tmp_path: Path, capsys) -> None:
    """The log of a run against `maker sim-server` says simulated; a resume of the same
    `openai/sim` at an address that is not a sim-server would add real steps under that label."""
    import socket

    from maker.cluster import clients
    from maker.cluster.simulated.sim_server import SimServer, SimServerConfig

    log = tmp_path / "api.parquet"
    with socket.socket() as free:  # a port nothing listens on: not a sim-server
        free.bind(("127.0.0.1", 0))
        elsewhere = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    with SimServer(SimServerConfig(p=1.0, latency=0.0)) as server:
        base = ["run", "hanoi", "--disks", "3", "--model", "openai/sim", "--k", "1", "--log", str(log), "--quiet",
                "--address", ray_address]
        assert main([*base, "--api-base", server.url, "--max-steps", "2"]) in (0, 1)
        before = _digest(log)
        clients._SIM_SERVER.clear()
        capsys.readouterr()
        code = main([*base, "--api-base", elsewhere, "--resume"])
        _, err = capsys.readouterr()
    clients._SIM_SERVER.clear()
    assert code == 2, err
    assert err.count("\n") == 1 and "simulated model (--model, --api-base): log True, now False" in err
    assert _digest(log) == before
