"""FunctionClient(fn) and --model py:...: a user's own model at the model boundary."""

from __future__ import annotations

import asyncio

import pytest
from maker.cluster import FunctionClient, ModelConfigError, ModelSpec, SampleRequest, check_spec, make_client


def _complete(client, *prompts):
    return asyncio.run(client.complete([SampleRequest(p, 0.1, 50, seed=i) for i, p in enumerate(prompts)]))


def test_sync_function_gets_prompt_temperature_and_seed() -> None:
    seen = []

    def model(prompt, temperature, seed):
        seen.append((prompt, temperature, seed))
        return prompt.upper()

    samples = _complete(FunctionClient(model), "a", "b")
    assert [s.text for s in samples] == ["A", "B"]
    assert seen == [("a", 0.1, 0), ("b", 0.1, 1)]
    assert samples[0].model == "fn:test_sync_function_gets_prompt_temperature_and_seed.<locals>.model"


def test_async_function_and_errors_are_samples_not_exceptions() -> None:
    async def model(prompt, temperature, seed):
        if prompt == "boom":
            raise RuntimeError("backend down")
        return "ok"

    good, bad = _complete(FunctionClient(model, name="mine"), "x", "boom")
    assert good.text == "ok" and good.error is None and good.model == "mine"
    assert bad.error == "RuntimeError: backend down" and bad.finish_reason == "error"


def test_a_non_string_reply_is_an_error_sample() -> None:
    (sample,) = _complete(FunctionClient(lambda p, t, s: 42), "x")
    assert sample.error and "int" in sample.error


def test_model_spec_holds_a_client_and_is_not_simulated_unless_told() -> None:
    client = FunctionClient(lambda p, t, s: "1", name="draft")
    spec = ModelSpec(client)
    assert spec.model == "draft" and spec.client is client and not spec.is_simulated
    check_spec(spec)
    assert make_client(spec, task=None) is client
    assert ModelSpec(FunctionClient(lambda p, t, s: "1", simulated=True)).is_simulated


MODELS = '''
from maker.cluster import FunctionClient

def client():
    return FunctionClient(lambda prompt, temperature, seed: "7", name="seven")

def plain(prompt, temperature, seed):
    return "8"

def broken():
    raise RuntimeError("no API key for my backend")
'''


def test_py_models_from_a_file(tmp_path) -> None:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    for attr, text in (("client", "7"), ("plain", "8")):
        spec = ModelSpec(f"py:{path}:{attr}")
        check_spec(spec)
        (sample,) = _complete(make_client(spec, task=None), "q")
        assert sample.text == text
    with pytest.raises(ModelConfigError, match="the factory raised RuntimeError: no API key"):
        make_client(ModelSpec(f"py:{path}:broken"), task=None)
    with pytest.raises(ModelConfigError, match="no callable 'nothing'"):
        check_spec(ModelSpec(f"py:{path}:nothing"))
    with pytest.raises(ModelConfigError, match="no module named 'no_such_pkg_q'"):
        check_spec(ModelSpec("py:no_such_pkg_q.models:client"))
