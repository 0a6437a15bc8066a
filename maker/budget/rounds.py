"""How many requests a step makes, and so how many times its prompt is billed.

Why: an OpenAI-compatible endpoint (``openai/NAME`` at an ``--api-base``) draws the
samples of one round that share a prompt and temperature as ONE request with ``n``
(`maker.cluster.http.transport`), and the provider bills the prompt once per request, not once
per sample.  Pre-run estimates must count the same way as the run's tally, or `maker margin`
over-prices the prompt by up to a factor k.

The rounds follow `maker.engine.step.StepVote`: round one asks for k samples, each later
round for what the leader still needs (``k - |lead|``, `Ballot.needed`).  In the binary
worst case of the design notes a sample is a vote for the right answer with probability
``valid_rate * p``, for the wrong one with ``valid_rate * (1 - p)``, and red-flagged
otherwise; the signed lead is a Markov chain on ``-(k-1) .. k-1`` that is absorbed at
``±k`` (only at the end of a round: a round never asks for more than the leader needs).
`expected_rounds` solves that chain exactly (the sample cap is ignored).  Round one's first
sample is drawn at ``first_temperature`` (0), so it is a request of its own; the rest of
round one shares one request, and so does each later round:

    requests per step = expected_rounds + 1     (k >= 2, first sample apart)

Without `n` grouping every sample is its own request: requests = samples.  That is the
case for litellm provider strings (the provider may ignore `n`), ``--n-grouping off``, and
any speculative run: the speculative window (`maker.runtime.chain.speculation`, on by default
for chained tasks at depth 8) sends one request per sample.  Measured against
`maker sim-server --p 0.8`, hanoi 8 disks, k = 3, 255 steps: 2.79 requests for 4.62 samples
per step with ``--speculate 0`` (predicted here 2.92 for 4.85: the same ratio, 0.60), and
4.68 for 4.68 with the default speculation.

    >>> round(expected_rounds(0.999999, 3), 4)          # nearly always decided in round one
    1.0
    >>> round(expected_requests(0.99, 3, grouped=True), 4)
    2.0306
    >>> shares_prompt("openai/qwen", "http://127.0.0.1:8000/v1", speculate=0)
    True
    >>> shares_prompt("openai/qwen", "http://127.0.0.1:8000/v1"), shares_prompt("openai/gpt-4.1-mini", None, speculate=0)
    (False, False)
"""

from __future__ import annotations

from functools import lru_cache

import maker.voting as voting
from maker.errors import UsageError

__all__ = ["N_GROUPING", "expected_requests", "expected_rounds", "shares_prompt"]

#: Values of `maker margin --n-grouping`: infer from the model string, or force.
N_GROUPING = ("auto", "on", "off")


def shares_prompt(
    model: str | None, api_base: str | None = None, n_grouping: str = "auto", speculate: int | None = None
) -> bool:
    """Whether a run on `model` bills a round's shared prompt once per request (True) or once
    per sample (False).

    ``auto``: True exactly for the models the OpenAI-compatible client serves (an ``openai/``
    name at an explicit `api_base`: `maker.cluster.http.openai_compatible.uses_openai_compatible`),
    which send ``n``, in a run that does not speculate (`speculate` is the run's
    ``--speculate`` depth; None: `maker run`'s default, 8 on a real model; plan tasks and
    `maker solve` never speculate: 0); litellm provider strings, the simulator and no model
    at all count per sample (whether a hosted provider honours ``n`` is not known before
    the run).  ``on`` / ``off`` force it.  Raises UsageError for any other `n_grouping`.
    """
    if n_grouping not in N_GROUPING:
        raise UsageError(f"--n-grouping must be one of {', '.join(N_GROUPING)}, got {n_grouping!r}")
    if n_grouping != "auto":
        return n_grouping == "on"
    if not model:
        return False
    from maker.cluster.http.openai_compatible import uses_openai_compatible
    from maker.runtime.chain.speculation import DEFAULT_DEPTH

    depth = DEFAULT_DEPTH if speculate is None else speculate
    return uses_openai_compatible(model, api_base) and depth == 0


@lru_cache(maxsize=256)
def expected_rounds(p: float, k: int, valid_rate: float = 1.0) -> float:
    """Expected rounds (requests of one draw each, round one included) until a step decides.

    `p` in (0, 1) is the per-vote accuracy, `k` >= 1 the margin, `valid_rate` in (0, 1] the
    share of samples that are not red-flagged.  Exact for the binary worst case (module
    docstring); O(k**3) time (a dense solve).  Raises UsageError for p outside (0, 1), k < 1 or a valid
    rate outside (0, 1] (p <= 1/2 is allowed: the walk still ends).
    """
    import numpy as np

    if not 0.0 < p < 1.0 or k < 1 or not 0.0 < valid_rate <= 1.0:
        raise UsageError(f"expected_rounds needs p in (0, 1), k >= 1 and valid rate in (0, 1], got {p}, {k}, {valid_rate}")
    one = np.array([valid_rate * (1.0 - p), 1.0 - valid_rate, valid_rate * p])  # one sample moves the lead -1, 0, +1
    moves = [np.ones(1)]  # moves[m][d + m]: probability that m samples move the lead by d
    for _ in range(k):
        moves.append(np.convolve(moves[-1], one))
    states = range(-(k - 1), k)  # the signed lead before a round
    q = np.eye(len(states))  # I - Q; the lead s is row s + k - 1
    for s in states:
        m = k - abs(s)  # what the leader needs: the round's size
        after = s + np.arange(-m, m + 1)
        inside = np.abs(after) < k
        q[s + k - 1, after[inside] + (k - 1)] -= moves[m][inside]
    rounds = np.linalg.solve(q, np.ones(len(states)))
    return float(rounds[k - 1])


def expected_requests(p: float, k: int, valid_rate: float = 1.0, *, grouped: bool, first_apart: bool = True) -> float:
    """Expected requests per step: `expected_rounds` (+1 for round one's first sample drawn
    apart at its own temperature, when k >= 2 and `first_apart`) if `grouped`, else the
    expected samples per step (`maker.voting.expected_samples`)."""
    if not grouped:
        return voting.expected_samples(p, k, valid_rate)
    return expected_rounds(p, k, valid_rate) + (1.0 if first_apart and k >= 2 else 0.0)
