"""A run is labelled simulated whenever its model is one, whatever form the address takes.

The sim-server is the project's test double at the model boundary; nothing here is mocked.
"""

from __future__ import annotations

import doctest
from urllib.parse import urlsplit

import pytest
from maker.cluster import ModelSpec, clients
from maker.cluster.clients import loopback_root, served_by_sim_server
from maker.cluster.simulated.sim_server import SimServer, SimServerConfig


def test_examples_run() -> None:
    result = doctest.testmod(clients)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("address", "root"),
    [
        ("http://127.0.0.1:18452/v1", "http://127.0.0.1:18452"),
        ("http://127.0.0.1:18452", "http://127.0.0.1:18452"),
        ("http://127.0.0.1:18452/", "http://127.0.0.1:18452"),
        ("127.0.0.1:18452/v1/", "http://127.0.0.1:18452"),
        ("http://LocalHost:18452/v1", "http://localhost:18452"),
        ("http://[::1]:18452", "http://[::1]:18452"),
        ("http://127.0.1.1:8000", "http://127.0.1.1:8000"),
        ("https://api.openai.com/v1", None),
        ("http://10.0.0.5:8000/v1", None),
        ("http://127.0.0.1:notaport", None),
    ],
)
def test_loopback_root(address: str, root: str | None) -> None:
    assert loopback_root(address) == root


def test_every_form_of_a_sim_server_address_is_labelled_simulated() -> None:
    with SimServer(SimServerConfig(p=1.0)) as server:
        parts = urlsplit(server.url)
        port = parts.port
        forms = [
            server.url,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{port}/",
            f"http://127.0.0.1:{port}/v1/",
            f"http://localhost:{port}",
            f"http://localhost:{port}/v1",
            f"127.0.0.1:{port}",
        ]
        for form in forms:
            clients._SIM_SERVER.clear()
            assert served_by_sim_server(form), form
            assert ModelSpec("openai/sim", api_base=form).is_simulated, form
    clients._SIM_SERVER.clear()
    assert not ModelSpec("openai/sim", api_base="http://127.0.0.1:9").is_simulated  # nothing there: not labelled


@pytest.mark.parametrize(("model", "simulated"), [("sim:0.9", True), ("script:arith", True), ("openai/gpt-4.1-mini", False)])
def test_fakes_are_labelled_simulated(model: str, simulated: bool) -> None:
    assert ModelSpec(model).is_simulated is simulated
    assert ModelSpec(model).answers_from_ground_truth is model.startswith("sim:")  # a script answers free-form steps


def test_a_run_that_mixes_a_fake_with_a_real_model_is_labelled_simulated() -> None:
    """An escalation tier or a second model that is real does not make a simulator's
    decisions real: any fake among the models labels the results simulated."""
    from maker.runtime.driver import simulated
    from maker.voted_call import _simulated

    real = ModelSpec("openai/gpt-4.1-mini")
    assert simulated([ModelSpec("sim:0.9"), real]) and simulated([real, ModelSpec("script:arith")])
    assert not simulated([real]) and simulated([ModelSpec("sim:0.9")])
    assert _simulated(["sim:0.9", "openai/gpt-4.1-mini"]) is True
    assert _simulated(["openai/gpt-4.1-mini"]) is False
    assert _simulated(["openai/gpt-4.1-mini", object()]) is None  # a client that does not say: unknown
