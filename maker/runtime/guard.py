"""The live guard: is the voting guarantee still holding while the run goes on?

Why: k was planned from a p measured before the run, under the assumption that a
step's votes err independently.  A run of a million steps can drift away from both.
The votes themselves are evidence: a valid counted vote that disagrees with its step's
decision is an error, so the driver can keep, after every segment it checks,

* p̂ with its Clopper-Pearson interval (over all counted votes so far);
* the collision ratio: steps whose first two votes were both wrong, against the
  ``(1 - p)**2`` that independence predicts (`voting.collision_stats`), with p taken
  from those same first two votes (all votes would over-weight hard steps, which draw
  many more votes, and hide the correlation);
* the implied probability that every remaining step is decided right at the current
  k, on the pessimistic end of p (`voting.run_success`).

Two alarms: the pessimistic end of p falls below what the run assumed (the run's
``--p``, or the p that k just suffices for), judged only once a perfect record would
clear the plan; or collisions exceed independence by ``collision_factor`` (with at least
``min_collisions`` of them and a binomial p-value under 1%).  Each alarm warns once on
stderr and is recorded as an event row in the step log.  With ``adaptive=True`` the
guard then raises k for the rest of the run, never above ``k_max`` and never down:

* from p: the smallest k meeting the target over the remaining steps at the low end of p;
* from collisions: errors that collide come from *hard* steps.  With e1 the rate of
  wrong votes among the first two and c the collision rate, a two-class model (a fraction h of
  steps with accuracy q, the rest error-free) gives ``1 - q = c / e1`` and
  ``h = e1**2 / c``; k is planned for ``h * remaining`` steps of accuracy q.  Errors
  are counted against the decisions, so q can never be seen below 1/2: when it comes
  out near a coin flip the guard says that no margin may help (the decisions there may
  be the wrong side of it) -- more votes are then a bet, bounded by ``k_max``.

The driver builds each segment's job from `voting_for`, which also records a
``k_change`` event (from which step the new k holds) so that replay can audit every
decision with the k it was made under (`k_schedule`).  The guard reacts between
segments, so ``--segment-steps`` bounds how fast it can act.

Example:
    >>> guard = Guard(GuardConfig(adaptive=True, k_max=9), k=3, first_step=0, last_step=999, stream=None)
    >>> round(guard.p_assumed, 3)  # k = 3 just suffices for 1,000 steps at p >= 0.964
    0.964
"""

from __future__ import annotations

import json
import math
import sys
from bisect import bisect_right
from dataclasses import dataclass, replace
from typing import Any, TextIO

import maker.voting as stats
from maker.budget.advice import next_k
from maker.config import GuardConfig, VotingConfig


def implied_p(k: int, steps: int, target: float) -> float:
    """The smallest p for which margin k meets `target` over `steps` steps.

    From ``run_success = (1 + r**k) ** -steps`` with ``r = (1 - p) / p``.

    >>> round(implied_p(3, 2**20 - 1, 0.95), 4)
    0.9964
    """
    y = math.expm1(-math.log(target) / max(1, steps))
    r = y ** (1.0 / k)
    return 1.0 / (1.0 + r)


