"""`maker plan` and `maker.budget.margins`: closed-form plans, checked against the paper's margins,
against the definitions they rest on, and against a Monte Carlo of the vote. No model, no Ray."""

from __future__ import annotations

import json
import math

import maker.voting as voting
import numpy as np
import pytest

from maker.budget.margins import SampleCost, cost_by_k, cost_by_steps, plan
from maker.cli.main import main
from maker.errors import UsageError

PAPER_STEPS = 2**20 - 1  # 1,048,575 moves: 20-disk Hanoi


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_paper_margins_through_the_cli(capsys) -> None:
    """The paper's measured error rates at t = 0.95 over a million steps give k = 3, 29, 12, 15, 6."""
    errors = ["0.0022", "0.3571", "0.1839", "0.2342", "0.0569"]
    args = ["margin", "--steps", str(PAPER_STEPS), "--target", "0.95", "--json"]
    for e in errors:
        args += ["--error", e]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    report = json.loads(out)
    assert [p["k"] for p in report["plans"]] == [3, 29, 12, 15, 6]
    for p, e in zip(report["plans"], errors):
        assert p["error"] == pytest.approx(float(e))
        assert p["run_success"] >= 0.95


@pytest.mark.parametrize("p", [0.51, 0.6429, 0.8, 0.9978, 0.999999])
@pytest.mark.parametrize("steps", [1, 100, PAPER_STEPS])
def test_k_is_the_smallest_margin_that_reaches_the_target(p, steps) -> None:
    pl = plan(p, steps, 0.9)

    # Re-derived from the definition: all steps right, each with 1 / (1 + r**k).
    def success(k: int) -> float:
        return (1.0 / (1.0 + ((1 - p) / p) ** k)) ** steps

    assert success(pl.k) >= 0.9 * (1 - 1e-9)
    assert pl.k == 1 or success(pl.k - 1) < 0.9 * (1 + 1e-9)
    assert pl.run_success == pytest.approx(success(pl.k), rel=1e-6)
    assert pl.p_step == pytest.approx(1.0 / (1.0 + ((1 - p) / p) ** pl.k), rel=1e-12)


def test_expected_votes_match_a_monte_carlo_of_the_vote() -> None:
    pl = plan(0.8, 1000, 0.95)
    rate, votes = voting.simulate_votes(0.8, pl.k, trials=40_000, rng=np.random.default_rng(7))
    assert votes == pytest.approx(pl.expected_votes, rel=0.02)
    assert rate == pytest.approx(pl.p_step, abs=0.003)


def test_cost_is_tokens_times_prices_times_samples() -> None:
    cost = SampleCost(tokens_in=1000, tokens_out=100, price_in=0.4, price_out=1.6)
    pl = plan(0.99, 10_000, 0.95, valid_rate=0.8, cost=cost)
    c = 1000 * 0.4 / 1e6 + 100 * 1.6 / 1e6
    assert pl.cost_per_sample == pytest.approx(c)
    assert pl.expected_samples == pytest.approx(pl.expected_votes / 0.8)
    assert pl.expected_cost == pytest.approx(10_000 * pl.expected_votes / 0.8 * c)


def test_p_at_most_half_has_no_margin_and_says_why() -> None:
    pl = plan(0.5, 10, 0.9)
    assert pl.k is None and pl.expected_cost is None and "1/2" in pl.reason


