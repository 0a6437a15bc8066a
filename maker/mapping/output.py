"""The table `maker map` writes: every input column, then the voted columns, in row order.

Columns added to each input row (`VOTED_COLUMNS`):

* ``answer`` (string): the decided answer's value (``900``, not the vote key ``value = 900``);
  null for a row that was not decided;
* ``votes`` (int32): valid votes counted on the row's deciding ballot; ``samples`` (int32):
  samples drawn; ``red_flags`` (int32): samples discarded;
* ``decided`` (bool): false for a row that could not be decided (the sample cap, every
  sample red-flagged) under ``--on-undecided``;
* ``correct`` (bool, only with ground truth): the answer equals the truth.

A sink receives the output chunk by chunk.  `FileSink` writes Parquet, CSV or JSONL by the
file's suffix, to a hidden temporary file beside it that is renamed into place only when
the whole table is written (a stopped job leaves any earlier file as it was); it refuses a
path that exists unless `overwrite`.  `MemorySink` keeps the chunks (what `maker.map`
returns).

    >>> import pyarrow as pa
    >>> out = voted_table(pa.table({"q": ["a", "b"]}), ["1", None], [3, 0], [3, 100], [0, 2], [True, False], None)
    >>> out.column_names, out["decided"].to_pylist()
    (['q', 'answer', 'votes', 'samples', 'red_flags', 'decided'], [True, False])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from maker.errors import UsageError

#: The columns a map job adds to each row, in order (``correct`` only with ground truth).
VOTED_COLUMNS = ("answer", "votes", "samples", "red_flags", "decided", "correct")
#: Output suffix -> format.
OUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def check_input_columns(columns: Sequence[str], truth: bool) -> None:
    """UsageError when an input column has the name of a column the job adds."""
    added = VOTED_COLUMNS if truth else VOTED_COLUMNS[:-1]
    clash = [c for c in columns if c in added]
    if clash:
        raise UsageError(f"the input already has a column {clash[0]!r}, which maker map adds (it adds "
                         f"{', '.join(added)}); rename that column in the input")


def voted_table(rows: pa.Table, answers: Sequence[str | None], votes: Sequence[int], samples: Sequence[int],
                red_flags: Sequence[int], decided: Sequence[bool], correct: Sequence[bool | None] | None) -> pa.Table:
    """`rows` (input columns) with the voted columns appended; `correct` None: no truth column."""
    out = rows
    for name, values, kind in (("answer", answers, pa.string()), ("votes", votes, pa.int32()),
                               ("samples", samples, pa.int32()), ("red_flags", red_flags, pa.int32()),
                               ("decided", decided, pa.bool_())):
        out = out.append_column(pa.field(name, kind), pa.array(values, kind))
    if correct is not None:
        out = out.append_column(pa.field("correct", pa.bool_()), pa.array(correct, pa.bool_()))
    return out


class MemorySink:
    """Keeps every chunk; `table()` is the whole output."""

    def __init__(self) -> None:
        self.chunks: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self.chunks.append(table)

    def table(self) -> pa.Table | None:
        return pa.concat_tables(self.chunks) if self.chunks else None

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


class FileSink:
    """Writes the output file by suffix; in place only once complete (see the module docstring).

    Raises UsageError (one line) at construction for an unknown suffix, a missing folder, an
    existing file without `overwrite`, or a path that is one of `protect` (the input).
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, protect: Sequence[Path] = ()) -> None:
        self.path = Path(path)
        self.format = OUT_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise UsageError(f"--out {path}: name it .parquet, .csv or .jsonl (the suffix says the format)")
        if not self.path.parent.is_dir():
            raise UsageError(f"--out {path}: the folder {self.path.parent} does not exist")
        resolved = self.path.resolve()
        if any(resolved == Path(p).resolve() or Path(p).resolve() in resolved.parents for p in protect):
            raise UsageError(f"--out {path} is the input: write the output elsewhere")
        if self.path.exists() and (self.path.is_dir() or not overwrite):
            raise UsageError(f"--out {path} already exists: choose another name, or pass --overwrite to replace it "
                             "once the new table is complete")
        self.tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.partial"
        self._writer: Any = None
        self._fh: Any = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None and self._fh is None:
            self._open(table.schema)
        if self.format == "parquet":
            self._writer.write_table(table)
        elif self.format == "csv":
            self._writer.write_table(table)
        else:
            lines = (json.dumps(row, ensure_ascii=False, default=str) for row in table.to_pylist())
            self._fh.write("".join(f"{line}\n" for line in lines).encode())
        self.rows += table.num_rows

    def _open(self, schema: pa.Schema) -> None:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        elif self.format == "csv":
            import pyarrow.csv as pcsv

            self._fh = open(self.tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
            self._writer = pcsv.CSVWriter(self._fh, schema)
        else:
            self._fh = open(self.tmp, "wb")  # noqa: SIM115

    def commit(self) -> None:
        """Close the file, make it durable and rename it into place."""
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        elif self.format == "parquet" and self.tmp.exists():
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
        if not self.tmp.exists():  # no rows at all: an empty file of the format
            self.tmp.write_bytes(b"")
        os.replace(self.tmp, self.path)
        self._writer = self._fh = None

    def abort(self) -> None:
        """Drop the temporary file (the step log keeps every decided row; `--resume` rewrites it)."""
        for closer in (self._writer, self._fh):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # already broken: the file goes anyway
                pass
        self.tmp.unlink(missing_ok=True)


class TeeSink:
    """A file and a memory copy (`maker.map(..., out=PATH)` returns the table it wrote)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def write(self, table: pa.Table) -> None:
        for sink in self.sinks:
            sink.write(table)

    def commit(self) -> None:
        for sink in self.sinks:
            sink.commit()

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()


__all__ = ["OUT_FORMATS", "VOTED_COLUMNS", "FileSink", "MemorySink", "TeeSink", "check_input_columns", "voted_table"]