class Guard:
    """Watches the votes of a live run; see the module docstring."""

    def __init__(
        self,
        config: GuardConfig,
        *,
        k: int,
        first_step: int,
        last_step: int,
        stream: TextIO | None = sys.stderr,
    ) -> None:
        self.config = config
        self.k_start = k
        self.k = k
        self.k_max = config.checked_k_max(k)
        self.last_step = last_step
        self.p_assumed = config.p_assumed if config.p_assumed is not None else implied_p(k, last_step - first_step + 1, config.target)
        self.stream = stream
        self.votes = 0
        self.errors = 0
        self.with_two = 0  # steps with at least two counted votes
        self.pair_wrong = 0  # wrong votes among those steps' first two
        self.collisions = 0
        self.graded_decisions = 0  # decisions whose ground truth is known (their `correct`)
        self.wrong_decisions = 0  # of which wrong
        self.k_at_wrong = 0  # the largest k a wrong decision was made under
        self.decided_through = first_step - 1
        self._window = (0, 0, 0)  # (with_two, pair_wrong, collisions) at the last k change
        self._k_built = k
        self._alarms: set[str] = set()
        self._said: set[str] = set()
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self.snapshot: dict[str, Any] = {}

    # -- the driver's side ------------------------------------------------------------
    def voting_for(self, voting: VotingConfig, at_step: int) -> VotingConfig:
        """The VotingConfig for a segment starting at `at_step`; logs when k changes there."""
        if self.k != self._k_built:
            self._event(at_step, {"event": "k_change", "from_step": at_step, "k": self.k, "previous_k": self._k_built})
            self._k_built = self.k
        return voting if voting.k == self.k else replace(voting, k=self.k)

    def observe(self, samples: dict[str, list[Any]], decisions: dict[str, list[Any]], *, evaluate: bool = True) -> None:
        """Count a checked segment's votes, then raise alarms (and k) as the module says
        (`evaluate=False`: count only, as a resumed run restores what its log holds)."""
        winners = dict(zip(decisions["step"], decisions["answer"]))
        if not winners:
            return
        right = dict(zip(decisions["step"], decisions.get("correct") or [None] * len(winners)))
        wrong_now = sum(ok is False for ok in right.values())
        self.graded_decisions += sum(ok is not None for ok in right.values())
        self.wrong_decisions += wrong_now
        if wrong_now:
            self.k_at_wrong = max(self.k_at_wrong, self.k)
        current = None
        nth = 0
        first_wrong = False
        votes = errors = with_two = pair_wrong = collisions = 0
        for step, answer, counted, wasted in zip(samples["step"], samples["answer"], samples["counted"], samples["wasted"]):
            if not counted or wasted:
                continue
            winner = winners.get(step)
            if winner is None:
                continue
            wrong = answer != winner
            if right.get(step) is False:  # decided wrong (ground truth): a vote for it is an error,
                if not wrong:  # a vote for another answer may be right or wrong: not graded here
                    wrong = True
                else:
                    continue
            votes += 1
            errors += wrong
            if step != current:
                current, nth, first_wrong = step, 1, wrong
            else:
                nth += 1
                if nth == 2:
                    with_two += 1
                    pair_wrong += first_wrong + wrong
                    collisions += first_wrong and wrong
        self.votes += votes
        self.errors += errors
        self.with_two += with_two
        self.pair_wrong += pair_wrong
        self.collisions += collisions
        self.decided_through = max(self.decided_through, max(winners))
        if evaluate:
            self._evaluate()

    def drain(self) -> dict[str, list[Any]]:
        """Event rows not yet written, as step-log columns (`kind = 'event'`)."""
        rows, self._pending = self._pending, []
        return {"step": [s for s, _ in rows], "detail": [json.dumps(d, sort_keys=True) for _, d in rows]}

    def restore(self, events: list[dict[str, Any]], info: Any = None) -> None:
        """Continue a resumed run where its log left off: at the k it last changed to, with
        the vote counts of every step the log decided (`info`: the log, see
        `maker.log.steplog.open_log`), and with the alarms and notes it already raised
        (they are not raised, nor logged, again)."""
        changes = [e for e in events if e.get("event") == "k_change"]
        if changes:
            self.k = self._k_built = int(changes[-1]["k"])
            self.k_max = max(self.k_max, self.k)
        for e in events:
            if e.get("event") == "alarm":
                self._alarms.add(e.get("alarm"))
            elif e.get("event") == "note":
                self._said.add(e.get("note"))
        if info is None:
            return
        import pyarrow as pa

        from maker.log.by_step import iter_chunks

        raised = max((int(e["step"]) for e in events if e.get("event") == "k_raise"), default=None)
        first = self.decided_through
        for chunk in iter_chunks(info, ("counted", "wasted"), ("correct",)):
            live = chunk.samples.filter(pa.array(chunk.live()))  # not wasted, not superseded by a redraw
            cols = live.select(["step", "answer", "counted", "wasted"]).to_pydict()
            self.observe(cols, chunk.decisions.select(["step", "answer", "correct"]).to_pydict(), evaluate=False)
            if raised is not None and self.decided_through >= raised and self._window == (0, 0, 0):
                self._window = (self.with_two, self.pair_wrong, self.collisions)  # collisions since the last raise
        self.decided_through = max(first, self.decided_through)
        if self.votes:
            self._evaluate(quiet=True)

    def summary(self) -> str:
        """The guard's part of the progress line."""
        s = self.snapshot
        if not s:
            return ""
        ratio = s["collision_ratio"]
        ratio_text = "-" if ratio is None else f"{ratio:.1f}x"
        # Before min_votes the interval is too wide to say anything: unknown, not 0.000.
        success = f"{s['success']:.3f}" if s["votes"] >= self.config.min_votes else f"? ({s['votes']} votes)"
        return (
            f"  p̂ {s['p_hat']:.4f} (≥{s['p_low']:.4f})  collisions {ratio_text}  "
            f"P(rest right) {success}  k {self.k}"
        )

    def to_dict(self) -> dict[str, Any]:
        """What `maker run --json` shows under extra.guard."""
        return {
            **self.snapshot,
            "k_start": self.k_start,
            "k": self.k,
            "k_max": self.k_max,
            "min_votes": self.config.min_votes,
            "p_assumed": self.p_assumed,
            "adaptive": self.config.adaptive,
            "events": self.events,
        }

    # -- the judgement ----------------------------------------------------------------
    def _evaluate(self, quiet: bool = False) -> None:
        """Update the snapshot; raise alarms and act on them (`quiet`: the snapshot only)."""
        cfg = self.config
        n, e = self.votes, self.errors
        if n == 0:
            return
        ci = stats.clopper_pearson(n - e, n, cfg.level)
        remaining = max(1, self.last_step - self.decided_through)
        low = max(ci.low, 1e-12)
        success = stats.run_success(low, self.k, remaining) if self.decided_through < self.last_step else 1.0
        w0, pw0, c0 = self._window
        two, wrong_in_pairs, coll = self.with_two - w0, self.pair_wrong - pw0, self.collisions - c0
        # Independence is judged on the first two votes of each step, not on all votes: hard
        # steps draw many more votes, so an all-votes p would dilute the very signal sought.
        e1 = wrong_in_pairs / (2 * two) if two else 0.0
        # Every first vote wrong (e1 = 1, e.g. a one-step run whose first two votes lose):
        # independence predicts a collision on every pair, which is what was seen: ratio 1, no alarm.
        collision = stats.collision_stats(coll, two, 1.0 - e1) if two and e1 < 1.0 else None
        ratio = 1.0 if two and e1 >= 1.0 else None if collision is None or math.isnan(collision.ratio) else collision.ratio
        whole = _ratio(self.collisions, self.with_two, self.pair_wrong)  # over the run, for people
        self.snapshot = {
            "votes": n,
            "errors": e,
            "p_hat": ci.point,
            "p_low": ci.low,
            "p_high": ci.high,
            "collisions": self.collisions,
            "steps_with_two": self.with_two,
            "collision_ratio": whole,
            "collision_ratio_since_k_change": None if ratio is None or math.isinf(ratio) else round(ratio, 3),
            "success": success,
            "remaining_steps": remaining if self.decided_through < self.last_step else 0,
            # graded: votes against ground truth where the decisions know theirs; else agreement
            "p_source": "graded" if self.graded_decisions else "agreement",
            "wrong_decisions": self.wrong_decisions if self.graded_decisions else None,
            "k_at_wrong": self.k_at_wrong or None,  # the largest k a known wrong decision was made under
        }
        if quiet:
            return
        at = self.decided_through
        needed: dict[str, int | None] = {}
        # Alarm 1: the pessimistic end of p is below the plan, on enough evidence.
        enough = max(cfg.min_votes, math.ceil(math.log((1 - cfg.level) / 2) / math.log(self.p_assumed))) if self.p_assumed < 1 else cfg.min_votes
        p_alarm = n >= enough and ci.low < self.p_assumed
        if self._onset("p_low", p_alarm):
            self._warn(at, "p_low", f"p's pessimistic end {ci.low:.5f} (p̂ {ci.point:.5f}, {n:,} votes) is below the "
                       f"{self.p_assumed:.5f} the run assumed; P(every remaining step right at k={self.k}) = {success:.4f}")
        if p_alarm:
            needed["p_low"] = stats.k_min(ci.low, remaining, cfg.target) if ci.low > 0.5 else None
        # Alarm 2: collisions beyond what independence explains.
        c_alarm = (
            collision is not None
            and coll >= cfg.min_collisions
            and (ratio is None or math.isinf(ratio) or ratio > cfg.collision_factor)
            and collision.p_value < 0.01
        )
        if self._onset("collisions", c_alarm):
            shown = "inf" if ratio is None or math.isinf(ratio) else f"{ratio:.1f}"
            self._warn(at, "collisions", f"{coll} of {two:,} steps had both first votes wrong, {shown}x what "
                       f"independent errors at the first votes' error rate {e1:.5f} predict: errors are correlated")
        if c_alarm and e1 > 0:
            hard_error = min(1.0, (coll / two) / e1)
            hard_share = min(1.0, e1**2 / (coll / two))
            hard_steps = max(1, round(hard_share * remaining))
            needed["collisions"] = stats.k_min(1.0 - hard_error, hard_steps, cfg.target) if hard_error < 0.5 else None
            if hard_error >= 0.4:
                self._say(at, "coin_flip", f"where errors concentrate the votes agree with the decision only "
                          f"{1 - hard_error:.0%} of the time: a coin flip, and if the decisions there are the wrong "
                          "side of it no margin helps; try --prompt-variants, red flags or another model")
        # Alarm 3: decisions known wrong (ground truth): the k they were made under did not hold.
        if self._onset("wrong_decisions", self.wrong_decisions > 0):
            self._warn(at, "wrong_decisions", f"{self.wrong_decisions} decision(s) differ from the ground truth at "
                       f"k={self.k_at_wrong}: that k did not hold")
        if self.wrong_decisions:
            needed["wrong_decisions"] = next_k(self.k_at_wrong, k_used=self.k_at_wrong,
                                               wrong_decisions=self.wrong_decisions)[0]
        if needed:
            self._act(at, needed)

    def _act(self, at: int, needed: dict[str, int | None]) -> None:
        hopeless = [reason for reason, k in needed.items() if k is None]
        if hopeless:
            self._say(at, "hopeless", "the estimated accuracy where errors concentrate is <= 1/2: no margin can fix "
                      "that; try --prompt-variants, red flags or another model")
        wanted = max((k for k in needed.values() if k is not None), default=self.k)
        if wanted <= self.k:
            return
        if not self.config.adaptive:
            self._say(at, "advice", f"the evidence asks for k = {wanted} (now {self.k}); --adaptive-k would raise it")
            return
        new = min(wanted, self.k_max)
        if new > self.k:
            reason = max((r for r, k in needed.items() if k is not None), key=lambda r: needed[r] or 0)
            shown = ("p_hat", "p_low", "collision_ratio", "collision_ratio_since_k_change")
            self._event(at, {"event": "k_raise", "step": at, "from": self.k, "to": new, "wanted": wanted,
                             "reason": reason, **{k: self.snapshot[k] for k in shown}})
            self._print(f"raising k from {self.k} to {new} after step {at:,} ({reason})")
            self.k = new
            self._window = (self.with_two, self.pair_wrong, self.collisions)
            self._alarms.discard("collisions")
        if wanted > self.k_max:
            self._say(at, "k_max", f"the evidence asks for k = {wanted}, above --k-max {self.k_max}")

    def _onset(self, name: str, active: bool) -> bool:
        if not active:
            self._alarms.discard(name)
            return False
        if name in self._alarms:
            return False
        self._alarms.add(name)
        return True

    def _warn(self, at: int, alarm: str, message: str) -> None:
        self._event(at, {"event": "alarm", "alarm": alarm, "step": at, "message": message, **self.snapshot})
        self._print(message)

    def _say(self, at: int, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self._event(at, {"event": "note", "note": key, "step": at, "message": message})
            self._print(message)

    def _event(self, step: int, detail: dict[str, Any]) -> None:
        self._pending.append((step, detail))
        self.events.append(detail)

    def _print(self, message: str) -> None:
        if self.stream is not None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)())
            self.stream.write(("\r\x1b[2K" if tty else "") + f"maker: guard: {message}\n")
            self.stream.flush()


