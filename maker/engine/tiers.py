"""Re-decide a logged step, tier by tier: the one re-decision under every audit.

Why one: a finished (or returned) step is re-decided from its logged vote keys by the
driver's check of a worker (`maker.engine.step.recount`), by `replay --verify`, by
`replay --k/--rule` (`maker.audit.redecide`), by the red-flag what-ifs
(`maker.audit.whatif`) and by `tune`'s check of its advice.  A step that escalated
(`VotingConfig.on_undecided = "escalate"`) was voted as several ballots -- one per tier,
each fresh, on the samples from that tier's first sample index on -- and a step that was
taken by plurality has no margin.  Pooling every tier's votes into one ballot decides
another step than the run did; so every re-decision goes through `redecide` here.

The walk: the tiers' ballots in order, each on its own sample range, under the rule and
k asked for; the first ballot that decides is the step's decision (`how = "margin"`).  When
none decides and the run took the step by plurality, the last ballot's leader is taken
(`how = "plurality"`), as the run did.  Otherwise the step is undecidable with the samples
the log holds.

Shapes: `keys` are a step's vote keys by sample index (None for a discarded sample, or
for an index the log does not hold); tier boundaries are sample indices, from the log's
escalation events (`Tiers.from_events`).

    >>> tiers = Tiers({7: [3]})                         # step 7 escalated at sample 3
    >>> tiers.redecide(7, ["a", "b", "a", "c", "c"], 2)   # tier 0 split; tier 1 decides 'c'
    Redecision(winner='c', consumed=5, tier=1, how='margin')
    >>> decide(["a", "b", "a", "c", "c"], 2)[0] is None  # pooled into one ballot: undecided
    True
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from maker.voting import Ballot, decide, first_to_k

__all__ = ["RULES", "Redecision", "Rule", "Tiers", "tier_of"]

Rule = Callable[[Iterable[Hashable | None], int], tuple[Hashable | None, int]]

#: The decision rules a log can be re-decided under, by name.
RULES: dict[str, Rule] = {"ahead-by-k": decide, "first-to-k": first_to_k}


class Redecision(NamedTuple):
    """A re-decided step: its winner (None: undecidable with the samples held), the samples
    read up to the decision (1-based position over the whole step, all tiers), the tier
    that decided and how ("margin", "plurality", or None)."""

    winner: Hashable | None
    consumed: int
    tier: int
    how: str | None


def tier_of(starts: Sequence[int] | None, sample: int) -> int:
    """The tier (0: the run's models) that sample index `sample` was drawn on."""
    return bisect_right(starts, sample) if starts else 0


@dataclass
class Tiers:
    """Each step's escalation boundaries (first sample index of every later tier, ascending)
    and its plurality decisions {step: answer text}, from the log's event rows."""

    starts: dict[int, list[int]] = field(default_factory=dict)
    plural: dict[int, str | None] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[tuple[int, Any]] | None) -> Tiers:
        """From (step, detail) pairs (`maker.runtime.guard.log_events`; a detail as a dict
        or its JSON text)."""
        out = cls()
        for index, detail in events or ():
            d = json.loads(detail) if isinstance(detail, str) else detail
            if d.get("event") == "escalation":
                out.starts.setdefault(int(index), []).append(int(d["from_sample"]))
            elif d.get("event") == "plurality":
                out.plural[int(index)] = d.get("answer")
        for bounds in out.starts.values():
            bounds.sort()
        return out

    @classmethod
    def from_columns(cls, events: dict[str, list[Any]] | None) -> Tiers:
        """From event columns (step, detail JSON), as a worker returns them."""
        events = events or {}
        return cls.from_events(zip(events.get("step", ()), events.get("detail", ())))

    def last(self, index: int) -> int:
        """The tier that decided step `index` in the run (0 when it never escalated)."""
        return len(self.starts.get(index, ()))

    def redecide(self, index: int, keys: Sequence[Hashable | None], k: int, rule: Rule = decide) -> Redecision:
        """Step `index` re-decided from `keys` (by sample index) at margin `k` under `rule`,
        tier by tier (see the module docstring)."""
        bounds = [0, *self.starts.get(index, ()), len(keys)]
        for tier in range(len(bounds) - 1):
            a, b = bounds[tier], max(bounds[tier], bounds[tier + 1])
            winner, used = rule(keys[a:b], k)
            if winner is not None:
                return Redecision(winner, a + used, tier, "margin")
        tier = len(bounds) - 2
        if index in self.plural:
            ballot = Ballot(k)
            for key in keys[bounds[tier]:]:
                if key is not None:
                    ballot.add(key)
            if ballot.total:
                return Redecision(ballot.leader, len(keys), tier, "plurality")
        return Redecision(None, len(keys), tier, None)

    def decides(self, index: int, answer: Hashable, keys: Sequence[Hashable | None], k: int) -> bool:
        """Whether the logged `keys` decide `answer` at `k` as the run says it did: by margin
        in the tier it escalated to last, or by that tier's plurality where the log says so."""
        r = self.redecide(index, keys, k)
        if r.winner != answer or r.tier != self.last(index):
            return False
        if index in self.plural:
            return r.how == "plurality" and self.plural[index] == (answer if isinstance(answer, str) else str(answer))
        return r.how == "margin"
