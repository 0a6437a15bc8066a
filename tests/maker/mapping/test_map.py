"""`maker map` and `maker.map`: records in, voted answers out, streamed, on the session's Ray.

Fakes only at the model boundary: the simulator `sim:P` (answers from the truth column) and
`FunctionClient` (a plain function as the model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from maker.cluster import FunctionClient

import maker
from maker.log.steplog import open_log, read_table
from maker.mapping.scheduler import MapConfig

pytestmark = pytest.mark.ray
PROMPT = r"Copy the weight in grams.\nProduct: {description}\nweight:"


def _rows(n: int) -> list[dict]:
    return [{"id": f"P{i:03d}", "description": f"Lumo rake {i}, {100 + 7 * i} g", "weight": str(100 + 7 * i)}
            for i in range(n)]


def _csv(path: Path, rows: list[dict]) -> Path:
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.Table.from_pylist(rows), path)
    return path


def _weight(prompt, temperature, seed) -> str:
    """A model that reads the weight out of the last 'Product:' line (completion prompts)."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return " " + text.rsplit("Product: ", 1)[1].split(", ")[1].split(" g")[0]


def test_map_returns_the_table_with_voted_answers_in_row_order(ray_address, tmp_path: Path) -> None:
    rows = _rows(40)
    out = maker.map(rows, ["sim:0.9"], maker.VotingConfig(k=3), prompt=PROMPT, key="integer", truth="weight", id="id",
                    out=tmp_path / "w.parquet", config=MapConfig(chunk_rows=7, batch_rows=3))
    assert out.column_names == ["id", "description", "weight", "answer", "votes", "samples", "red_flags", "decided",
                                "correct"]
    assert out["id"].to_pylist() == [r["id"] for r in rows]  # row order kept across chunks and batches
    right = [a == w for a, w in zip(out["answer"].to_pylist(), out["weight"].to_pylist())]
    assert out["correct"].to_pylist() == right and sum(right) >= 38  # the clean value ('338', not 'value = 338')
    assert all(out["decided"].to_pylist())
    assert all(v >= 3 for v in out["votes"].to_pylist()) and all(s >= 3 for s in out["samples"].to_pylist())
    assert pq.read_table(tmp_path / "w.parquet").equals(out.replace_schema_metadata(None))
    summary = maker.mapping.api.result_of(out)
    assert summary["simulated"] is True and summary["extra"]["rows_undecided"] == 0
    assert summary["errors"] == right.count(False)


def test_a_function_model_and_a_dataframe(ray_address) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_rows(12))
    out = maker.map(frame, [FunctionClient(_weight)], maker.VotingConfig(k=2, prompt_style="completion"),
                    prompt=PROMPT, key="integer")
    assert "correct" not in out.column_names  # no ground truth: nothing to grade against
    assert out["answer"].to_pylist() == list(frame["weight"])
    summary = maker.mapping.api.result_of(out)
    assert summary["errors"] is None
    assert summary["extra"]["ray_calls"] == 2  # a model's rows go 8 to a call, so decided rows reach the log soon


def test_cli_writes_csv_and_jsonl_and_the_log_verifies(ray_address, tmp_path: Path, maker_cli) -> None:
    src = _csv(tmp_path / "rows.csv", _rows(30))
    for suffix in ("csv", "jsonl"):
        out, log = tmp_path / f"out.{suffix}", tmp_path / f"log-{suffix}.parquet"
        r = maker_cli("map", str(src), "--prompt", PROMPT, "--key", "integer", "--truth", "weight", "--id", "id",
                      "--model", "sim:0.9", "--k", "3", "--out", str(out), "--log", str(log), "--quiet",
                      "--address", ray_address)
        assert r.returncode == 0, r.stderr
        assert "30 rows decided, 0 undecided, 0 wrong against --truth weight [simulated model]" in r.stdout
        assert "out " + str(out) in r.stdout
        if suffix == "csv":
            back = pa.csv.read_csv(out)
            assert back.column_names[:3] == ["id", "description", "weight"] and back.num_rows == 30
        else:
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            assert [row["answer"] for row in lines] == [row["weight"] for row in _rows(30)]
        v = maker_cli("replay", str(log), "--verify")
        assert v.returncode == 0 and "30 steps verified, solved=True [simulated model]" in v.stdout
    table = read_table(open_log(tmp_path / "log-csv.parquet"), ["step", "detail"], kind="decision")
    assert sorted(table["step"].to_pylist()) == list(range(30)) and "row 0" in table["detail"].to_pylist()
    assert maker_cli("report", str(tmp_path / "log-csv.parquet"), "--out", str(tmp_path / "rep")).returncode == 0
    assert maker_cli("tune", str(tmp_path / "log-csv.parquet")).returncode == 0


