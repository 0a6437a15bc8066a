"""`spend_outlook`: the lines a capped run shows before its first call, from Python as from
`maker run --max-cost` (which prints each after "maker: ")."""

from __future__ import annotations

import pytest
from maker.cluster import ModelSpec
from maker.cluster.pricing import Price
from maker.tasks import get_task

from maker import VotingConfig
from maker.budget.outlook import spend_outlook
from maker.errors import UsageError

TASK = get_task("hanoi", disks=5)
PRICE = {"openai/m": Price(0.4, 1.6, "given")}


def test_no_cap_no_lines() -> None:
    assert spend_outlook(TASK, [ModelSpec("openai/m")], VotingConfig(k=2), None, 31, prices=PRICE) == []


def test_the_cap_beside_the_expected_cost_and_a_warning_when_it_is_below() -> None:
    roomy = spend_outlook(TASK, [ModelSpec("openai/m")], VotingConfig(k=2), 100.0, 31, prices=PRICE)
    assert len(roomy) == 1 and roomy[0].startswith("--max-cost $100.00; expected cost $")
    tight = spend_outlook(TASK, [ModelSpec("openai/m")], VotingConfig(k=2), 1e-6, 31, prices=PRICE)
    assert len(tight) == 2 and tight[1].startswith("the cap $") and "below the expected cost" in tight[1]


def test_a_model_or_a_draft_without_a_price_is_refused() -> None:
    with pytest.raises(UsageError, match="cannot be enforced"):
        spend_outlook(TASK, [ModelSpec("py:somewhere:fn")], VotingConfig(k=2), 1.0, 31)
    with pytest.raises(UsageError, match="py:guess:fn"):
        spend_outlook(TASK, [ModelSpec("openai/m")], VotingConfig(k=2), 1.0, 31, prices=PRICE,
                      drafts=[ModelSpec("py:guess:fn")])
