"""Records in: a CSV, JSONL or Parquet file, a folder of such parts, or a table in memory.

Why one reader: `maker map` votes one step per record, and a million records must never
sit in memory at once.  A `TableSource` hands the records out in order, a chunk at a time
(`chunks`), and reads a stretch of rows back on request (`rows`, cached, so an audit that
walks the rows in order reads the input once).  pyarrow does the reading.

* CSV: every column is read as text, exactly as written (``01234`` stays ``01234``, an
  empty cell stays empty): a guessed type would lose data.  Header row required.
* JSONL (``.jsonl``, ``.ndjson``, ``.json`` with one object per line): JSON's own types.
* Parquet (``.parquet``, ``.pq``): the file's own types.
* A folder: its files of one of these formats, in name order (hidden files, ``_SUCCESS``
  and the like are skipped); every part must have the same columns.

A file that cannot be read is a `SourceError` (a ValueError), one line naming it.

    >>> import pyarrow as pa
    >>> src = TableSource.from_table(pa.table({"a": ["x", "y", "z"]}))
    >>> src.num_rows, src.columns, src.rows(1, 3, ["a"])["a"].to_pylist()
    (3, ('a',), ['y', 'z'])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: Suffix -> format.
FORMATS = {".csv": "csv", ".jsonl": "json", ".ndjson": "json", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
#: Rows per chunk a reader yields (a Parquet row group may be split further).
CHUNK_ROWS = 8192
_JSON_BLOCK = 16 << 20  # bytes of JSON lines parsed at once


class SourceError(ValueError):
    """Records that cannot be read: one line naming the file and why."""


def format_of(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


class TableSource:
    """Records from files (`path`) or from an Arrow table in memory (`from_table`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.table: Any = None
        if not self.path.exists():
            raise SourceError(f"{path}: no such file or folder")
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
            kinds = {format_of(p) for p in files} - {None}
            if not kinds:
                raise SourceError(f"{path}: a folder with no .csv, .jsonl or .parquet parts")
            if len(kinds) > 1:
                raise SourceError(f"{path}: parts of several formats ({', '.join(sorted(kinds))}); keep one format per folder")
            self.files = tuple(p for p in files if format_of(p) is not None)
            self.format = kinds.pop()
        else:
            kind = format_of(self.path)
            if kind is None:
                raise SourceError(f"{path}: unknown format (name it .csv, .jsonl or .parquet)")
            self.files = (self.path,)
            self.format = kind
        self._init()

    @classmethod
    def from_table(cls, table: Any) -> TableSource:
        """Records from a pyarrow Table already in memory."""
        self = cls.__new__(cls)
        self.path, self.table, self.files, self.format = None, table, (), "memory"
        self._init()
        return self

    def _init(self) -> None:
        self._num_rows: int | None = self.table.num_rows if self.table is not None else None
        self._schema: Any = self.table.schema if self.table is not None else None
        self._cache: tuple[int, Any] | None = None  # (first row, table of rows)
        self._reader: tuple[int, Iterator[Any]] | None = None  # (next row, chunk iterator)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = state["_reader"] = None  # caches are rebuilt where the source is read
        return state

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"a table in memory ({self.num_rows:,} rows)"

    # -- shape ------------------------------------------------------------------------
    @property
    def schema(self) -> Any:
        """The records' Arrow schema (CSV: every column text)."""
        if self._schema is None:
            self._schema = self._file_schema(self.files[0])
        return self._schema

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    @property
    def num_rows(self) -> int:
        """How many records (Parquet: from the footers; CSV and JSONL: counted once)."""
        if self._num_rows is None:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._num_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
            else:
                self._num_rows = sum(chunk.num_rows for chunk in self.chunks([self.columns[0]]))
        return self._num_rows

    # -- reading ----------------------------------------------------------------------
    def chunks(self, columns: Sequence[str] | None = None, rows: int = CHUNK_ROWS) -> Iterator[Any]:
        """The records in order as pyarrow Tables of at most `rows` rows (only `columns`)."""
        every = self.columns  # the schema first: JSON parts are all read with it
        names = list(every if columns is None else columns)
        if self.table is not None:
            table = self.table.select(names)
            for start in range(0, table.num_rows, rows):
                yield table.slice(start, rows)
            return
        for file in self.files:
            for chunk in self._file_chunks(file, names, rows):
                if chunk.num_rows:
                    yield chunk

    def rows(self, start: int, stop: int, columns: Sequence[str]) -> Any:
        """Rows [start, stop) (only `columns`) as a pyarrow Table.  Reads forward from the
        last position when it can, so walking the rows in order reads the input once."""
        import pyarrow as pa

        names = list(columns)
        pieces = []
        at = start
        while at < stop:
            first, table = self._block(at, names)
            if table is None:
                break
            take = table.slice(at - first, stop - at)
            pieces.append(take)
            at += take.num_rows
        if not pieces:
            return pa.table({n: pa.array([], self.schema.field(n).type) for n in names})
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    def _block(self, row: int, names: list[str]) -> tuple[int, Any]:
        """(first row, table) of the cached chunk that holds `row`, reading on to it."""
        cache = self._cache
        if cache is not None and cache[0] <= row < cache[0] + cache[1].num_rows and set(names) <= set(cache[1].column_names):
            return cache
        reader = self._reader
        if reader is None or reader[0] > row or (cache is not None and not set(names) <= set(cache[1].column_names)):
            reader = (0, self.chunks(self.columns))  # start over: every column, so one pass serves every caller
        at, chunks = reader
        for chunk in chunks:
            first, at = at, at + chunk.num_rows
            if row < at:
                self._reader = (at, chunks)
                self._cache = (first, chunk)
                return self._cache
        self._reader = None
        return row, None

    def _file_schema(self, file: Path) -> Any:
        import pyarrow as pa

        for chunk in self._file_chunks(file, None, 64):
            return chunk.schema
        if self.format == "csv":  # a header and no rows
            return pa.schema([(n, pa.string()) for n in _csv_header(file)])
        raise SourceError(f"{file}: no records")

    def _file_chunks(self, file: Path, names: list[str] | None, rows: int) -> Iterator[Any]:
        """A file's records in chunks; SourceError (one line) when it does not read."""
        import pyarrow as pa

        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                with pq.ParquetFile(file) as parquet:
                    for batch in parquet.iter_batches(batch_size=rows, columns=names):
                        yield pa.Table.from_batches([batch])
            elif self.format == "csv":
                yield from _csv_chunks(file, names, rows)
            else:
                yield from _json_chunks(file, names, rows, self._schema)
        except SourceError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{file}: cannot read it as {self.format.upper()}: {' '.join(str(exc).split())[:200]}") from None
        except KeyError as exc:
            raise SourceError(f"{file}: has no column {exc}") from None


def _csv_header(file: Path) -> list[str]:
    import pyarrow.csv as pcsv

    with pcsv.open_csv(file) as reader:
        return list(reader.schema.names)


def _csv_chunks(file: Path, names: list[str] | None, rows: int) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    header = _csv_header(file)
    if len(set(header)) != len(header):
        raise SourceError(f"{file}: the header names a column twice")
    wanted = header if names is None else names
    missing = [n for n in wanted if n not in header]
    if missing:
        raise SourceError(f"{file}: has no column {missing[0]!r} (columns: {', '.join(header)})")
    convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in header}, include_columns=wanted,
                                  strings_can_be_null=False, quoted_strings_can_be_null=False)
    with pcsv.open_csv(file, read_options=pcsv.ReadOptions(block_size=1 << 22), convert_options=convert) as reader:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            for start in range(0, table.num_rows, rows):
                yield table.slice(start, rows)


def _json_chunks(file: Path, names: list[str] | None, rows: int, schema: Any) -> Iterator[Any]:
    """JSON lines, parsed a block of whole lines at a time; every block is read with the
    first block's schema, so a column never changes type half-way (a field the first block
    lacks is refused by name)."""
    import io

    import pyarrow.json as pjson

    with open(file, "rb") as fh:
        tail = b""
        while True:
            data = fh.read(_JSON_BLOCK)
            block = tail + data
            if not data:
                cut = len(block)
            else:
                cut = block.rfind(b"\n") + 1
            tail = block[cut:]
            body = block[:cut]
            if body.strip():
                parse = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error") if schema is not None \
                    else None
                try:
                    table = pjson.read_json(io.BytesIO(body), parse_options=parse) if parse else pjson.read_json(io.BytesIO(body))
                except Exception as exc:
                    raise SourceError(f"{file}: cannot read it as JSON lines: {' '.join(str(exc).split())[:200]}") from None
                if schema is None:
                    schema = table.schema
                if names is not None:
                    table = table.select(names)
                for start in range(0, table.num_rows, rows):
                    yield table.slice(start, rows)
            if not data:
                return


__all__ = ["CHUNK_ROWS", "FORMATS", "SourceError", "TableSource", "format_of"]
