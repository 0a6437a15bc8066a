"""The report's "Where the money went" section: the bill by model and by kind of sample, the
share of prompt tokens read from the provider's cache, and where a --max-cost stopped a leg."""

from __future__ import annotations

from typing import Any


def money_lines(s: Any, images: set[str]) -> list[str]:
    """The "Where the money went" section: the bill by model and by kind, the cached share, budget stops."""
    bill = s.bill
    lines = ["", "## Where the money went", ""]
    for line in s.budget_stops:
        lines += [line, ""]
    if not bill.total_usd:
        lines.append("Nothing was billed in this log (a simulated or free model, or one with no known price).")
        return lines
    lines += ["| model | billed (USD) |", "|---|---|"]
    lines += [f"| {m} | {v:,.6f} |" for m, v in sorted(bill.by_model.items(), key=lambda kv: -kv[1])]
    lines += ["", "| kind | billed (USD) | share |", "|---|---|---|"]
    names = {"votes": "counted votes", "red_flagged": "red-flagged samples", "wasted": "wasted speculative samples",
             "escalated": "escalations (stronger tiers)", "uncounted": "valid, drawn after the decision",
             "draft": "the draft model's proposals (never votes)",
             "abandoned": "billed (estimated) for abandoned calls (timeouts, cancels; retried ones included)"}
    lines += [f"| {names[k]} | {v:,.6f} | {v / bill.total_usd:.1%} |" for k, v in bill.by_kind.items()]
    share = bill.cached_share
    lines += ["", f"Prompt tokens read from the provider's cache: {share:.1%} (billed at its cache-read rate)."
              if share is not None else "No prompt tokens were reported."]
    name = "cost_by_kind.png"
    lines += ["", f"![{name}]({name})" if name in images else f"({name} not drawn)"]
    return lines
