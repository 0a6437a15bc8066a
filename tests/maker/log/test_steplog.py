"""The step log: atomic parts, refuses to overwrite, rejects foreign or damaged files."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maker.errors import StepLogError, UsageError
from maker.log.steplog import (
    SCHEMA,
    SCHEMA_VERSION,
    StepLogWriter,
    count_faults,
    decisions,
    iter_tables,
    last_decision,
    open_log,
    read_table,
)

RUN = {"task": "hanoi", "task_options": {"disks": 3}, "maker_version": "test", "voting": {"k": 2}}


def write_two_parts(path):
    w = StepLogWriter(path, RUN)
    w.append({"step": [0, 0], "sample": [0, 1], "answer": ["a", "a"], "counted": [True, True]}, {"step": [0], "answer": ["a"]})
    w.append({"step": [1], "sample": [0], "answer": ["b"], "counted": [True]}, {"step": [1], "answer": ["b"]})
    return w


def test_round_trip_and_metadata(tmp_path) -> None:
    log = tmp_path / "run.parquet"
    write_two_parts(log)
    info = open_log(log)
    assert info.run["task"] == "hanoi" and len(info.parts) == 2
    table = read_table(info)
    assert table.schema.remove_metadata() == SCHEMA
    assert table.num_rows == 5
    assert last_decision(info) == (1, "b")
    assert decisions(log) == decisions(info) == [(0, "a"), (1, "b")]
    meta = pq.read_schema(info.parts[0]).metadata
    assert json.loads(meta[b"maker.run"])["task"] == "hanoi"
    assert meta[b"maker.schema_version"] == str(SCHEMA_VERSION).encode()


def test_a_part_from_schema_1_reads_with_faults_null(tmp_path) -> None:
    """Logs written before the `faults` column still open, resume and report."""
    log = tmp_path / "old.parquet"
    write_two_parts(log)
    part = open_log(log).parts[0]
    old = pq.read_table(part).drop_columns(["faults"])
    meta = dict(old.schema.metadata)
    meta[b"maker.schema_version"] = b"1"
    pq.write_table(old.replace_schema_metadata(meta), part)
    info = open_log(log)
    table = read_table(info, ["step", "faults"])
    assert table.num_rows == 5 and table["faults"].null_count == 5
    assert [t.schema.names for t in iter_tables(info)] == [SCHEMA.names, SCHEMA.names]


def test_faults_are_counted_by_kind() -> None:
    counts = count_faults(["timeout,rate_limited", None, "", "timeout"], {})
    assert counts == {"timeout": 2, "rate_limited": 1}


def test_refuses_to_overwrite_and_resume_continues_numbering(tmp_path) -> None:
    log = tmp_path / "run.parquet"
    write_two_parts(log)
    with pytest.raises(UsageError, match="already exists"):
        StepLogWriter(log, RUN)
    w = StepLogWriter(log, RUN, resume=True)
    w.append({"step": [2], "sample": [0]}, {})
    assert sorted(p.name for p in log.iterdir()) == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]


def test_readers_outside_maker_see_one_table(tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    log = tmp_path / "run.parquet"
    write_two_parts(log)
    assert len(pd.read_parquet(log)) == 5
    assert duckdb.sql(f"SELECT count(*) FROM '{log}/*.parquet' WHERE kind = 'decision'").fetchall()[0][0] == 2


def test_the_readmes_pandas_line_reads_the_columns_as_its_table_says(tmp_path) -> None:
    """Decision and event rows hold nulls in the sample columns: with numpy's dtypes pandas
    reads `wasted`/`counted` as object and `sample` as float64; the README's line asks for
    pandas' nullable dtypes, and then `(~df.wasted).sum()` counts rows that are not wasted."""
    pd = pytest.importorskip("pandas")
    log = tmp_path / "run.parquet"
    w = StepLogWriter(log, RUN)
    w.append({"step": [0, 0, 0], "sample": [0, 1, 2], "answer": ["a", "a", "b"], "counted": [True, True, False],
              "wasted": [False, False, True]}, {"step": [0], "answer": ["a"]})
    df = pd.read_parquet(log, dtype_backend="numpy_nullable")  # the README's line
    assert str(df.wasted.dtype) == "boolean" and str(df.counted.dtype) == "boolean"
    assert str(df["sample"].dtype) == "Int32" and str(df.step.dtype) == "Int64"
    assert int((~df.wasted).sum()) == 2 and int(df.counted.sum()) == 2
    samples = df[df.kind == "sample"]
    assert int((~samples.wasted).sum()) == 2


def test_foreign_parquet_is_rejected(tmp_path) -> None:
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(StepLogError, match="not a maker step log"):
        open_log(other)


def test_newer_schema_is_rejected(tmp_path) -> None:
    part = tmp_path / "new.parquet"
    table = pa.table({"kind": ["sample"]}).replace_schema_metadata(
        {b"maker.schema_version": b"99", b"maker.run": b"{}"}
    )
    pq.write_table(table, part)
    with pytest.raises(StepLogError, match="newer"):
        open_log(part)


def test_truncated_part_fails_and_salvage_reads_before_it(tmp_path) -> None:
    log = tmp_path / "run.parquet"
    write_two_parts(log)
    second = log / "part-000001.parquet"
    second.write_bytes(second.read_bytes()[:-20])
    with pytest.raises(StepLogError, match="damaged"):
        open_log(log)
    info = open_log(log, salvage=True)
    assert len(info.parts) == 1 and info.damaged == (second,)
    assert last_decision(info) == (0, "a")


def test_empty_and_missing(tmp_path) -> None:
    (tmp_path / "empty.parquet").mkdir()
    with pytest.raises(StepLogError, match="empty"):
        open_log(tmp_path / "empty.parquet")
    with pytest.raises(StepLogError, match="no such"):
        open_log(tmp_path / "missing.parquet")
    (tmp_path / "zero.parquet").write_bytes(b"")
    with pytest.raises(StepLogError):
        open_log(tmp_path / "zero.parquet")


def test_unwritable_path_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StepLogError, match="cannot write"):
        StepLogWriter(blocker / "run.parquet", RUN)
