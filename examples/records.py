"""Extract a field from each of N records (voted LLM steps), then add them up (a tool step).

A plan: N independent `age(record)` steps, which the DAG runner votes in parallel, and
one `total(#E1, ..., #EN)` tool step, a plain Python function run once on the decided
ages and never voted (declared pure: it has no side effect).

    maker run --task examples/records.py:records --n 50 --model sim:0.9 --k 2
    maker run --task examples/records.py:records --n 30 --model local --k 2
"""

from __future__ import annotations

import json

from maker.tasks import TaskOption

import maker

NAMES = ["Ada Moss", "Ben Ito", "Cleo Park", "Dev Rao", "Eva Lind", "Finn Ruiz", "Gia Chen", "Hal Berg"]
CITIES = ["Oslo", "Lima", "Pune", "Graz", "Kobe", "Lyon", "Perth", "Quito"]
SHOTS = ("Record: id: 2210; name: Bob Lee; age: 51; city: Riga\nage: 51\n"
         "Record: id: 5307; name: Ines Roy; age: 27; city: Bonn\nage: 27\n")


def make_records(n: int, seed: int = 0) -> list[str]:
    """N records as one line of text each (id, name, age, city), the same for the same seed.

    The age is not the last number on the line: SmolLM2-135M copied the last number (the
    id) when it was, every time -- the `valid` rule (0 < age < 150) red-flagged all 50."""
    out = []
    for i in range(n):
        x = ((i + 1) * 2654435761 + seed * 97) % 2**32
        x = ((x ^ (x >> 13)) * 1274126177) % 2**32
        out.append(f"id: {1000 + x % 9000}; name: {NAMES[x % 8]}; age: {18 + (x >> 7) % 63}; city: {CITIES[(x >> 3) % 8]}")
    return out


def _age_of(args: tuple[str, ...]) -> int:
    return int(args[0].split("age: ")[1].split(";")[0])


AGE = maker.operation(
    "age",
    prompt=lambda args: f"Copy the age from the record.\n{SHOTS}Record: {args[0]}\nage:",
    parse=lambda reply: reply.strip().rstrip("."),
    key="integer",
    valid=lambda args, key: 0 < int(key) < 150,
    truth=_age_of,
    render=lambda age: f" {age}",
)


def total(*ages: str) -> int:
    """The tool step: the sum of the decided ages (inputs arrive as text)."""
    return sum(int(a) for a in ages)


def records(n: int = 50, seed: int = 0) -> maker.tasks.PlanTask:
    """The plan: one voted `age` step per record, then the `total` tool step."""
    lines = [f"# total age over {n} records"]
    lines += [f"#E{i + 1} = age({json.dumps(r)})" for i, r in enumerate(make_records(n, seed))]
    lines.append(f"#E{n + 1} = total({', '.join(f'#E{i + 1}' for i in range(n))})")
    lines.append(f"answer = #E{n + 1}")
    # `total` has no side effect: declared pure, maker may run it again for ground truth and in
    # `replay --verify` (a tool that writes somewhere runs once per run, never again)
    task = maker.plan_task("\n".join(lines), ops=[AGE, maker.tool("total", total, pure=True)], name="records")
    task.prompt_style = "completion"  # few-shot completion prompts suit small local models
    task.stop = ("\n",)
    return task


records.options = (  # type: ignore[attr-defined]
    TaskOption("n", int, "records (voted steps)", default=50),
    TaskOption("seed", int, "which records", default=0),
)
records.summary = "extract a field from N records, total it with a tool step (examples/records.py)"  # type: ignore[attr-defined]
