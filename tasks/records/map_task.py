"""A table of records as a task: one voted step per record (`maker map`).

Why a task: a row is voted exactly like any step -- k samples at once, red flags, ahead-by-k
-- by the one voting engine, and its log is a step log like any run's, which `replay
--verify`, `report`, `tune` and `--resume` read.  Step i is row i of the input (0-based, in
file order); its premise is ``(args, truth)``: the row's cells the prompt needs, as text,
and its ground truth (None without a truth column).  Rows are independent: the step after
row i is row i+1 whatever row i decided, so the chain audit of `replay --verify` walks a map
log as it walks a chain.

What a row's step is:

* a prompt template (``prompt=``): Python format fields name columns,
  ``"Product: {description}\\nweight:"``; ``{{`` and ``}}`` are literal braces, and ``\\n``,
  ``\\t`` typed as two characters (as on a command line) are a newline and a tab.  The reply
  is read by the key normaliser ``key=`` (`maker.tasks.keys`: integer, decimal, text,
  choice:a,b, json, literal), or
* a voted operation (``op="pkg.module:attr"`` or ``"path/to/file.py:attr"``, a
  `maker.operation`): its prompt, parse, key, valid rule and ground truth apply; it is
  given the row's ``columns`` (default: every column but the id and truth columns) as text.

Ground truth: ``truth="COLUMN"`` (the column's cells, read by the key), else the operation's
own ``truth``; with neither the task has none (`sim:` cannot run it).  A cell that is null is
empty text in a prompt; a truth cell that is null or empty is refused when that row is
graded.  Every failure to build is a ValueError, one line naming the column or reference.

    >>> import pyarrow as pa
    >>> from maker.tasks.records.source import TableSource
    >>> t = MapTask(TableSource.from_table(pa.table({"q": ["6*7"], "a": ["42"]})), prompt="What is {q}?",
    ...             key="integer", truth="a")
    >>> step = t.first_step(); step.premise, t.reference_reply(step), t.value(t.judge(step, " 42.").key)
    ((('6*7',), '42'), 'value = 42', '42')
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base import Prompt, PromptStyle, StepInput, TaskOption, TaskSpec, Verdict
from .source import SourceError, TableSource

#: The premise of the step after the last row: the table is done.
END = "end"


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` typed as two characters become a newline, a tab, a backslash."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Template:
    """A prompt template over a row's columns; called with the cells of `fields`, in order."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the prompt template is empty")
        self.text = unescape(text)
        try:
            self.parts = [(lit, name, spec or "", conv) for lit, name, spec, conv in string.Formatter().parse(self.text)]
        except ValueError as exc:
            raise ValueError(f"the prompt template does not read: {exc} (write a literal brace as {{{{ or }}}})") from None
        names = [name for _, name, _, _ in self.parts if name is not None]
        if any(not n or n.isdigit() for n in names):
            raise ValueError("the prompt template has a field without a column name ({} or {0}); name a column: {description}")
        if not names:
            raise ValueError("the prompt template names no column: write {COLUMN} where a row's value goes")
        self.fields = tuple(dict.fromkeys(names))

    def __call__(self, args: tuple[str, ...]) -> str:
        values = dict(zip(self.fields, args))
        out = []
        for literal, name, spec, conv in self.parts:
            out.append(literal)
            if name is not None:
                value: Any = values[name]
                if conv == "r":
                    value = repr(value)
                out.append(format(value, spec) if spec else value)
        return "".join(out)


