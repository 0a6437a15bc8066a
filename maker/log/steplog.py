"""The step log: every sample and every decision of a run, as a Parquet dataset.

Why a folder of Parquet parts and not one file: a Parquet file is only readable once its
footer is written, so a single growing file is lost whole if the process is killed.
Each flush here writes one complete part to a temporary name, fsyncs it, renames it into
place and fsyncs the folder (so the rename itself survives a power cut), so a `kill -9`
loses at most the part being written, and `--resume` restarts from the last decided step
on disk.  pandas (`pd.read_parquet(LOG)`), DuckDB
(`SELECT * FROM 'LOG/*.parquet'`) and Polars (`pl.read_parquet('LOG/*.parquet')`) read
the folder as one table.

One row per sample (`kind = 'sample'`) and one per decided step (`kind = 'decision'`);
a plan's tool step, run once and never voted, is decided by a `kind = 'tool'` row (no
samples, `votes` 0); the live guard adds rare `kind = 'event'` rows (step, detail = JSON:
alarms, k changes).  A run with a draft (`--draft MODEL`) logs each proposal of its
proposer as a `kind = 'draft'` row (sample columns, `sample` -1, never counted; `wasted`
when it was made on a premise that lost): paid for, never a vote.  Readers that want every decided step take both kinds
(`DECIDED_KINDS`; `iter_tables(kind="decision")` does).
Every part carries the run's metadata (task, models, k, seeds, versions) in its
key-value metadata under `maker.run`, plus `maker.schema_version` and `maker.version`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from maker.errors import StepLogError, UsageError, one_line

SCHEMA_VERSION = 4  # 2: `faults` added; version-1 parts read with it null. 3: `tool` rows.
#: 4: `cached_tokens`, `abandoned_usd`, `reasoning_tokens`, `shared_request` (older parts read them as null);
#:    `temperature` null = not sent; `draft` rows (a draft model's proposals, never votes)
#: The row kinds that decide a step: a vote's decision, and a plan's tool step (run, not voted).
DECIDED_KINDS = ("decision", "tool")


def decided_rows(kinds: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Boolean mask of a `kind` column: True on the rows that decide a step (`DECIDED_KINDS`)."""
    import pyarrow.compute as pc

    return pc.is_in(kinds, value_set=pa.array(DECIDED_KINDS))

#: Columns, types and meaning.  Units: seconds, US dollars, tokens.
SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # 'sample' | 'decision' | 'tool' | 'event' | 'draft'
        ("step", pa.int64()),  # 0-based step index
        ("sample", pa.int32()),  # sample index within the step (samples only)
        ("model", pa.string()),  # model string that drew the sample
        ("temperature", pa.float32()),  # as sent; null when the client did not send one (the provider's default)
        ("reply", pa.string()),  # the model's raw reply text (a tool row: the inputs it ran on, a JSON list)
        ("answer", pa.string()),  # canonical vote key (sample: if valid; decision: the winner)
        ("red_flag", pa.string()),  # discard reason, null for a valid sample
        ("detail", pa.string()),  # what exactly raised the red flag
        ("counted", pa.bool_()),  # the sample was counted as a vote
        ("tokens_in", pa.int32()),
        ("tokens_out", pa.int32()),
        ("finish_reason", pa.string()),
        ("latency_s", pa.float32()),
        ("cost_usd", pa.float64()),
        ("error", pa.string()),  # transport error after retries
        ("cached", pa.bool_()),  # the provider reported a cache hit
        ("response_id", pa.string()),
        ("wasted", pa.bool_()),  # drawn on a speculative premise that lost the vote
        ("faults", pa.string()),  # failed attempts behind the sample, by kind, comma-separated ('rate_limited,timeout')
        ("cached_tokens", pa.int32()),  # of tokens_in, read from the provider's prompt cache (billed at its cache-read rate)
        ("abandoned_usd", pa.float64()),  # estimated bill of calls given up on behind the sample (timeouts, cancels)
        ("reasoning_tokens", pa.int32()),  # hidden reasoning tokens among tokens_out (billed as output)
        ("shared_request", pa.string()),  # one id per HTTP request that drew several samples (n choices); null: own request
        ("votes", pa.int32()),  # decision: valid votes counted
        ("samples", pa.int32()),  # decision: samples drawn for the step
        ("rounds", pa.int32()),  # decision: sampling rounds the step needed
        ("correct", pa.bool_()),  # decision: equals the ground truth for its premise (null if unknown)
    ]
)

