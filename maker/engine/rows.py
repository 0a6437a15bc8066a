"""The step log's row shapes as the voting engine builds them.

Every scheduler returns a step's samples and decision as columns in these orders; the
writer (`maker.log.steplog`) maps them onto the versioned schema.  One builder for each
row, so the in-order loop, the speculative window, the DAG runner and a single voted
call log alike.
"""

from __future__ import annotations

from typing import Any

from maker.cluster.protocol import Sample
from maker.tasks.base import Verdict

SAMPLE_COLUMNS = (
    "step",
    "sample",
    "model",
    "temperature",
    "reply",
    "answer",
    "red_flag",
    "detail",
    "counted",
    "tokens_in",
    "tokens_out",
    "finish_reason",
    "latency_s",
    "cost_usd",
    "error",
    "cached",
    "response_id",
    "wasted",
    "faults",
    "cached_tokens",
    "abandoned_usd",
    "reasoning_tokens",
    "shared_request",
)
DECISION_COLUMNS = ("step", "answer", "votes", "samples", "rounds", "correct")

#: One judged sample of a step: (sample index, model, temperature, sample, verdict, counted).
#: The temperature logged is the one asked for, or None when the client did not send it
#: (`Sample.temperature_sent`: the provider's default applied).
Row = tuple[int, str, "float | None", Sample, Verdict, bool]


def new_columns(names: tuple[str, ...]) -> dict[str, list[Any]]:
    """Empty columns, one list per name (a scheduler's result before any row)."""
    return {c: [] for c in names}


def append_rows(columns: dict[str, list[Any]] | list[list[Any]], step: int, rows: list[Row], wasted: bool = False) -> None:
    """Append a step's judged samples to `columns` (a dict of columns, or its lists in
    `SAMPLE_COLUMNS` order: hot loops look them up once).  The one place a sample's log
    row is built, so every scheduler logs alike."""
    cols = [columns[c] for c in SAMPLE_COLUMNS] if isinstance(columns, dict) else columns
    values = zip(*[
        (step, i, model, temperature if sample.temperature_sent else None, sample.text, verdict.key, verdict.red_flag,
         verdict.detail, counted, sample.tokens_in, sample.tokens_out, sample.finish_reason, sample.latency_s,
         sample.cost_usd, sample.error, sample.cached, sample.response_id, wasted,
         ",".join(sample.faults) if sample.faults else None, sample.cached_tokens, sample.abandoned_usd,
         sample.reasoning_tokens, sample.shared_request)
        for i, model, temperature, sample, verdict, counted in rows
    ])
    for col, column in zip(cols, values):  # one extend per column: a step's rows transposed at once
        col.extend(column)


def append_row(columns: dict[str, list[Any]], names: tuple[str, ...], row: tuple[Any, ...]) -> None:
    """Append one row (values in `names` order) to `columns`."""
    for name, value in zip(names, row):
        columns[name].append(value)


def merge_events(*batches: dict[str, list[Any]] | None) -> dict[str, list[Any]]:
    """Event columns (step, detail) of several sources as one, in the order given."""
    out: dict[str, list[Any]] = {"step": [], "detail": []}
    for batch in batches:
        if batch:
            out["step"].extend(batch.get("step", ()))
            out["detail"].extend(batch.get("detail", ()))
    return out
