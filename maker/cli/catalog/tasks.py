"""`maker tasks`: every task maker can find by name, its options, and where it came from."""

from __future__ import annotations

import argparse
import json
from typing import Any

from maker.errors import UsageError
from maker.tasks.registry import ENTRY_POINT_GROUP, TaskNameError, TaskSource, available, resolve

DESCRIPTION = f"""List the tasks maker can run by name: the built-in ones and those installed
plugins register under the entry-point group '{ENTRY_POINT_GROUP}'. Any other task runs as
--task pkg.module:attr or --task path/to/file.py:attr; name one with --task to see its options."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("tasks", help="list the tasks maker can find, with their options", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", dest="task_ref", metavar="REF", help="describe this one task (any name run accepts)")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(handler=main)


def describe(source: TaskSource) -> dict[str, Any]:
    """One task as data: name, origin, summary, options (name, type, default, required, help)."""
    return {
        "name": source.name,
        "origin": source.origin,
        "summary": source.summary if source.target is not None else "",
        "options": [
            {"name": o.name, "type": o.type.__name__, "default": o.default, "required": o.required, "help": o.help}
            for o in source.options
        ],
    }


def main(args: argparse.Namespace) -> int:
    if args.task_ref:
        try:
            sources = [resolve(args.task_ref)]
        except TaskNameError as exc:
            raise UsageError(str(exc)) from None
    else:
        sources = available()
    rows = [describe(s) for s in sources]
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for row in rows:
        print(f"{row['name']}  [{row['origin']}]")
        if row["summary"]:
            print(f"    {row['summary']}")
        for o in row["options"]:
            need = "required" if o["required"] else f"default {o['default']!r}"
            print(f"    --{o['name'].replace('_', '-')} {o['type']} ({need}): {o['help']}")
    return 0
