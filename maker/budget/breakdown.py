"""Where the money went: a run's bill by model and by kind of sample.

Why its own module: the run summary, `--json`, `maker report` and the MCP status show the
same figures, counted by one accumulator from step-log sample columns (a running run's
batches, or a finished log read part by part).  Kinds, each sample in exactly one:

* ``votes``        -- valid samples counted on a ballot
* ``red_flagged``  -- samples discarded by a red flag (transport failures included)
* ``wasted``       -- drawn on a speculative premise that lost (never votes)
* ``escalated``    -- drawn from an escalation tier's models (`VotingConfig.escalate_to`)
* ``uncounted``    -- valid, but drawn in a round that had already decided the step
* ``draft``        -- the draft model's proposals (`--draft`): paid for, never votes
* ``abandoned``    -- billed (estimated) for calls maker gave up on: timeouts, cancels

plus the share of prompt tokens the provider read from its cache (`cached_share`).

    >>> b = CostBreakdown()
    >>> b.add({"model": ["m", "m"], "cost_usd": [0.002, 0.001], "red_flag": [None, "malformed"],
    ...        "counted": [True, False], "wasted": [False, False], "abandoned_usd": [0.0, 0.0005],
    ...        "tokens_in": [100, 100], "cached_tokens": [80, 0]})
    >>> b.by_kind["votes"], b.by_kind["red_flagged"], b.by_kind["abandoned"], b.cached_share
    (0.002, 0.001, 0.0005, 0.4)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BREAKDOWN_COLUMNS", "KINDS", "CostBreakdown"]

#: The step-log sample columns `CostBreakdown.add` reads.
BREAKDOWN_COLUMNS = ("model", "cost_usd", "red_flag", "counted", "wasted", "abandoned_usd", "tokens_in", "cached_tokens")
KINDS = ("votes", "red_flagged", "wasted", "escalated", "uncounted", "draft", "abandoned")


@dataclass
class CostBreakdown:
    """Running sums in USD; `escalation_models` names the tier models (their samples are ``escalated``)."""

    escalation_models: frozenset[str] = frozenset()
    by_model: dict[str, float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    tokens_in: int = 0
    cached_tokens: int = 0

    @property
    def abandoned_usd(self) -> float:
        return self.by_kind["abandoned"]

    @property
    def total_usd(self) -> float:
        """Everything billed: counted costs plus the estimate for abandoned calls."""
        return sum(self.by_kind.values())

    @property
    def cached_share(self) -> float | None:
        """Of the prompt tokens the providers reported, the share read from their caches (None: none reported)."""
        return round(self.cached_tokens / self.tokens_in, 4) if self.tokens_in else None

    def add(self, samples: Mapping[str, Sequence[Any]], kind: str | None = None) -> None:
        """Add step-log sample columns (`model`, `cost_usd`, `red_flag`, `counted`, `wasted`,
        `abandoned_usd`, `tokens_in`, `cached_tokens`; a missing or null cell counts as 0).
        `kind` ("draft" for the draft's rows) puts every row's cost under that kind."""
        n = len(samples.get("model", ()))
        col = _column(samples, n)
        tiers = self.escalation_models
        kinds = self.by_kind
        for model, cost, flag, counted, wasted, abandoned, tokens, cached in zip(
            col("model"), col("cost_usd"), col("red_flag"), col("counted"), col("wasted"), col("abandoned_usd"),
            col("tokens_in"), col("cached_tokens"),
        ):
            cost, abandoned = cost or 0.0, abandoned or 0.0
            name = model or "?"
            self.by_model[name] = self.by_model.get(name, 0.0) + cost + abandoned
            kinds[kind or ("wasted" if wasted else "escalated" if name in tiers else "red_flagged" if flag is not None
                           else "votes" if counted else "uncounted")] += cost
            kinds["abandoned"] += abandoned
            self.tokens_in += tokens or 0
            self.cached_tokens += cached or 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_model": {m: round(v, 6) for m, v in sorted(self.by_model.items())},
            "by_kind": {k: round(v, 6) for k, v in self.by_kind.items()},
            "abandoned_usd": round(self.abandoned_usd, 6),
            "cached_share": self.cached_share,
        }

    def lines(self) -> Iterable[str]:
        """The summary's lines: by model, by kind (kinds with a cost), the cached share."""
        models = ", ".join(f"{m} ${v:,.4f}" for m, v in sorted(self.by_model.items(), key=lambda kv: -kv[1]))
        kinds = ", ".join(f"{k.replace('_', ' ')} ${v:,.4f}" for k, v in self.by_kind.items() if v)
        yield f"  cost by model: {models or 'none'}"
        share = self.cached_share
        cached = f"; cached prompt tokens {share:.1%}" if share is not None else ""
        yield f"  cost by kind: {kinds or 'none'}{cached}"


def _column(samples: Mapping[str, Sequence[Any]], n: int) -> Any:
    def get(name: str) -> Sequence[Any]:
        values = samples.get(name)
        return values if values is not None and len(values) == n else [None] * n

    return get
