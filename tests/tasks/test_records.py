"""Records as a task: the table reader (CSV, JSONL, Parquet, folders, memory) and the map
task built on it (templates, operations, ground truth).  No Ray, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task
from maker.tasks.base import Oracle
from maker.tasks.records.map_task import MapTask, Template, unescape
from maker.tasks.records.source import SourceError, TableSource

import maker


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_cells_are_read_as_written(tmp_path: Path) -> None:
    src = TableSource(_csv(tmp_path / "r.csv", "zip,n,note\n01234,7,\n00001,NA,\"a, b\"\n"))
    assert src.columns == ("zip", "n", "note") and src.num_rows == 2
    t = src.rows(0, 2, ["zip", "n", "note"])
    assert t["zip"].to_pylist() == ["01234", "00001"]  # no guessed integer: the leading zeros stay
    assert t["n"].to_pylist() == ["7", "NA"] and t["note"].to_pylist() == ["", "a, b"]


def test_jsonl_parquet_and_folders_read_in_order(tmp_path: Path) -> None:
    (tmp_path / "j.jsonl").write_text("".join(json.dumps({"a": i, "b": f"x{i}"}) + "\n" for i in range(5)))
    assert TableSource(tmp_path / "j.jsonl").rows(3, 5, ["b"])["b"].to_pylist() == ["x3", "x4"]
    parts = tmp_path / "parts"
    parts.mkdir()
    for name in ["part-2.parquet", "part-0.parquet", "part-1.parquet"]:
        pq.write_table(pa.table({"v": [int(name[5]) * 10 + j for j in range(3)]}), parts / name)
    (parts / "_SUCCESS").write_text("")
    src = TableSource(parts)
    assert src.num_rows == 9
    assert [v for c in src.chunks(rows=2) for v in c["v"].to_pylist()] == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert src.rows(7, 9, ["v"])["v"].to_pylist() == [21, 22]
    assert src.rows(1, 4, ["v"])["v"].to_pylist() == [1, 2, 10]  # backwards: read again from the start


@pytest.mark.parametrize("name, why", [("r.txt", "unknown format"), ("missing.csv", "no such file")])
def test_unreadable_input_is_one_line(tmp_path: Path, name: str, why: str) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("a\n")
    with pytest.raises(SourceError, match=why):
        TableSource(tmp_path / name)


def test_template_fields_escapes_and_braces() -> None:
    t = Template(r"Copy it.\nProduct: {description} {{not a field}}\nweight:")
    assert t.fields == ("description",)
    assert t(("rake, 900 g",)) == "Copy it.\nProduct: rake, 900 g {not a field}\nweight:"
    assert unescape(r"a\\nb") == "a\\nb"
    for bad in ("Q: {}", "Q: {0}", "no field", "Q: {a"):
        with pytest.raises(ValueError):
            Template(bad)


def test_a_column_the_prompt_names_must_exist(tmp_path: Path) -> None:
    path = _csv(tmp_path / "r.csv", "q,a\n1,2\n")
    with pytest.raises(ValueError, match=r"the prompt names column 'question', which .* does not have \(columns: q, a\)"):
        get_task("map", input=str(path), prompt="Q: {question}")
    with pytest.raises(ValueError, match="--truth 'answer'"):
        get_task("map", input=str(path), prompt="Q: {q}", truth="answer")


def test_a_row_is_a_step_with_ground_truth(tmp_path: Path) -> None:
    path = _csv(tmp_path / "r.csv", "id,q,a\nr1,6*7,42\nr2,2+2,4\n")
    task = get_task("map", input=str(path), prompt="What is {q}?", key="integer", truth="a", id="id")
    assert isinstance(task, Oracle) and task.total_steps == 2 and task.spec.name == "map"
    step = task.step_after(0, "value = 42")
    assert step.premise == (("2+2",), "4")
    assert task.judge(step, " **4** ").key == "value = 4" and task.value("value = 4") == "4"
    assert task.truth(1) == "value = 4" and "value = 4" not in task.wrong_replies(step)
    assert task.is_solved(task.step_after(1, "value = 4"))
    untruthful = get_task("map", input=str(path), prompt="What is {q}?", key="integer")
    assert not isinstance(untruthful, Oracle)


def test_an_operation_gets_the_rows_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path / "r.csv", "id,record,other\n1,name: Ada; age: 33,x\n")
    ops = tmp_path / "ops.py"
    ops.write_text("import maker\n"
                   "AGE = maker.operation('age', prompt=lambda a: f'{a[0]}\\nage:', key='integer',\n"
                   "                      truth=lambda a: int(a[0].split('age: ')[1]))\n"
                   "TOTAL = maker.tool('total', lambda *x: 0)\n")
    task = get_task("map", input=str(path), op=f"{ops}:AGE", columns="record")
    assert isinstance(task, Oracle) and task.first_step().premise == (("name: Ada; age: 33",), None)
    assert task.reference_reply(task.first_step()) == "value = 33"
    with pytest.raises(ValueError, match="is a tool"):
        get_task("map", input=str(path), op=f"{ops}:TOTAL")
    with pytest.raises(ValueError, match="--key goes with --prompt"):
        get_task("map", input=str(path), op=f"{ops}:AGE", key="integer")
    default = get_task("map", input=str(path), op=f"{ops}:AGE", id="id")
    assert default.args_columns == ("record", "other")  # every column but --id and --truth


def test_in_memory_tables_of_every_kind(tmp_path: Path) -> None:
    from maker.mapping.api import as_arrow, map_task

    rows = [{"q": "a", "n": 1}, {"q": "b", "n": 2}]
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    for data in (rows, pa.Table.from_pylist(rows), pd.DataFrame(rows), pl.DataFrame(rows)):
        assert as_arrow(data).column_names == ["q", "n"]
    task = map_task(rows, prompt="{q} {n}")
    assert isinstance(task, MapTask) and task.prompt(task.first_step(), "completion") == "a 1"
    with pytest.raises(maker.UsageError, match="not int"):
        as_arrow(3)
