"""`maker.budget.tally`: from counts to a verdict. Pure table tests; expected values are derived
here from the definitions (Clopper-Pearson via scipy, the k_min inequality), not copied."""

from __future__ import annotations

import json

import maker.voting as voting
import pytest
from maker.cluster.pricing import Price
from scipy import stats

from maker.budget.estimate import recommend
from maker.budget.tally import Tally, assess

FREE = Price(0.0, 0.0, "free")


def tally(**kw) -> Tally:
    t = Tally(**kw)
    t.answered = kw.get("answered", t.samples)
    return t


def test_ok_model_plans_on_the_low_end_of_the_interval() -> None:
    t = tally(
        steps=300,
        samples=640,
        valid=600,
        correct=590,
        steps_with_two=300,
        first_two_wrong=0,
        tokens_in=640 * 200,
        tokens_out=640 * 20,
        red_flags={"malformed": 40},
    )
    e = assess("m", t, steps=10_000, target=0.95, price=Price(0.4, 1.6, "flags"))
    low = stats.beta.ppf(0.025, 590, 11)
    assert e.verdict == "ok" and e.meets_target
    assert e.p == pytest.approx(590 / 600) and e.p_low == pytest.approx(low)
    assert e.k == voting.k_min(low, 10_000, 0.95)
    assert voting.run_success(low, e.k, 10_000) >= 0.95 > voting.run_success(low, e.k - 1, 10_000)
    assert e.valid_rate == pytest.approx(600 / 640)
    assert e.red_flags == {"malformed": 40}
    c = 200 * 0.4 / 1e6 + 20 * 1.6 / 1e6
    assert e.cost_per_sample == pytest.approx(c)
    assert e.expected_samples_per_step == pytest.approx(voting.expected_votes(low, e.k) / (600 / 640))
    assert e.expected_cost == pytest.approx(10_000 * e.expected_samples_per_step * c)
    json.dumps(e.to_dict(), allow_nan=False)  # JSON-clean


def test_every_call_failed() -> None:
    t = Tally(steps=10, samples=10, answered=0, red_flags={"transport": 10}, first_error="boom")
    e = assess("m", t, steps=100, target=0.9, price=FREE)
    assert e.verdict == "failed" and not e.meets_target and "boom" in e.reason and e.k is None


def test_every_reply_red_flagged() -> None:
    t = tally(steps=10, samples=30, valid=0, red_flags={"malformed": 30})
    e = assess("m", t, steps=100, target=0.9, price=FREE)
    assert e.verdict == "no_valid" and "malformed 30" in e.reason


@pytest.mark.parametrize("correct,valid,needle", [(40, 100, "<= 1/2"), (7, 10, "measure more steps")])
def test_p_at_or_near_half_cannot_be_planned(correct, valid, needle) -> None:
    t = tally(steps=valid // 2, samples=valid, valid=valid, correct=correct)
    e = assess("m", t, steps=100, target=0.9, price=FREE)
    assert e.verdict == "p_low" and e.k is None and needle in e.reason


def test_collisions_beyond_half_the_error_rate_mean_some_steps_are_lost() -> None:
    # q = 5%, yet 10% of steps had both first votes wrong: impossible unless some
    # steps are answered wrongly more often than rightly.
    t = tally(steps=200, samples=400, valid=400, correct=380, steps_with_two=200, first_two_wrong=20)
    e = assess("m", t, steps=1000, target=0.9, price=FREE)
    assert e.verdict == "correlated" and not e.meets_target and "converges to it" in e.reason
    assert e.k is not None  # the i.i.d. plan is still shown, for reference


def test_collisions_far_above_independence() -> None:
    t = tally(steps=1000, samples=2000, valid=2000, correct=1980, steps_with_two=1000, first_two_wrong=5)
    e = assess("m", t, steps=1000, target=0.9, price=FREE)
    assert e.collision_ratio == pytest.approx(0.005 / 0.01**2)
    assert e.verdict == "correlated" and "independence" in e.reason


def test_independent_collisions_pass() -> None:
    t = tally(steps=1000, samples=2000, valid=2000, correct=1800, steps_with_two=1000, first_two_wrong=11)
    e = assess("m", t, steps=1000, target=0.9, price=FREE)
    assert e.verdict == "ok" and e.collision_expected == pytest.approx(0.01)


def test_measured_cost_is_used_when_no_price_is_known() -> None:
    t = tally(steps=5, samples=10, valid=10, correct=10, cost_usd=0.02)
    e = assess("m", t, steps=10, target=0.9, price=Price(0, 0, "unpriced"))
    assert e.cost_per_sample == pytest.approx(0.002) and "measured" in e.price_source


def test_merge_adds_counts() -> None:
    a = Tally(steps=1, samples=3, answered=3, valid=2, correct=2, red_flags={"x": 1}, steps_with_two=1)
    b = Tally(steps=2, samples=4, answered=3, valid=3, correct=1, red_flags={"x": 1, "y": 2}, first_error="e")
    a.merge(b)
    assert (a.steps, a.samples, a.answered, a.valid, a.correct) == (3, 7, 6, 5, 3)
    assert a.red_flags == {"x": 2, "y": 2} and a.first_error == "e"


def test_recommend_picks_the_cheapest_fit_model_or_says_why_none() -> None:
    good = tally(
        steps=300, samples=600, valid=600, correct=599, tokens_in=600 * 100, tokens_out=600 * 10, steps_with_two=300
    )
    dear = assess("dear", good, steps=1000, target=0.9, price=Price(10, 10, "x"))
    cheap = assess("cheap", good, steps=1000, target=0.9, price=Price(1, 1, "x"))
    bad = assess("bad", tally(steps=10, samples=20, valid=20, correct=8), steps=1000, target=0.9, price=FREE)
    name, why = recommend([dear, bad, cheap])
    assert name == "cheap" and "cheapest" in why
    name, why = recommend([bad])
    assert name is None and "no model can" in why and "bad:" in why
