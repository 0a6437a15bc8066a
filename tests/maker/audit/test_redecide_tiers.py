"""One tier-aware re-decision under every audit (issue #25 §3).

A step that escalated was voted as one fresh ballot per tier; pooling every tier's votes
into one ballot decides another step than the run did.  A log with escalations goes
through each re-decider -- the driver's `recount`, `replay --verify`, `replay --k` at the
run's own k, the red-flag what-if with the run's own policy, and `tune`'s check of lower
advice -- and each must give back the run's own decisions, with each decision at the last
sample the run drew for it (nothing "saved": the run stopped drawing when it decided)."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task
from maker.voting import decide

from maker.audit.redecide import redecide_log
from maker.audit.verify import verify_log
from maker.audit.whatif import whatif_log
from maker.budget.tuning import tune_log
from maker.config import VotingConfig
from maker.engine.step import recount
from maker.engine.tiers import Tiers
from maker.log.steplog import open_log
from maker.runtime.driver import run
from maker.runtime.guard import log_events

CHEAP = "sim:0.99,hard=0.15,hard_p=0.5"
STRONG = "sim:0.999"
CASCADE = VotingConfig(k=4, max_samples_per_step=4, on_undecided="escalate", escalate_to=((STRONG,),))


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    log = tmp_path_factory.mktemp("tiers") / "cascade.parquet"
    result = run(get_task("hanoi", disks=5), [CHEAP], CASCADE, log=log, seed=0)
    assert result.solved and result.extra["escalations"] >= 2
    return log


def test_tiers_redecide_walks_each_tiers_fresh_ballot_not_the_pooled_votes() -> None:
    tiers = Tiers({3: [4]})
    keys = ["b", "b", "b", "a", "b", "b", "a", "b", "b", "b"]  # tier 0 leads by 2 only; tier 1 decides b at k = 4
    assert tiers.redecide(3, keys, 4) == ("b", 10, 1, "margin")
    assert decide(keys, 4) == ("b", 6)  # pooled: decided on the cheap tier's votes, before tier 1 had
    assert tiers.decides(3, "b", keys, 4) and not tiers.decides(3, "a", keys, 4)
    assert tiers.redecide(3, ["a", "b", "a", "b", "c", "a"], 4) == (None, 6, 1, None)  # undecidable with these
    plural = Tiers({3: [4]}, {3: "a"})
    assert plural.redecide(3, ["a", "b", "a", "b", "a", "a", "b", None], 4) == ("a", 8, 1, "plurality")


@pytest.mark.ray
def test_every_re_decider_gives_back_the_runs_own_decisions_on_a_log_with_escalations(cascade) -> None:
    info = open_log(cascade)
    table = pq.read_table(cascade)
    samples = table.filter(pc.equal(table["kind"], "sample")).to_pydict()
    decisions = table.filter(pc.equal(table["kind"], "decision")).to_pydict()
    events = table.filter(pc.equal(table["kind"], "event")).to_pydict()
    assert any('"escalation"' in d for d in events["detail"])
    assert recount(samples, decisions, 4, events) is None  # the driver's check of a worker

    report = verify_log(cascade)  # replay --verify
    assert report.valid and report.solved and report.steps == 31

    same_k = redecide_log(cascade)  # replay --k at the run's own k
    assert (same_k.same, same_k.changed, same_k.undecidable) == (31, 0, 0)
    assert same_k.samples_saved == 0 and same_k.samples_needed == same_k.samples

    rejudged = whatif_log(cascade)  # replay --rejudge: the run's own red-flag policy
    assert rejudged.reproduces and rejudged.samples_saved == 0

    escalated = {s for s, d in log_events(info) if d.get("event") == "escalation"}
    lower = redecide_log(cascade, k=2)  # a lower k: an escalated step may now decide on the cheap tier
    assert {c.step for c in lower.details if c.outcome == "different"} <= escalated

    advice = tune_log(cascade, target=0.5)  # p asks for a lower k; tune checks it by re-deciding the log
    assert advice.k == 4 and "turns" in advice.summary and advice.p_source == "graded"


@pytest.mark.ray
def test_recount_refuses_a_decision_the_pooled_ballot_would_give(cascade) -> None:
    table = pq.read_table(cascade)
    samples = table.filter(pc.equal(table["kind"], "sample")).to_pydict()
    decisions = table.filter(pc.equal(table["kind"], "decision")).to_pydict()
    # without the escalation events every escalated step reads as one pooled ballot: refused
    assert recount(samples, decisions, 4, None) is not None