def _ratio(collisions: int, with_two: int, wrong_in_pairs: int) -> float | None:
    """Observed collision rate over the (1 - p)**2 independence predicts, p from the same pairs."""
    if not with_two:
        return None
    e1 = wrong_in_pairs / (2 * with_two)
    if e1 == 0:
        return None if collisions == 0 else math.inf
    return round((collisions / with_two) / e1**2, 3)


# -- reading the k a log's decisions were made under -------------------------------------
@dataclass(frozen=True)
class KSchedule:
    """The k each step of a logged run was decided with: `k0`, changed by k_change events."""

    k0: int
    changes: tuple[tuple[int, int], ...] = ()  # (from_step, k), sorted

    def at(self, step: int) -> int:
        i = bisect_right(self.changes, (step, math.inf))
        return self.changes[i - 1][1] if i else self.k0


def log_events(info: Any) -> list[tuple[int, dict[str, Any]]]:
    """(step, detail) of every event row in a step log, in the order written."""
    from maker.log.steplog import iter_tables

    out: list[tuple[int, dict[str, Any]]] = []
    for table in iter_tables(info, ["step", "detail"], kind="event"):
        for step, detail in zip(table["step"].to_pylist(), table["detail"].to_pylist()):
            try:
                out.append((step, json.loads(detail)))
            except (TypeError, ValueError):
                continue
    return out


def k_schedule(info: Any, events: list[tuple[int, dict[str, Any]]] | None = None) -> KSchedule:
    """The KSchedule of the log `info` (see `maker.log.steplog.open_log`)."""
    k0 = int(info.run["voting"]["k"])
    events = log_events(info) if events is None else events
    changes = sorted(
        (int(d["from_step"]), int(d["k"])) for _, d in events if d.get("event") == "k_change" and "from_step" in d
    )
    return KSchedule(k0, tuple(changes))
