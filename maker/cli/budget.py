"""The spend cap on the command line (`--max-cost`, `maker run` and `maker solve`): the
cap beside the expected cost before the first call, and where the money went after."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from maker.cli.common import user_prices
from maker.config import VotingConfig
from maker.runtime.driver import RunResult


def add_budget_argument(g: Any) -> None:
    g.add_argument("--max-cost", type=float, metavar="USD",
                   help="spend cap in US dollars, in flight included: no round is sent whose worst case would cross it; "
                        "the run then stops (exit 1) with its log intact, and --resume with a new --max-cost continues, "
                        "counting what the log already spent. Every model needs a known price (--price-in/--price-out)")


def budget_preamble(task: Any, specs: list[Any], voting: VotingConfig, args: argparse.Namespace, steps: int) -> None:
    """Before the first call: the cap next to the expected cost (`maker plan`'s model), and
    what a cap below it means; UsageError (exit 2) when a model's price is unknown."""
    from maker.budget.spend import check_cap, expected_spend, refuse_unpriced, resolve_prices, usd
    from maker.cluster import ModelSpec
    from maker.cluster.transport import prompt_chars
    from maker.engine.variants import step_prompts

    cap = check_cap(args.max_cost)
    if cap is None:
        return
    spent = 0.0
    if args.resume and args.log:  # what the log already holds: steps decided, money spent
        spent, decided = _logged(args.log)
        steps = max(0, steps - decided) if args.max_steps is None else steps
    tiers = [ModelSpec(m) for m in voting.escalation_models if m not in {s.model for s in specs}]
    prices = resolve_prices([*specs, *tiers], user_prices(args, [*(s.model for s in specs), *(t.model for t in tiers)]))
    refuse_unpriced(cap, prices)
    estimate = getattr(args, "estimate", None)
    measured = estimate.models[0] if estimate is not None and estimate.models and estimate.models[0].p_low else None
    prompt = step_prompts(task, task.first_step(), voting.prompt_style, 1)[0]
    expectation = expected_spend(
        [prices[s.model] for s in specs], steps=steps, k=voting.k,
        prompt_tokens=measured.tokens_in_mean if measured else prompt_chars(prompt) / 4,
        max_output_tokens=voting.max_output_tokens,
        p=measured.p_low if measured else args.p, tokens_out=measured.tokens_out_mean if measured else None,
        valid_rate=measured.valid_rate or 1.0 if measured else 1.0,
    )
    already = f" ({usd(spent)} already spent, from the log)" if spent else ""
    print(f"maker: --max-cost {usd(cap)}{already}; {expectation.text()}", file=sys.stderr)
    warning = expectation.against(cap, spent)
    if warning:
        print(f"maker: {warning}", file=sys.stderr)


def _logged(log: str) -> tuple[float, int]:
    """(USD billed, steps decided) of a step log being resumed; (0, 0) when it cannot be read
    (the run itself then says why)."""
    from maker.budget.breakdown import BREAKDOWN_COLUMNS, CostBreakdown
    from maker.errors import MakerError
    from maker.log.steplog import iter_tables, last_decision, open_log

    try:
        info = open_log(log)
        bill = CostBreakdown()
        for table in iter_tables(info, list(BREAKDOWN_COLUMNS), kind="sample"):
            bill.add(table.to_pydict())
        last = last_decision(info)
    except (MakerError, OSError):
        return 0.0, 0
    return bill.total_usd, 0 if last is None else last[0] + 1


def estimate_spend(report: Any) -> float:
    """What `--k auto`'s estimate of p spent (it counts against --max-cost)."""
    if report is None:
        return 0.0
    return sum(m.cost_per_sample * m.samples for m in report.models if m.price_known)


def print_cost_lines(result: RunResult) -> None:
    """Where the money went (a priced run): by model and kind, each price's source, the budget."""
    breakdown = result.extra.get("cost_breakdown") or {}
    if result.cost_usd or result.abandoned_usd:
        models = ", ".join(f"{m} ${v:,.4f}" for m, v in sorted(breakdown.get("by_model", {}).items(), key=lambda kv: -kv[1]))
        kinds = ", ".join(f"{k.replace('_', ' ')} ${v:,.4f}" for k, v in breakdown.get("by_kind", {}).items() if v)
        share = breakdown.get("cached_share")
        cached = f"; cached prompt tokens {share:.1%}" if share is not None else ""
        print(f"  cost by model: {models}")
        print(f"  cost by kind: {kinds}{cached}")
    for model, price in result.prices.items():
        if not price.get("known", True) or result.cost_usd:
            rates = (f"${price['input_per_m']:g} in / ${price['output_per_m']:g} out per M" if price.get("known", True)
                     else "price unknown")
            print(f"  price {model}: {rates} ({price['source']})")
    budget = result.budget
    if budget:
        from maker.budget.spend import usd

        print("  " + (budget.get("line") or f"budget: {usd(budget['spent_usd'])} of {usd(budget['cap_usd'])} spent"))