def test_bad_input_is_one_line_and_nothing_is_overwritten(ray_address, tmp_path: Path, maker_cli) -> None:
    src = _csv(tmp_path / "rows.csv", _rows(5))
    out = tmp_path / "out.parquet"
    out.write_text("precious")
    base = ("map", str(src), "--model", "sim:0.9", "--address", ray_address, "--quiet")
    r = maker_cli(*base, "--prompt", "Product: {product}", "--out", str(tmp_path / "new.parquet"))
    assert r.returncode == 2 and "the prompt names column 'product'" in r.stderr and len(r.stderr.splitlines()) == 1
    r = maker_cli(*base, "--prompt", PROMPT, "--truth", "weight", "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr and out.read_text() == "precious"
    r = maker_cli(*base, "--prompt", PROMPT, "--truth", "weight", "--out", str(src), "--overwrite")
    assert r.returncode == 2 and "is the input" in r.stderr
    r = maker_cli(*base, "--prompt", PROMPT, "--out", str(tmp_path / "o.txt"))
    assert r.returncode == 2 and ".parquet, .csv or .jsonl" in r.stderr
    r = maker_cli(*base, "--prompt", PROMPT, "--out", str(tmp_path / "o.parquet"))  # sim: without --truth
    assert r.returncode == 2 and "the simulator needs ground truth" in r.stderr
    r = maker_cli(*base, "--prompt", PROMPT, "--key", "integer", "--truth", "weight", "--out", str(out), "--overwrite",
                  "--log", str(tmp_path / "log"))
    assert r.returncode == 0 and pq.read_table(out).num_rows == 5  # replaced only once complete


def test_an_undecided_row_is_written_and_the_job_goes_on(ray_address, tmp_path: Path) -> None:
    def split(prompt, temperature, seed) -> str:  # row 'P002' never settles: its votes alternate
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        if "rake 2," in text:
            return " 1" if seed % 2 else " 2"
        return _weight(prompt, temperature, seed)

    out = maker.map(_rows(6), [FunctionClient(split)],
                    maker.VotingConfig(k=3, prompt_style="completion", max_samples_per_step=6),
                    prompt=PROMPT, key="integer", log=tmp_path / "log.parquet")
    assert out["decided"].to_pylist() == [True, True, False, True, True, True]
    assert out["answer"][2].as_py() is None and out["samples"][2].as_py() == 6
    summary = maker.mapping.api.result_of(out)
    assert summary["solved"] is False and summary["extra"]["first_undecided_row"] == 2
    assert (tmp_path / "log.input.parquet").exists()  # the in-memory rows, kept for replay and --resume


def test_a_dead_endpoint_stops_the_job_and_leaves_no_output(ray_address, tmp_path: Path) -> None:
    def down(prompt, temperature, seed) -> str:
        raise ConnectionError("refused")

    with pytest.raises(maker.MakerError, match="calls in a row failed"):
        maker.map(_rows(4), [FunctionClient(down)], maker.VotingConfig(k=2, max_failed_calls=2),
                  prompt=PROMPT, key="integer", out=tmp_path / "o.parquet")
    assert list(tmp_path.iterdir()) == []  # no half-written table, visible or hidden


def test_resume_takes_decided_rows_from_the_log(ray_address, tmp_path: Path) -> None:
    src = _csv(tmp_path / "rows.csv", _rows(60))
    log = tmp_path / "log.parquet"
    kwargs = dict(prompt=PROMPT, key="integer", truth="weight", id="id")
    config = MapConfig(chunk_rows=10, batch_rows=5, flush_rows=10)
    whole = maker.map(src, ["sim:0.95"], maker.VotingConfig(k=3), log=log, config=config, **kwargs)
    parts = sorted(log.glob("part-*.parquet"))
    assert len(parts) > 3
    cut = tmp_path / "cut.parquet"  # a job killed after its first parts were written
    shutil.copytree(log, cut)
    for part in sorted(cut.glob("part-*.parquet"))[2:]:
        part.unlink()
    kept = set(read_table(open_log(cut), ["step"], kind="decision")["step"].to_pylist())
    again = maker.map(src, ["sim:0.95"], maker.VotingConfig(k=3), log=cut, resume=True, config=config, **kwargs)
    assert again.select(whole.column_names).replace_schema_metadata(None).equals(whole.replace_schema_metadata(None))
    written = [pq.read_table(p, columns=["kind", "step"]) for p in sorted(cut.glob("part-*.parquet"))[2:]]
    new_steps = {s for t in written for k, s in zip(t["kind"].to_pylist(), t["step"].to_pylist()) if k == "sample"}
    assert kept and new_steps and not new_steps & kept  # a row the log decided is never voted again
    assert sorted(read_table(open_log(cut), ["step"], kind="decision")["step"].to_pylist()) == list(range(60))
    summary = maker.mapping.api.result_of(again)
    assert summary["extra"]["rows_from_log"] == len(kept) and summary["resumed_from_step"] == len(kept)
    verified = maker.verify_log(cut)
    assert verified.valid and verified.solved and verified.steps == 60
    small = MapConfig(chunk_rows=4, batch_rows=5, flush_rows=10)  # 15 chunks, every one decided in the log
    done = maker.map(src, ["sim:0.95"], maker.VotingConfig(k=3), log=log, resume=True, config=small, **kwargs)
    assert done.select(whole.column_names).replace_schema_metadata(None).equals(whole.replace_schema_metadata(None))
    assert maker.mapping.api.result_of(done)["extra"]["rows_from_log"] == 60


def test_k_auto_and_estimate_on_a_map_job(ray_address, tmp_path: Path, maker_cli) -> None:
    src = _csv(tmp_path / "rows.csv", _rows(50))
    r = maker_cli("map", str(src), "--prompt", PROMPT, "--key", "integer", "--truth", "weight", "--model", "sim:0.9",
                  "--k", "auto", "--estimate-samples", "20", "--out", str(tmp_path / "o.parquet"), "--quiet",
                  "--log", str(tmp_path / "log"), "--address", ray_address, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["k"] >= 2 and result["extra"]["estimate"]["measured_steps"] == 20
    e = maker_cli("estimate", "map", "--input", str(src), "--prompt", PROMPT, "--key", "integer", "--truth", "weight",
                  "--model", "sim:0.9", "--samples", "20", "--address", ray_address)
    assert e.returncode in (0, 1) and "p " in e.stdout and "50 steps" in e.stdout
    r = maker_cli("map", str(src), "--prompt", PROMPT, "--key", "integer", "--model", "sim:0.9", "--k", "auto",
                  "--out", str(tmp_path / "o2.parquet"), "--address", ray_address)
    assert r.returncode == 2 and "give --truth COLUMN" in r.stderr


def test_an_operation_per_row(ray_address, tmp_path: Path, maker_cli) -> None:
    root = Path(__file__).resolve().parents[3]
    records = [{"record": r} for r in __import__("runpy").run_path(str(root / "examples/records.py"))["make_records"](8)]
    src = _csv(tmp_path / "records.csv", records)
    r = maker_cli("map", str(src), "--op", f"{root}/examples/records.py:AGE", "--model", "sim:0.9", "--k", "2",
                  "--out", str(tmp_path / "ages.parquet"), "--quiet", "--log", str(tmp_path / "log"),
                  "--address", ray_address)
    assert r.returncode == 0, r.stderr
    ages = pq.read_table(tmp_path / "ages.parquet")
    assert ages["answer"].to_pylist() == [rec["record"].split("age: ")[1].split(";")[0] for rec in records]


def test_an_agent_cannot_start_a_map_job_nor_verify_one_that_names_code() -> None:
    from maker.agents.mcp_server import ToolError, _refuse_imports
    from maker.agents.runs import NOT_RUNNABLE

    assert "map" in NOT_RUNNABLE  # `maker map` writes a table; its --op names code to import
    with pytest.raises(ToolError, match="user operation"):
        _refuse_imports({"task": "map", "task_options": {"input": "/x.csv", "op": "evil.py:OP"}})
    _refuse_imports({"task": "map", "task_options": {"input": "/x.csv", "prompt": "{q}"}})  # a template: fine


def test_rows_in_memory_are_kept_for_the_log_and_checked_on_resume(tmp_path: Path) -> None:
    from maker.mapping.api import map_task

    log = tmp_path / "log.parquet"
    map_task(_rows(3), log=log, prompt=PROMPT)
    assert pq.read_table(tmp_path / "log.input.parquet").num_rows == 3
    with pytest.raises(maker.UsageError, match="differ from the ones the job started with"):
        map_task(_rows(4), log=log, resume=True, prompt=PROMPT)
    with pytest.raises(maker.UsageError, match="already exists"):
        map_task(_rows(3), log=log, prompt=PROMPT)
    assert map_task(_rows(3), log=log, resume=True, prompt=PROMPT).total_steps == 3