def test_curves_grow_with_k_and_like_s_ln_s() -> None:
    rows = cost_by_k(0.9, 1000, range(1, 8), cost=SampleCost(per_sample=1.0))
    costs = [r[3] for r in rows]
    assert costs == sorted(costs) and rows[0][1] < rows[-1][1]
    lengths = [2**e for e in range(4, 21)]
    curve = cost_by_steps(0.9, 0.95, lengths)
    per_step = [samples / s for s, _, samples, _ in curve]
    assert per_step == sorted(per_step)  # k_min, hence samples per step, never falls as s grows
    ratios = [samples / (s * math.log(s)) for s, _, samples, _ in curve]
    assert max(ratios[4:]) / min(ratios[4:]) < 3  # Θ(s ln s): bounded ratio over four decades


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--p", "0", "--steps", "10"], "--p"),
        (["--p", "1", "--steps", "10"], "--p"),
        (["--p", "1.5", "--steps", "10"], "--p"),
        (["--p", "-0.2", "--steps", "10"], "--p"),
        (["--p", "nan", "--steps", "10"], "--p"),
        (["--error", "0", "--steps", "10"], "--error"),
        (["--error", "1", "--steps", "10"], "--error"),
        (["--p", "0.9", "--steps", "10", "--target", "0"], "--target"),
        (["--p", "0.9", "--steps", "10", "--target", "1"], "--target"),
        (["--p", "0.9", "--steps", "0"], "--steps"),
        (["--p", "0.9", "--steps", "-4"], "--steps"),
        (["--p", "0.9"], "--steps"),
        (["--steps", "10"], "--p P or --error E"),
        (["--p", "0.9", "--steps", "10", "--valid-rate", "0"], "--valid-rate"),
        (["--p", "0.9", "--steps", "10", "--price-in", "-1"], "--price-in"),
        (["--p", "0.9", "--steps", "10", "--plot", "x.pdf"], "PNG"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, monkeypatch, args, needle) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "margin", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("maker: error:") and needle in err
    assert out == "" and not list(tmp_path.iterdir())


def test_library_bad_input_raises_usage_error() -> None:
    with pytest.raises(UsageError, match="--target"):
        plan(0.9, 10, 1.0)


def test_p_below_half_exits_1_with_the_reason(capsys) -> None:
    code, out, _ = run_cli(capsys, "margin", "--p", "0.45", "--p", "0.9", "--steps", "100")
    assert code == 1
    assert "1/2" in out and "0.9" in out


def test_plot_writes_a_png(capsys, tmp_path) -> None:
    png = tmp_path / "plan.png"
    code, out, _ = run_cli(
        capsys,
        "margin",
        "--error",
        "0.0022",
        "--error",
        "0.0569",
        "--steps",
        str(PAPER_STEPS),
        "--tokens-in",
        "300",
        "--price-in",
        "0.4",
        "--tokens-out",
        "40",
        "--price-out",
        "1.6",
        "--plot",
        str(png),
    )
    assert code == 0 and str(png) in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_help_teaches(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["margin", "--help"])
    out = capsys.readouterr().out
    for needle in ("--error", "--steps", "--target", "--plot", "examples:", "1048575"):
        assert needle in out


def test_a_plan_without_prices_says_its_cost_is_unknown(capsys) -> None:
    """No tokens or prices given: the plan's cost is unknown, not "$0.00" as if computed."""
    code, out, _ = run_cli(capsys, "margin", "--p", "0.99", "--steps", "1023")
    assert code == 0 and "cost unknown (give --tokens-in/--price-in" in out
    assert "$0.00" not in out and "unknown" in out.splitlines()[-1]
    code, out, _ = run_cli(capsys, "margin", "--p", "0.99", "--steps", "1023", "--tokens-in", "300", "--price-in", "0.4")
    assert code == 0 and "unknown" not in out and "$0.000120 per sample" in out


def test_the_old_name_plan_still_works_says_so_and_is_hidden(capsys) -> None:
    """`maker plan` (choosing k) became `maker margin`: "plan" is a DAG of steps (#27 §4).
    The old name gives the same answer, with one line on stderr, and is not listed."""
    args = ["--p", "0.99", "--steps", "1000", "--json"]
    code, new, err_new = run_cli(capsys, "margin", *args)
    old_code, old, err_old = run_cli(capsys, "plan", *args)
    assert code == old_code == 0 and json.loads(new) == json.loads(old)
    assert err_new == "" and err_old.count("\n") == 1 and "'maker plan' is now 'maker margin'" in err_old
    from maker.cli.main import build_parser

    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    listed = [a.dest for a in sub._choices_actions]  # what `maker --help` lists
    assert "margin" in listed and "plan" not in listed and "plan" in sub.choices
