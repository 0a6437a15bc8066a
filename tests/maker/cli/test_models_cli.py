"""`maker models`: what it lists must match what the rest of maker accepts."""

from __future__ import annotations

import json

import pytest

from maker.cli.catalog.models import HOSTED, sim_options
from maker.cli.main import main


def test_json_lists_local_sim_and_hosted(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-never-printed")
    assert main(["models", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert "sk-secret" not in out
    assert report["local"]["model"] == "local" and "server_available" in report["local"]
    openai = next(r for r in report["hosted"] if r["provider"] == "OpenAI")
    assert openai["env"] == {"OPENAI_API_KEY": True}
    assert set(report["sim"]["options"]) == {names for names, _ in sim_options()}


def test_sim_options_come_from_the_simulator_and_parse() -> None:
    """Every option the listing shows is one `parse_sim_model` accepts."""
    from maker.cluster.simulated.simulator import parse_sim_model

    names = [n for names, _ in sim_options() for n in names.split(", ")]
    assert "redflag=R" in names and "seed=N" in names
    for name in names:
        key, _, _ = name.partition("=")
        value = "1" if key == "seed" else "0.5"
        parse_sim_model(f"sim:0.9,{key}={value}")


def test_hosted_env_names_match_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables we name are the ones litellm itself asks for."""
    from maker.cluster.http.litellm_client import import_litellm

    litellm = import_litellm()
    for _, _, env in HOSTED:
        for name in env:
            monkeypatch.delenv(name, raising=False)
    for provider, example, env in HOSTED:
        missing = set(litellm.validate_environment(model=example)["missing_keys"])
        assert set(env) <= missing, (provider, env, missing)


def test_text_output_names_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for needle in ("local ", "local:PATH.gguf", "sim:P", "openai/gpt-4.1-mini", "--api-base", "127.0.0.1"):
        assert needle in out
