"""A model served on every node (`cluster.nodes`): which servers a client on a given node uses.

The two-node runs themselves are in tests/maker/runtime/test_multinode_local.py."""

from __future__ import annotations

import pytest
from maker.cluster import ModelConfigError, ModelSpec

BASES = (
    ("node-a", "http://127.0.0.1:1001/v1", ("http://127.0.0.1:1002/v1",)),
    ("node-b", "http://127.0.0.1:2001/v1", ()),
)


@pytest.mark.parametrize(
    ("node", "api_base", "api_bases"),
    [("node-a", "http://127.0.0.1:1001/v1", ("http://127.0.0.1:1002/v1",)), ("node-b", "http://127.0.0.1:2001/v1", ())],
)
def test_a_client_on_a_node_uses_that_nodes_servers(node: str, api_base: str, api_bases: tuple[str, ...]) -> None:
    spec = ModelSpec("openai/local-x", api_base="http://127.0.0.1:1001/v1", node_bases=BASES)
    mine = spec.on_node(node)
    assert (mine.api_base, mine.api_bases, mine.node_bases) == (api_base, api_bases, ())
    assert mine.model == spec.model


def test_a_node_without_servers_is_one_line_naming_it() -> None:
    spec = ModelSpec("openai/local-x", api_base="http://127.0.0.1:1001/v1", node_bases=BASES)
    with pytest.raises(ModelConfigError, match="no local model server on Ray node node-c") as info:
        spec.on_node("node-c")
    assert "\n" not in str(info.value)


def test_a_spec_not_served_per_node_is_the_same_on_every_node() -> None:
    spec = ModelSpec("openai/gpt-4.1-mini", api_base="https://example.invalid/v1")
    assert spec.on_node("node-a") is spec
