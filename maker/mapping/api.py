"""`maker.map`: a table of records in, the same table with voted answers out.

The Python face of `maker map` (the CLI parses its flags and calls `run_map` the same way).
`data` is a path (CSV, JSONL, Parquet, or a folder of parts), a pyarrow Table, a pandas or
polars DataFrame, or a list of dicts.  Each row is one voted step (`maker.tasks.records.map_task`):
a prompt template over its columns, or a `maker.operation` given the row's cells.  The
result is a pyarrow Table: every input column, then ``answer``, ``votes``, ``samples``,
``red_flags``, ``decided`` and, with ground truth, ``correct`` (`maker.mapping.output`),
in input order; its schema metadata ``maker.map`` holds the run's summary (JSON: what
`maker map --json` prints).

A table given in memory is copied to ``LOG.input.parquet`` beside the step log when there
is one (``runs/w.parquet`` -> ``runs/w.input.parquet``), so `maker replay --verify` and
`--resume` can rebuild the rows; without a log nothing is written but `out`.

    >>> import maker
    >>> rows = [{"q": "6 * 7", "a": "42"}, {"q": "2 + 2", "a": "4"}]
    >>> out = maker.map(rows, ["sim:0.99"], maker.VotingConfig(k=2), prompt="What is {q}?", key="integer",
    ...                 truth="a")                                                 # doctest: +SKIP
    >>> out.column_names                                                           # doctest: +SKIP
    ['q', 'a', 'answer', 'votes', 'samples', 'red_flags', 'decided', 'correct']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maker.config import ClusterConfig, VotingConfig
from maker.errors import UsageError
from maker.mapping.output import FileSink, MemorySink, TeeSink
from maker.mapping.scheduler import MapConfig, run_map
from maker.runtime.driver import RunResult
from maker.runtime.progress import Progress
from maker.tasks.base import TaskSpec
from maker.tasks.records.map_task import MapTask, make_map_task, map_job, op_reference
from maker.tasks.records.source import TableSource


def as_arrow(data: Any) -> Any:
    """`data` as a pyarrow Table (a Table, RecordBatch, pandas or polars DataFrame, list of
    dicts); None when it is a path.  UsageError for anything else."""
    import pyarrow as pa

    if isinstance(data, (str, Path)):
        return None
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        return data.to_arrow()
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pa.Table.from_pylist(data)
    raise UsageError(f"maker.map takes a path, a pyarrow Table, a pandas or polars DataFrame or a list of dicts, "
                     f"not {type(data).__name__}")


def input_copy_path(log: Path) -> Path:
    """Where an in-memory table is kept for a log: ``runs/w.parquet`` -> ``runs/w.input.parquet``."""
    stem = log.name[: -len(".parquet")] if log.name.endswith(".parquet") else log.name
    return log.parent / f"{stem}.input.parquet"


def map_task(data: Any, *, log: str | Path | None = None, resume: bool = False, **options: Any) -> MapTask:
    """The map task for `data` and the step options (`prompt`, `op`, `key`, `truth`, `id`,
    `columns`, `stop`: see `maker.tasks.records.map_task`); UsageError (one line) for bad input."""
    table = as_arrow(data)
    op = options.get("op")
    try:
        if op is not None and not isinstance(op, str) and log is not None and op_reference(op) is None:
            raise UsageError("with a log, give op as 'pkg.module:attr' or 'path/to/file.py:attr' (the log must name "
                             "it so that replay and --resume can rebuild it); this operation was not found by name")
        if table is None:
            return map_job(input=str(data), **options)
        if log is None:
            return make_map_task(TableSource.from_table(table), TaskSpec("map", {}), **options)
        import pyarrow.parquet as pq

        copy = input_copy_path(Path(log))
        if not resume and Path(log).exists():
            raise UsageError(f"{log} already exists: pass resume=True to continue it, or choose another log")
        if copy.exists() and not resume:
            raise UsageError(f"{copy} already exists (an earlier job's copy of its input): choose another log")
        if copy.exists() and not pq.read_table(copy).equals(table):
            raise UsageError(f"resume: these rows differ from the ones the job started with ({copy}); "
                             "resume with the same rows, or start a new log")
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, copy)
        return map_job(input=str(copy), **options)
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def map(  # noqa: A001 (maker.map, as the builtin's name says: one answer per record)
    data: Any,
    models: Sequence[Any],
    voting: VotingConfig | None = None,
    *,
    prompt: str | None = None,
    op: Any = None,
    key: str | None = None,
    truth: str | None = None,
    id: str | None = None,  # noqa: A002
    columns: Sequence[str] | None = None,
    stop: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    log: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    cluster: ClusterConfig | None = None,
    policy: Any = None,
    guard: Any = None,
    progress: bool = False,
    config: MapConfig | None = None,
    max_cost_usd: float | None = None,
    prices: Any = None,
) -> Any:
    """Vote one answer per record of `data`; the records with their answers, as a pyarrow Table.

    `prompt` (a template over the columns, ``"Product: {description}"``) or `op` (a
    `maker.operation`, or its ``module:attr``) says what a row asks; `key` how a reply to
    `prompt` is read (``integer``, ``text``, ``choice:a,b``...); `truth` names a ground-truth
    column (then `correct` is filled and `sim:P` can answer); `id` a column that names rows;
    `out` also writes the table (``.parquet``, ``.csv``, ``.jsonl``; an existing file is
    refused unless `overwrite`); `log` keeps the step log (`resume` continues it).
    `max_cost_usd`: a spend cap in US dollars, in flight included (`maker.budget.spend`;
    every model needs a known price: `prices` {model: `maker.cluster.pricing.Price`},
    `ModelSpec.price` or litellm's table).

    Raises UsageError for bad input (a missing column, an unknown format, an existing `out`,
    a cap on an unpriced model) before anything is drawn; EndpointDownError when the model is
    down; BudgetReached when the next batch would cross `max_cost_usd` (nothing is written to
    `out`; the log, if any, keeps every decided row and `resume=True` with a new cap goes on).  Rows that cannot be
    decided are returned with ``decided`` false; the summary (``maker.map`` in the schema
    metadata) counts them.
    """
    options = {"prompt": prompt, "op": op, "key": key, "truth": truth, "id": id, "stop": stop,
               "columns": ",".join(columns) if columns and not isinstance(columns, str) else columns}
    options = {k: v for k, v in options.items() if v is not None}
    memory = MemorySink()
    task = map_task(data, log=log, resume=resume, **options)
    sink: Any = memory
    if out is not None:
        sink = TeeSink(FileSink(out, overwrite=overwrite, protect=task.source.files), memory)
    shown = Progress(task.total_steps, enabled=progress, label="[simulated] " if _simulated(models) else "")
    result = run_map(task, models, voting, sink=sink, log=log, resume=resume, seed=seed, cluster=cluster,
                     policy=policy, progress=shown, guard=guard, config=config, max_cost_usd=max_cost_usd,
                     prices=prices)
    if result.status == "budget_reached":
        from maker.errors import BudgetReached

        budget = result.budget or {}
        raise BudgetReached(str(budget.get("line")), spent_usd=float(budget.get("spent_usd") or 0.0),
                            cap_usd=float(budget.get("cap_usd") or max_cost_usd or 0.0))
    table = memory.table()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"maker.map": json.dumps(result.to_dict())})


def _simulated(models: Sequence[Any]) -> bool:
    from maker.cluster import ModelSpec
    from maker.runtime.driver import simulated

    return simulated([m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models])


def result_of(table: Any) -> dict[str, Any]:
    """The run summary `maker.map` stored in its table's metadata (a `RunResult` as a dict)."""
    return json.loads((table.schema.metadata or {})[b"maker.map"])


__all__ = ["RunResult", "as_arrow", "input_copy_path", "map", "map_task", "result_of"]
