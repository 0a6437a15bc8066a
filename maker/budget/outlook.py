"""What a capped run expects to spend, said before its first call.

`spend_outlook` gives the lines `maker run --max-cost` (and `maker solve`) print on stderr
before anything is sent: the cap beside the expected cost of the steps left (the model of
`maker margin`: `maker.budget.spend.expected_spend`), and a warning when the cap is below
it.  It refuses (UsageError) a cap that cannot be enforced: a model, escalation tier or
draft model without a known price.  A resumed run counts what its step log already spent
(`logged_spend`) and plans only the steps still to decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from maker.budget.spend import check_cap, expected_spend, refuse_unpriced, resolve_prices, usd
from maker.cluster import ModelSpec
from maker.cluster.pricing import Price
from maker.config import VotingConfig


def logged_spend(log: str | Path) -> tuple[float, int]:
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


def spend_outlook(
    task: Any,
    specs: Sequence[ModelSpec],
    voting: VotingConfig,
    cap: float | None,
    steps: int,
    *,
    prices: Mapping[str, Price] | None = None,
    drafts: Sequence[ModelSpec] = (),
    resume_log: str | Path | None = None,
    whole_run: bool = True,
    p: float | None = None,
    estimate: Any = None,
) -> list[str]:
    """The lines to show before the first call of a run capped at `cap` USD ([] without a cap).

    `steps`: the steps the run will decide (with `whole_run` and `resume_log`, the steps the
    log already decided are taken off); `prices`: the user's own ({model: Price}, as
    --price-in/--price-out), before each spec's (`ModelSpec.unit_price`); `p`: the per-step
    accuracy assumed, or `estimate` (an `EstimateReport`) whose first model's measured p,
    tokens and valid rate are used instead.  Raises UsageError for a bad cap or a model,
    tier or draft with no known price."""
    from maker.cluster.http.transport import prompt_chars
    from maker.engine.variants import step_prompts

    cap = check_cap(cap)
    if cap is None:
        return []
    spent = 0.0
    if resume_log is not None:  # what the log already holds: steps decided, money spent
        spent, decided = logged_spend(resume_log)
        steps = max(0, steps - decided) if whole_run else steps
    tiers = [ModelSpec(m) for m in voting.escalation_models if m not in {s.model for s in specs}]
    priced = resolve_prices([*specs, *tiers], prices)
    refuse_unpriced(cap, {**priced, **resolve_prices(drafts, prices)})  # a draft's guesses are paid for too
    measured = estimate.models[0] if estimate is not None and estimate.models and estimate.models[0].p_low else None
    prompt = step_prompts(task, task.first_step(), voting.style_for(task), 1)[0]
    expectation = expected_spend(
        [priced[s.model] for s in specs], steps=steps, k=voting.k,
        prompt_tokens=measured.tokens_in_mean if measured else prompt_chars(prompt) / 4,
        max_output_tokens=voting.max_output_tokens,
        p=measured.p_low if measured else p, tokens_out=measured.tokens_out_mean if measured else None,
        valid_rate=measured.valid_rate or 1.0 if measured else 1.0,
    )
    already = f" ({usd(spent)} already spent, from the log)" if spent else ""
    lines = [f"--max-cost {usd(cap)}{already}; {expectation.text()}"]
    warning = expectation.against(cap, spent)
    return lines + [warning] if warning else lines
