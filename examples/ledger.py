"""A running ledger balance over N transactions: a chained task written against maker's public API.

Each step shows the balance so far and one transaction; the model answers the new
balance, which is the next step's state.  Ground truth (the sum) lets the simulator,
`maker estimate` and the error count work.

    maker run --task examples/ledger.py:ledger --n 200 --model sim:0.95 --k 2
    maker run --task examples/ledger.py:ledger --n 30 --model local --k 2
"""

from __future__ import annotations

from maker.tasks import TaskOption

import maker

SHOTS = "balance 52, amount +7, new balance 59\nbalance 130, amount -4, new balance 126\nbalance 18, amount +9, new balance 27\n"


def amounts(n: int, seed: int = 0) -> list[int]:
    """N small non-zero amounts, the same for the same seed (a tiny linear congruential walk)."""
    out, x = [], seed * 7919 + 17
    while len(out) < n:
        x = (x * 1103515245 + 12345) % 2**31
        if (a := x % 19 - 9) != 0:
            out.append(a)
    return out


def ledger(n: int = 200, start: int = 100, seed: int = 0) -> maker.tasks.ChainTask:
    """The ledger task: `n` transactions from an opening balance `start`."""
    moves = amounts(n, seed)
    return maker.chain_task(
        name="ledger",
        start=start,
        steps=n,
        prompt=lambda balance, i: f"Keep a running balance.\n{SHOTS}balance {balance}, amount {moves[i]:+d}, new balance",
        parse=lambda reply: reply.strip().rstrip("."),  # "  59." -> "59"; anything else is malformed
        key="integer",
        truth=lambda balance, i: balance + moves[i],
        prompt_style="completion",
        stop=("\n",),
    )


ledger.options = (  # type: ignore[attr-defined]
    TaskOption("n", int, "transactions (steps)", default=200),
    TaskOption("start", int, "opening balance", default=100),
    TaskOption("seed", int, "which transactions", default=0),
)
ledger.summary = "running ledger balance over N transactions (examples/ledger.py)"  # type: ignore[attr-defined]
