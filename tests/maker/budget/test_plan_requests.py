"""`maker plan` bills a shared prompt once per request on endpoints that draw with `n`.

The expected figures are re-derived here by hand (k = 3: a two-state chain solved in closed
form) and by a Monte Carlo of the round protocol, not by calling `maker.budget.rounds`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from maker.cluster.pricing import Price

from maker.budget.rounds import expected_requests, expected_rounds, shares_prompt
from maker.budget.tally import Tally, assess
from maker.cli.main import main
from maker.errors import UsageError

STEPS, TOKENS_IN, PRICE_IN, TOKENS_OUT, PRICE_OUT = 1000, 300, 1.0, 10, 2.0


def plan_json(capsys, *extra: str) -> dict:
    args = ["margin", "--p", "0.99", "--steps", str(STEPS), "--tokens-in", str(TOKENS_IN), "--price-in", str(PRICE_IN),
            "--tokens-out", str(TOKENS_OUT), "--price-out", str(PRICE_OUT), "--json", *extra]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def k3_requests(p: float) -> tuple[float, float]:
    """(samples, requests) per step at k = 3, no red flags, by hand.

    Round one draws 3: decided unless the lead is +-1.  From lead +1 the next round draws 2:
    both right decides (p^2), a split stays at +1 (2pq), both wrong goes to -1 (q^2); from -1
    symmetrically.  R(+1) = 1 + 2pq R(+1) + q^2 R(-1), R(-1) = 1 + 2pq R(-1) + p^2 R(+1)."""
    q = 1 - p
    a = 1 - 2 * p * q
    det = a * a - p * p * q * q
    r_plus, r_minus = (a + q * q) / det, (a + p * p) / det
    rounds = 1 + 3 * p * p * q * r_plus + 3 * p * q * q * r_minus
    r = q / p
    samples = 3 / (2 * p - 1) * (1 - r**3) / (1 + r**3)  # design notes: E[n] of the walk absorbed at +-3
    return samples, rounds + 1  # the first sample (temperature 0) is a request of its own


def test_openai_compatible_plan_bills_the_prompt_once_per_request(capsys) -> None:
    grouped = plan_json(capsys, "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "--speculate", "0")
    litellm = plan_json(capsys, "--model", "openai/gpt-4.1-mini", "--speculate", "0")
    g, s = grouped["plans"][0], litellm["plans"][0]
    assert g["k"] == s["k"] == 3
    samples, requests = k3_requests(0.99)
    assert s["prompt_tokens"] == pytest.approx(STEPS * samples * TOKENS_IN, rel=1e-9)
    assert g["prompt_tokens"] == pytest.approx(STEPS * requests * TOKENS_IN, rel=1e-9)
    saved = STEPS * (samples - requests) * TOKENS_IN
    assert s["prompt_tokens"] - g["prompt_tokens"] == pytest.approx(saved, rel=1e-9)
    assert s["expected_cost"] - g["expected_cost"] == pytest.approx(saved * PRICE_IN / 1e6, rel=1e-9)
    # the reply is billed per sample either way
    out_cost = STEPS * samples * TOKENS_OUT * PRICE_OUT / 1e6
    assert g["expected_cost"] == pytest.approx(STEPS * requests * TOKENS_IN * PRICE_IN / 1e6 + out_cost, rel=1e-9)
    assert g["shares_prompt"] is True and s["shares_prompt"] is False
    assert "per request" in grouped["prompt_billed"] and "per sample" in litellm["prompt_billed"]


def test_the_override_wins_and_no_model_or_a_speculative_run_bills_per_sample(capsys) -> None:
    off = plan_json(capsys, "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "--speculate", "0",
                    "--n-grouping", "off")
    speculative = plan_json(capsys, "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1")  # maker run's default
    none = plan_json(capsys)
    on = plan_json(capsys, "--n-grouping", "on")
    samples, requests = k3_requests(0.99)
    assert off["plans"][0]["prompt_tokens"] == pytest.approx(STEPS * samples * TOKENS_IN)
    assert speculative["plans"][0]["prompt_tokens"] == pytest.approx(STEPS * samples * TOKENS_IN)
    assert none["plans"][0]["prompt_tokens"] == pytest.approx(STEPS * samples * TOKENS_IN)
    assert on["plans"][0]["prompt_tokens"] == pytest.approx(STEPS * requests * TOKENS_IN)


def test_the_text_output_says_what_it_assumed(capsys) -> None:
    assert main(["margin", "--p", "0.99", "--steps", "100", "--model", "openai/x", "--api-base", "http://h/v1",
                 "--speculate", "0"]) == 0
    out = capsys.readouterr().out
    assert "prompt billed once per request" in out and "inferred from --model openai/x, --speculate 0" in out
    assert main(["margin", "--p", "0.99", "--steps", "100", "--model", "openai/x", "--api-base", "http://h/v1"]) == 0
    out = capsys.readouterr().out
    assert "prompt billed once per sample" in out and "--speculate 8 (the default)" in out


def simulate_rounds(p: float, k: int, valid_rate: float, trials: int, rng: np.random.Generator) -> float:
    """The round protocol itself: draw k - |lead| samples a round until |lead| reaches k
    (every trial at once: row t is trial t, and its first k - |lead| columns its round's draws)."""
    lead = np.zeros(trials, dtype=np.int64)
    rounds = np.zeros(trials, dtype=np.int64)
    open_ = np.ones(trials, dtype=bool)
    while open_.any():
        m = k - np.abs(lead)
        drawn = (np.arange(k) < m[:, None]) & open_[:, None]  # this round's samples, per trial
        valid = rng.random((trials, k)) < valid_rate
        right = rng.random((trials, k)) < p
        lead += np.sum(drawn & valid & right, axis=1) - np.sum(drawn & valid & ~right, axis=1)
        rounds += open_
        open_ &= np.abs(lead) < k
    return float(rounds.mean())


@pytest.mark.parametrize("p,k,valid_rate", [(0.8, 4, 1.0), (0.9, 3, 0.7), (0.7, 5, 0.9)])
def test_expected_rounds_match_a_monte_carlo_of_the_rounds(p, k, valid_rate) -> None:
    mc = simulate_rounds(p, k, valid_rate, 20_000, np.random.default_rng(11))
    assert expected_rounds(p, k, valid_rate) == pytest.approx(mc, rel=0.02)


def test_k3_rounds_match_the_hand_formula_and_k1_is_one_request() -> None:
    samples, requests = k3_requests(0.9)
    assert expected_requests(0.9, 3, grouped=True) == pytest.approx(requests, rel=1e-12)
    assert expected_requests(0.9, 3, grouped=False) == pytest.approx(samples, rel=1e-12)
    assert expected_requests(0.9, 1, grouped=True) == pytest.approx(1.0)  # one sample, one round


def test_inference_from_the_model_string() -> None:
    assert shares_prompt("openai/local", "http://127.0.0.1:8000/v1", speculate=0)
    assert not shares_prompt("openai/local", "http://127.0.0.1:8000/v1")  # maker run speculates by default
    assert not shares_prompt("openai/local", "http://127.0.0.1:8000/v1", speculate=4)
    assert not shares_prompt("openai/gpt-4.1-mini", None, speculate=0)
    assert not shares_prompt("anthropic/claude", "http://x/v1", speculate=0)
    assert not shares_prompt(None)
    assert shares_prompt("sim:0.9", None, "on") and not shares_prompt("openai/l", "http://x", "off")
    with pytest.raises(UsageError, match="--n-grouping"):
        shares_prompt("openai/x", None, "sometimes")


def test_estimate_prices_the_prompt_per_billed_request() -> None:
    """`maker estimate`'s plan: the measured prompt tokens per billed request, times the
    requests the run will make (grouped) or its samples (not)."""
    # 2,000 answered samples drawn in 800 requests of 300 prompt tokens each; 10 reply tokens a sample
    t = Tally(steps=500, samples=2000, answered=2000, valid=2000, correct=1995, tokens_in=800 * 300,
              tokens_out=2000 * 10, requests=800)
    price = Price(1.0, 2.0, "flags")
    grouped = assess("openai/x", t, steps=10_000, target=0.95, price=price, shares_prompt=True, simulated=False)
    single = assess("openai/x", t, steps=10_000, target=0.95, price=price, shares_prompt=False, simulated=False)
    assert grouped.k == single.k == 3
    samples, requests = k3_requests(grouped.p_low)
    assert grouped.expected_cost == pytest.approx(10_000 * (requests * 300 * 1e-6 + samples * 10 * 2e-6), rel=1e-9)
    assert single.expected_cost == pytest.approx(10_000 * samples * (300 * 1e-6 + 10 * 2e-6), rel=1e-9)
    assert grouped.shares_prompt and not single.shares_prompt
