"""Which p a margin was planned from, and the one rule for advising the next k.

Why: maker's promise is that k comes from a *measured* per-step accuracy.  Three kinds of
p reach a plan, and they are not equally good:

* ``graded``: valid votes compared with the task's ground truth (`maker estimate`;
  `maker tune` and the live guard when the run knows its ground truth).  This is accuracy.
* ``agreement``: valid votes compared with their own step's decision (`maker tune`,
  `maker report` and the live guard on a task without ground truth).  Errors that agree
  with each other and win look like agreement, so it can only overstate accuracy.
* ``assumed``: a p the user gave (`maker margin --p`, `maker run --k auto --p`).

Every command that advises a k says which one it used (`P_SOURCES`), and every one applies
`next_k`: a run whose decisions are known to be wrong (by ground truth) never gets "keep
k" advice -- whatever its p says, the k it used just failed.

    >>> next_k(3, k_used=3, wrong_decisions=7)
    (4, "this run's k = 3 made 7 known wrong decisions: use more than k = 3")
    >>> next_k(3, k_used=3, wrong_decisions=0)
    (3, None)
"""

from __future__ import annotations

__all__ = ["P_SOURCES", "next_k", "p_source_text"]

#: How each kind of p was measured, as the reports say it.
P_SOURCES = {
    "graded": "graded: valid votes compared with the task's ground truth",
    "agreement": "agreement: valid votes compared with their step's decision (no ground truth; "
                 "errors that agree and win look right, so this p can only overstate accuracy)",
    "assumed": "assumed: given, not measured",
}


def p_source_text(source: str) -> str:
    """The words for `source` ("graded", "agreement" or "assumed"); KeyError for another."""
    return P_SOURCES[source]


def next_k(k_planned: int | None, *, k_used: int | None, wrong_decisions: int | None) -> tuple[int | None, str | None]:
    """The k to advise for the next run, and why it was raised (None when it was not).

    `k_planned` is what the measured p asks for (None: no k can); `k_used` the run's k (the
    largest it reached); `wrong_decisions` its decisions known wrong by ground truth (None:
    unknown).  With known wrong decisions the advice is always above `k_used`."""
    if k_planned is None or not wrong_decisions or not k_used or k_planned > k_used:
        return k_planned, None
    return k_used + 1, (f"this run's k = {k_used} made {wrong_decisions} known wrong decision"
                        f"{'s' if wrong_decisions != 1 else ''}: use more than k = {k_used}")