def cell_text(value: Any) -> str:
    """A cell as prompt text: None is empty, a list or mapping is JSON, anything else str()."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def load_op(ref: str) -> Any:
    """The voted operation ``pkg.module:attr`` or ``path/to/file.py:attr`` names (ValueError if not one)."""
    from ..plugins import PluginError, load_ref, split_ref

    try:
        _, attr = split_ref(ref)
        op = load_ref(ref)
    except PluginError as exc:
        raise ValueError(f"--op {ref}: {exc}") from None
    if getattr(op, "is_tool", False):
        raise ValueError(f"--op {ref}: {attr} is a tool (run, never voted); a row needs a voted maker.operation")
    if not all(callable(getattr(op, m, None)) for m in ("prompt", "judge")) or not getattr(op, "fields", None):
        raise ValueError(f"--op {ref}: {attr} is a {type(op).__name__}, not a maker.operation")
    return op


def op_reference(op: Any) -> str | None:
    """``module:attr`` (or ``/abs/file.py:attr``) under which `op` can be imported again, or None."""
    import sys

    fn = getattr(op, "prompt_fn", None) or getattr(op, "fn", None)
    name = getattr(fn, "__module__", None)
    module = sys.modules.get(name or "")
    if module is None:
        return None
    attr = next((a for a, v in vars(module).items() if v is op), None)
    if attr is None:
        return None
    file = getattr(module, "__file__", None)
    if name.startswith("_maker_user_") or name == "__main__":
        return f"{Path(file).resolve()}:{attr}" if file else None
    return f"{name}:{attr}"


class MapTask:
    """Rows of a `TableSource` as independent voted steps (see the module docstring)."""

    name = "map"

    def __init__(self, source: TableSource, *, prompt: str | None = None, op: Any = None, key: str | None = None,
                 truth: str | None = None, id: str | None = None, columns: Sequence[str] | str | None = None,
                 stop: str | None = None, spec: TaskSpec | None = None) -> None:
        from ..plans.user_ops import UserOp

        if (prompt is None) == (op is None):
            raise ValueError("give a row's step as a prompt template (--prompt) or a voted operation (--op), one of them")
        self.source = source
        have = source.columns
        for what, name in (("--truth", truth), ("--id", id)):
            if name is not None and name not in have:
                raise ValueError(f"{what} {name!r}: {source.describe()} has no such column (columns: {', '.join(have)})")
        if prompt is not None:
            if columns:
                raise ValueError("--columns goes with --op; a prompt template names its own columns")
            template = Template(prompt)
            self.op = UserOp("row", prompt=template, key=key or "text", summary="a prompt template")
            self.args_columns = template.fields
            self.template: str | None = template.text
            where = "the prompt names column"
        else:
            if key is not None:
                raise ValueError("--key goes with --prompt; an --op reads replies with its own key")
            self.op = load_op(op) if isinstance(op, str) else op
            if isinstance(columns, str):
                columns = [c.strip() for c in columns.split(",") if c.strip()]
            self.args_columns = tuple(columns) if columns else tuple(c for c in have if c not in (truth, id))
            self.template = None
            where = "--columns names column"
        for name in self.args_columns:
            if name not in have:
                raise ValueError(f"{where} {name!r}, which {source.describe()} does not have (columns: {', '.join(have)})")
        self.truth_column = truth
        self.id_column = id
        self.field = self.op.fields[0]
        self.stop = (unescape(stop),) if stop else ()
        self.spec = spec or TaskSpec("map", {})
        self._needed = list(dict.fromkeys([*self.args_columns, *([truth] if truth else [])]))  # a column named twice is read once

    # -- the table ------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.source.num_rows

    def describe(self) -> str:
        how = "prompt template" if self.template is not None else f"op {getattr(self.op, 'name', '?')}"
        return f"map {self.source.describe()} ({how}, {self.total_steps:,} rows)"

    def label(self, index: int) -> str:
        """How a decision row names its step (the log's `detail`)."""
        return f"row {index}"

    def premises(self, first: int, table: Any) -> list[StepInput]:
        """The steps of rows first.. of `table` (the input's rows in order, any columns)."""
        args = [[cell_text(v) for v in table[c].to_pylist()] for c in self.args_columns]
        n = table.num_rows
        if self.truth_column is None:
            truths: list[str | None] = [None] * n
        else:
            truths = [None if v is None or cell_text(v).strip() == "" else cell_text(v)
                      for v in table[self.truth_column].to_pylist()]
        rows = list(zip(*args)) if args else [()] * n
        return [StepInput(first + i, (row, truth)) for i, (row, truth) in enumerate(zip(rows, truths))]

    def needed_columns(self) -> list[str]:
        """The input columns a step's premise is made of."""
        return list(self._needed)

    def step_input(self, index: int) -> StepInput:
        """Row `index` as a step (reads the input: in order, it is read once)."""
        if not 0 <= index < self.total_steps:
            return StepInput(index, (END, None))
        return self.premises(index, self.source.rows(index, index + 1, self._needed))[0]

    def value(self, key: str | None) -> str | None:
        """The answer a decided key stands for (``value = 42`` -> ``42``)."""
        if key is None:
            return None
        head = f"{self.field} = "
        return key[len(head):] if key.startswith(head) else key

    # -- Task ---------------------------------------------------------------------------
    def first_step(self) -> StepInput:
        return self.step_input(0)

    def prompt(self, step: StepInput, style: PromptStyle = "chat") -> Prompt:
        return self.op.prompt(step.premise[0], style)

    def judge(self, step: StepInput, reply: str) -> Verdict:
        args, _ = step.premise
        if args == END:
            return Verdict(None, "rule_breaking", "the table is already done")
        return self.op.judge(args, reply)

    def step_after(self, index: int, key: str) -> StepInput:
        return self.step_input(index + 1)

    def is_solved(self, step: StepInput) -> bool:
        return step.index == self.total_steps


class OracleMapTask(MapTask):
    """A map job with ground truth: a truth column, or an operation that has its own."""

    def _right(self, step: StepInput) -> Any:
        args, truth = step.premise
        if self.truth_column is None:
            return self.op.truth(args)
        if truth is None:
            raise ValueError(f"row {step.index}: no ground truth (the --truth column {self.truth_column!r} is empty there)")
        return truth

    def truth(self, index: int) -> str:
        return self.reference_reply(self.step_input(index))

    def reference_reply(self, step: StepInput) -> str:
        args, _ = step.premise
        if self.truth_column is None:
            return self.op.reference(args)
        right = self._right(step)
        key = self.op.normalise(right) if hasattr(self.op, "normalise") else None
        if key is None:
            verdict = self.op.judge(args, right)
            if verdict.key is None:
                raise ValueError(f"row {step.index}: the truth {right!r} is not a valid answer ({verdict.detail})")
            return verdict.key
        return f"{self.field} = {key}"

    def wrong_replies(self, step: StepInput) -> list[str]:
        args, _ = step.premise
        if self.truth_column is None:
            return self.op.wrong(args)
        right = self._right(step)
        wrong_fn = getattr(self.op, "wrong_fn", None)
        if wrong_fn is not None:
            candidates = [str(c) for c in wrong_fn(args, right)]
        else:
            try:
                n = int(right)
                candidates = [str(n + 1), str(n - 1), str(n + 10)]
            except ValueError:
                candidates = [f"{right} (not)", f"not {right}"]
        good = self.reference_reply(step)
        keys = [self.op.judge(args, c).key for c in candidates]
        return list(dict.fromkeys(k for k in keys if k is not None and k != good))

    def broken_reply(self, step: StepInput, kind: str) -> str:
        return ""


def map_job(input: str | None = None, prompt: str | None = None, op: Any = None, key: str | None = None,
            truth: str | None = None, id: str | None = None, columns: str | None = None,
            stop: str | None = None) -> MapTask:
    """The map task the options name (what `maker map`, `maker estimate map` and a replayed log build)."""
    if not input:
        raise ValueError("map needs --input: a CSV, JSONL or Parquet file, or a folder of parts")
    try:
        source = TableSource(input)
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    ref = op if isinstance(op, str) or op is None else op_reference(op)
    options = {"input": str(source.path), "prompt": prompt, "op": ref, "key": key, "truth": truth, "id": id,
               "columns": columns, "stop": stop}
    return make_map_task(source, TaskSpec("map", {k: v for k, v in options.items() if v is not None}),
                         prompt=prompt, op=op, key=key, truth=truth, id=id, columns=columns, stop=stop)


def make_map_task(source: TableSource, spec: TaskSpec | None = None, **kwargs: Any) -> MapTask:
    """A `MapTask`, or an `OracleMapTask` when it has ground truth (a truth column, or an op with truth)."""
    op = kwargs.get("op")
    if isinstance(op, str):
        kwargs["op"] = load_op(op)
    has_truth = kwargs.get("truth") is not None or bool(getattr(kwargs.get("op"), "has_truth", False))
    return (OracleMapTask if has_truth else MapTask)(source, spec=spec, **kwargs)


map_job.summary = "one voted step per record of a table (run it with 'maker map')"  # type: ignore[attr-defined]
map_job.options = (  # type: ignore[attr-defined]
    TaskOption("input", str, "map: the records, a CSV, JSONL or Parquet file or a folder of parts", required=True),
    TaskOption("prompt", str, "map: a prompt template over the row's columns, e.g. 'Product: {description}'"),
    TaskOption("op", str, "map: a maker.operation (pkg.module:attr or file.py:attr) instead of --prompt"),
    TaskOption("key", str, "map: how replies to --prompt are read: integer, decimal, text, choice:a,b, json, literal"),
    TaskOption("truth", str, "map: the column that holds each row's right answer (ground truth)"),
    TaskOption("id", str, "map: the column that names each row"),
    TaskOption("columns", str, "map: the columns an --op is given, comma-separated (default: all but --id, --truth)"),
    TaskOption("stop", str, "map: stop each reply at this text (e.g. '\\n' for one line)"),
)


__all__ = ["END", "MapTask", "OracleMapTask", "Template", "cell_text", "load_op", "make_map_task", "map_job", "op_reference", "unescape"]