_PART = "part-{:06d}.parquet"


def count_faults(cells: Iterable[str | None], into: dict[str, int]) -> dict[str, int]:
    """Add the fault kinds named in `faults` cells ('timeout,rate_limited') to `into`."""
    for cell in cells:
        if cell:
            for kind in cell.split(","):
                into[kind] = into.get(kind, 0) + 1
    return into


def _columns_table(columns: dict[str, list[Any]], kind: str) -> pa.Table | None:
    if not columns or not next(iter(columns.values())):
        return None
    n = len(next(iter(columns.values())))
    arrays = []
    for field in SCHEMA:
        if field.name == "kind":
            arrays.append(pa.array([kind] * n, pa.string()))
        elif field.name in columns:
            arrays.append(pa.array(columns[field.name], field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


@dataclass(frozen=True)
class LogInfo:
    """What `open_log` found: the run's metadata and the readable parts, in order."""

    path: Path
    run: dict[str, Any]
    schema_version: int
    parts: tuple[Path, ...]
    damaged: tuple[Path, ...] = ()
    salvage: bool = False
    #: Parts whose footer read but whose data did not; filled by `iter_tables` under salvage.
    unreadable: list[Path] = dc_field(default_factory=list)


class StepLogWriter:
    """Appends parts to a step log; each `append` is atomic on disk."""

    def __init__(self, path: str | Path, run: dict[str, Any], *, resume: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not resume:
            raise UsageError(f"{self.path} already exists: pass --resume to continue it, or choose another --log")
        if resume and not self.path.exists():
            raise UsageError(f"{self.path} does not exist: nothing to resume")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StepLogError(f"cannot write the step log at {self.path}: {exc.strerror or exc}", path=str(self.path)) from None
        for stale in self.path.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        existing = sorted(self.path.glob("part-*.parquet"))
        self._seq = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        self._metadata = {
            b"maker.schema_version": str(SCHEMA_VERSION).encode(),
            b"maker.version": str(run.get("maker_version", "")).encode(),
            b"maker.run": json.dumps(run, sort_keys=True).encode(),
        }
        self.bytes_written = sum(p.stat().st_size for p in existing)

    def append(
        self, samples: dict[str, list[Any]], decisions: dict[str, list[Any]], events: dict[str, list[Any]] | None = None,
        tools: dict[str, list[Any]] | None = None, drafts: dict[str, list[Any]] | None = None,
    ) -> None:
        """Write one part: sample, decision, event, tool-step (decision columns) and draft
        (sample columns) rows."""
        tables = [
            t
            for t in (_columns_table(samples, "sample"), _columns_table(decisions, "decision"),
                      _columns_table(tools or {}, "tool"), _columns_table(events or {}, "event"),
                      _columns_table(drafts or {}, "draft"))
            if t
        ]
        if not tables:
            return
        table = pa.concat_tables(tables).replace_schema_metadata(self._metadata)
        final = self.path / _PART.format(self._seq)
        tmp = self.path / f".part-{self._seq:06d}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd", row_group_size=1 << 20)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StepLogError(f"cannot write to the step log {self.path}: {exc.strerror or exc}", path=str(self.path)) from None
        self._seq += 1
        self.bytes_written += final.stat().st_size


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable: until the folder's entry is on disk, a power cut can
    undo it even though the file's data was fsynced (POSIX; a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_metadata(part: Path) -> dict[bytes, bytes]:
    return pq.read_schema(part).metadata or {}


def open_log(path: str | Path, *, salvage: bool = False) -> LogInfo:
    """Check that `path` is a maker step log this version can read; list its parts.

    Raises StepLogError with a one-line reason: missing, empty, foreign, newer schema, or
    damaged (a damaged part is skipped, with every part after it, only with `salvage`).
    """
    path = Path(path)
    if not path.exists():
        raise StepLogError(f"{path}: no such step log", path=str(path))
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
    if not parts:
        raise StepLogError(f"{path}: empty step log (no parts)", path=str(path))
    good: list[Path] = []
    damaged: list[Path] = []
    run: dict[str, Any] | None = None
    version = SCHEMA_VERSION
    for part in parts:
        if damaged:
            damaged.append(part)
            continue
        try:
            meta = _read_metadata(part)
        except (OSError, pa.ArrowException) as exc:
            if not salvage:
                raise StepLogError(
                    f"{part}: damaged or not Parquet ({one_line(exc)}); --salvage reads the parts before it",
                    path=str(part),
                ) from None
            damaged.append(part)
            continue
        if b"maker.schema_version" not in meta:
            raise StepLogError(f"{part}: a Parquet file, but not a maker step log", path=str(part))
        version = int(meta[b"maker.schema_version"])
        if version > SCHEMA_VERSION:
            raise StepLogError(
                f"{part}: written with step-log schema {version}, newer than this maker's {SCHEMA_VERSION}; upgrade maker",
                path=str(part),
            )
        part_run = json.loads(meta[b"maker.run"])
        if run is None:
            run = part_run
        elif part_run.get("task") != run.get("task"):
            raise StepLogError(f"{part}: belongs to a different run than {parts[0].name}", path=str(part))
        good.append(part)
    if run is None:
        raise StepLogError(f"{path}: no readable part", path=str(path))
    return LogInfo(path, run, version, tuple(good), tuple(damaged), salvage)


def iter_tables(info: LogInfo, columns: list[str] | None = None, kind: str | None = None) -> Iterator[pa.Table]:
    """The log part by part, so a million-step log never has to sit in memory at once."""
    import pyarrow.compute as pc

    for i, part in enumerate(info.parts):
        try:
            wanted = [f.name for f in SCHEMA] if columns is None else sorted({*columns, "kind"})
            with pq.ParquetFile(part) as parquet:  # one footer read gives both the columns present and the data
                present = set(parquet.schema_arrow.names)
                table = parquet.read(columns=[c for c in wanted if c in present])
            for name in wanted:  # a column added after this part was written (older schema): null
                if name not in present and name in SCHEMA.names:
                    table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
            table = table.select([c for c in wanted if c in table.schema.names])  # one column order for every part
        except (OSError, pa.ArrowException) as exc:
            if info.salvage:
                info.unreadable[:] = info.parts[i:]  # salvage stops at the first damaged part
                return
            raise StepLogError(
                f"{part}: damaged ({one_line(exc)}); --salvage reads the parts before it", path=str(part)
            ) from None
        if kind == "decision":  # every decided step: voted decisions and tool steps
            table = table.filter(decided_rows(table["kind"]))
        elif kind is not None:
            table = table.filter(pc.equal(table["kind"], kind))
        yield table


def read_table(info: LogInfo, columns: list[str] | None = None, kind: str | None = None) -> pa.Table:
    tables = list(iter_tables(info, columns, kind))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def decisions(log: str | Path | LogInfo) -> list[tuple[int, str]]:
    """Every decided step of a log as (step, answer), in step order: what two runs are
    compared by (a resumed run against an uninterrupted one, one schedule against another)."""
    info = log if isinstance(log, LogInfo) else open_log(log)
    table = read_table(info, ["step", "answer"], kind="decision")
    return sorted(zip(table["step"].to_pylist(), table["answer"].to_pylist()))


def last_decision(info: LogInfo) -> tuple[int, str] | None:
    """(step, answer) of the highest decided step, or None when nothing was decided."""
    best: tuple[int, str] | None = None
    for table in iter_tables(info, ["step", "answer"], kind="decision"):
        if table.num_rows:
            steps = table["step"].to_pylist()
            i = max(range(len(steps)), key=steps.__getitem__)
            if best is None or steps[i] > best[0]:
                best = (steps[i], table["answer"][i].as_py())
    return best
