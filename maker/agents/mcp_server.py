"""`maker mcp`: maker's tools for coding agents and agent frameworks, over the Model Context Protocol.

Why: an agent that must not get one step wrong should ask for a voted step, size a run
before paying for it, and launch and watch long runs -- from where it already works.
Built on the official SDK (`mcp` 2.x, `MCPServer`); every tool has a JSON schema (from
its typed arguments) and a docstring written for the agent that reads it.

Tools: `vote` (one voted call, `maker.vote`), `margin` (k and cost for a target, `maker.margin`),
`run` (start a task in the background -> run id; the same checks as `maker run`), `status` (progress of a run id; with
`wait_s`, progress notifications until it ends), `runs` (every run under the root),
`cancel` (stop a run), `verify` (`replay --verify` on a log), `tasks` (what `run` can start).
Runs are durable jobs on disk under the root (`maker.agents.runs`): they outlive the client
session and the server, and any server on the same root finds, watches and cancels them.

Safety: every path is resolved under `root` (symlinks included) and refused outside it;
no tool executes text from a model or a client -- key normalisers are chosen by name
(`maker.tasks.keys.NORMALISERS`), ``py:`` models (code to import) are refused, background
runs are the library's run of checked values written as data (`maker.agents.job`; a user's own task is a
``FILE.py:attr`` that already lies under the root, imported by the run, not the server;
no tool writes a ``.py`` file), and `verify` refuses a log whose
metadata names code to import (a task by module or file, user red-flag detectors, key
functions).  Bad arguments come back as a tool error
(one line) and the server keeps serving.

    maker mcp                      # stdio, root = the working directory
    maker mcp --root ~/work --http 8765   # streamable HTTP on 127.0.0.1:8765/mcp
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from maker.agents.runs import NOT_RUNNABLE, Runs, confine_local_models, refuse_code_models
from maker.errors import MakerError, UsageError, one_line
from maker.version import __version__

INSTRUCTIONS = """maker makes LLM steps reliable by voting: each step is sampled several times,
malformed or suspicious replies are discarded (red flags), and the first answer to lead every
other by k votes wins. Use `margin` to choose k for a run, `vote` for one reliable answer,
`run` + `status` for a long task, `verify` to audit a finished run's log. Results from
sim:P models are simulated and labelled so."""

#: How often `status(wait_s=...)` re-reads a run's log and sends a progress notification.
POLL_S = 0.5


def inside(root: Path, path: str) -> Path:
    """`path` (relative to `root`, or absolute) resolved; ToolError when it leaves `root`."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ToolError(f"path {path!r} is empty or not a path")
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ToolError(f"path {path!r} is outside the server's root {root}: refused")
    return resolved


class _OneLineErrors(MCPServer):
    """The SDK's server, with every tool error one line: the SDK words an argument that fails
    validation as pydantic's multi-line report; here it reads "bad arguments for margin: steps:
    Field required; p: Input should be a valid number".  An argument the tool does not have
    is refused ("unknown argument for margin: stpes"), where the SDK would drop it silently
    and run the tool without what the caller meant to say."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        known = await self._argument_names(name)
        unknown = sorted(set(arguments or {}) - known) if known is not None else []
        if unknown:
            raise ToolError(one_line(f"unknown argument for {name}: {', '.join(unknown)}", 500))
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            errors = getattr(cause, "errors", None)
            if callable(errors):
                try:
                    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in errors()]
                except Exception:  # not pydantic's shape after all: fall back to the text
                    parts = []
                if parts:
                    raise ToolError(one_line(f"bad arguments for {name}: " + "; ".join(parts), 500)) from None
            raise ToolError(one_line(exc, 500)) from None

    async def _argument_names(self, name: str) -> set[str] | None:
        """The argument names in tool `name`'s input schema (None: no such tool; the SDK says so)."""
        cache: dict[str, set[str]] = self.__dict__.setdefault("_maker_arguments", {})
        if name not in cache:
            for tool in await self.list_tools():
                cache[tool.name] = set((tool.input_schema or {}).get("properties", {}))
        return cache.get(name)


def build_server(root: str | Path = ".", local: dict[str, int] | None = None) -> MCPServer:
    """The MCP server with maker's six tools, confined to `root` (resolved now)."""
    root = Path(root).resolve()
    if not root.is_dir():
        from maker.errors import UsageError

        raise UsageError(f"--root {root} is not a directory")
    server: MCPServer = _OneLineErrors("maker", instructions=INSTRUCTIONS, version=__version__)
    runs = Runs(root, local)

    @server.tool()
    async def vote(
        prompt: str | list[dict[str, str]],
        models: list[str],
        k: int | None = None,
        key: str = "text",
        expected: str | None = None,
        seed: int | None = None,
        log: str | None = None,
        max_cost_usd: float | None = None,
    ) -> dict[str, Any]:
        """One voted LLM call: sample `prompt` from `models` until one answer leads every other by `k` votes.

        k: the vote margin (default 3). Use it when a single answer must be right (a classification, a number, a yes/no).
        Each reply is reduced to a canonical key by `key` (integer, decimal, text, json,
        literal, lines, or choice:a,b,c); a reply it cannot read is discarded as malformed,
        as are overlong or code-bearing replies. prompt: a string or a list of
        {"role", "content"} messages. models: litellm model strings (openai/gpt-4.1-mini,
        ...; the server's environment holds the keys), local (the embedded SmolLM2-135M,
        served on this machine and kept for later calls; local:PATH.gguf for a GGUF file
        under the root) or sim:P, a simulator that is right with probability P and needs
        `expected` (the right answer). log: a new step-log
        folder under the server's root (maker replay reads it). max_cost_usd: a spend cap in
        US dollars, in flight included (refused for a model with no known price); a call that
        reaches it is a tool error saying what was spent.
        Returns: key (the winning answer), reply (a raw reply that voted for it), votes per
        key, samples drawn, rounds, red_flags by reason, cost_usd, tokens, simulated, correct
        (vs expected; null without it).
        """
        from maker.voted_call import avote

        try:
            refuse_code_models(models)
            _refuse_code_key(key)
            models = confine_local_models(models, lambda path: inside(root, path))
            target = inside(root, log) if log is not None else None
            result = await avote(prompt, models, k, key, None, target, expected=expected, seed=seed,
                                 max_cost_usd=max_cost_usd)
        except (MakerError, ValueError) as exc:
            raise ToolError(one_line(exc, 500)) from None
        return result.to_dict()

    @server.tool()
    def margin(
        p: float,
        steps: int,
        target: float = 0.95,
        tokens_in: float = 0.0,
        tokens_out: float = 0.0,
        price_in: float = 0.0,
        price_out: float = 0.0,
        valid_rate: float = 1.0,
        model: str | None = None,
        api_base: str | None = None,
        speculate: int | None = None,
    ) -> dict[str, Any]:
        """Choose the vote margin k for a run before paying for it.

        p: probability that one sample of a step is right (e.g. 0.998), steps: how many
        steps the run has, target: the wanted probability that every step is decided
        right (e.g. 0.95). Optional cost: tokens_in / tokens_out per sample and
        price_in / price_out in US dollars per million tokens; valid_rate: the fraction
        of samples that survive the red flags. Returns k (null when p <= 1/2: no margin
        helps), expected_samples per step, p_step, run_success (P(success)),
        cost_per_sample and expected_cost (US dollars, 0 without prices).  model / api_base:
        the run's model; an openai/NAME at an api_base draws a round's samples as one
        request, so the prompt is billed once per request (shares_prompt, requests_per_step,
        prompt_tokens in the result) -- but only when the run does not speculate
        (speculate: the run's depth, default 8 as in maker run; 0 for plan tasks);
        otherwise once per sample.
        Example: p=0.9978, steps=1048575, target=0.95 gives k=3 (the MAKER paper's run).
        """
        from maker.budget.margins import SampleCost
        from maker.budget.margins import margin as make_margin
        from maker.budget.rounds import shares_prompt

        try:
            cost = SampleCost(tokens_in=tokens_in, tokens_out=tokens_out, price_in=price_in, price_out=price_out)
            return make_margin(p, steps, target, valid_rate=valid_rate, cost=cost,
                             shares_prompt=shares_prompt(model, api_base, "auto", speculate)).to_dict()
        except (MakerError, ValueError) as exc:
            raise ToolError(one_line(exc, 500)) from None

    @server.tool()
    async def run(
        task: str,
        models: list[str],
        options: dict[str, int | str] | None = None,
        k: int | None = None,
        seed: int = 0,
        wait_s: float = 0.0,
        max_cost_usd: float | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Start a long run of a task in the background; returns its run_id at once.

        task: a name from the `tasks` tool (e.g. hanoi), or the user's own task file under
        the server's root as FILE.py:attr (e.g. grid.py:grid); options: that task's options
        (e.g. {"disks": 10}), models: model strings (sim:0.99 to simulate, local for the
        embedded model), k: the vote
        margin (the `margin` tool chooses it; default 3). Every sample and decision goes to a step log
        under the server's root (maker-runs/RUN_ID/log). The run is a durable job: it goes on
        when this session or server ends, and any server on the same root finds it (`runs`,
        `status`, `cancel`). Follow it with `status`; with wait_s > 0 this call also waits up
        to that many seconds, sending progress notifications, and returns the status instead. max_cost_usd: a spend cap
        in US dollars (maker run --max-cost): the run stops cleanly before crossing it (state
        budget_reached, its log resumable); refused for a model with no known price.
        """
        try:
            start = functools.partial(runs.start, task, dict(options or {}), models, k=k, seed=seed,
                                      resolve_path=lambda p: inside(root, p), max_cost_usd=max_cost_usd)
            run_id = await anyio.to_thread.run_sync(start)  # building the task to check it may take seconds (sort --n 500)
        except (MakerError, ValueError) as exc:
            raise ToolError(one_line(exc, 500)) from None
        if wait_s > 0:
            return await _watch(runs, run_id, wait_s, ctx)
        return {"run_id": run_id, "state": "running", "log": str(runs.get(run_id).log)}

    @server.tool()
    async def status(run_id: str, wait_s: float = 0.0, ctx: Context | None = None) -> dict[str, Any]:
        """Progress of a run started with `run` (by this server or any other on the same root):
        state (running, done, failed, cancelled, lost: ended without saying how), steps done of
        total_steps, errors (decisions that differ from the ground truth; null when the task has
        none), samples (counted: votes and red flags, as `maker run` reports) and
        samples_per_step, samples_drawn (plus wasted speculative ones), red_flags, cost_usd,
        abandoned_usd (the estimated bill of calls given up on: timeouts, cancels; as maker run
        reports it), elapsed_s and eta_s (seconds). A finished run adds its full result; a failed one its
        error. With wait_s > 0 it waits up to that
        many seconds for the run to end, sending MCP progress notifications (steps / total).
        """
        try:
            runs.get(run_id)
        except MakerError as exc:
            raise ToolError(one_line(exc, 500)) from None
        return await _watch(runs, run_id, wait_s, ctx)

    @server.tool()
    def cancel(run_id: str) -> dict[str, Any]:
        """Stop a run started with `run` (by this server or any other on the same root). The
        run stops as on Ctrl-C: its step log keeps every decided step (maker run --resume
        continues it). Returns its status; state becomes "cancelled" once it has stopped.
        """
        try:
            return runs.cancel(run_id)
        except MakerError as exc:
            raise ToolError(one_line(exc, 500)) from None

    @server.tool(name="runs")
    def runs_under_root() -> dict[str, Any]:
        """Every run under the server's root, oldest first, each with run_id, task, state,
        steps, total_steps and log -- also runs started by an earlier server or session."""
        out = []
        for run_id in runs.list():
            st = runs.status(run_id)
            out.append({key: st.get(key) for key in ("run_id", "task", "state", "steps", "total_steps", "log")})
        return {"runs": out}

    @server.tool()
    def verify(log: str, salvage: bool = False) -> dict[str, Any]:
        """Audit a step log as `maker replay --verify` does, trusting nothing the run claimed:
        each decision is re-checked against the task's rules on its premise, re-decided from
        its logged votes, and compared with the ground truth where the task has one.
        log: a step-log folder under the server's root. Returns valid, solved, steps,
        first_bad_step and reason (null when valid), wrong_decisions, simulated.
        """
        from maker.audit.verify import verify_log
        from maker.log.steplog import open_log

        path = inside(root, log)
        try:
            info = open_log(path, salvage=salvage)
            _refuse_imports(info.run)
            return verify_log(path, salvage=salvage).to_dict()
        except (MakerError, ValueError) as exc:
            raise ToolError(one_line(exc, 500)) from None

    @server.tool()
    def tasks() -> dict[str, Any]:
        """The tasks `run` can start, each with a summary and its options (name, type, help,
        required, default). `vote` is the `vote` tool; `solve` needs the command line."""
        from maker.tasks import TASKS

        out = []
        for name in sorted(TASKS):
            if name in NOT_RUNNABLE:
                continue
            factory = TASKS[name]
            out.append({
                "name": name,
                "summary": getattr(factory, "summary", ""),
                "options": [
                    {"name": o.name, "type": o.type.__name__, "help": o.help, "required": o.required, "default": o.default}
                    for o in getattr(factory, "options", ())
                ],
            })
        return {"tasks": out}

    server._maker_runs = runs  # type: ignore[attr-defined]  # for shutdown
    return server


async def _watch(runs: Runs, run_id: str, wait_s: float, ctx: Context | None) -> dict[str, Any]:
    """The run's status now, or when it ends or `wait_s` passes, with progress notifications meanwhile."""
    deadline = time.monotonic() + max(0.0, float(wait_s))
    while True:
        st = await anyio.to_thread.run_sync(runs.status, run_id)
        if ctx is not None and wait_s > 0:
            total = st.get("total_steps")
            errors = "errors unknown (no ground truth)" if st["errors"] is None else f"{st['errors']} errors"
            message = f"{st['steps']}/{total} steps, {errors}, {st['state']}"
            await ctx.report_progress(st["steps"], total, message)
        if st["state"] != "running" or time.monotonic() >= deadline:
            return st
        await anyio.sleep(POLL_S)


def _refuse_code_key(key: Any) -> None:
    """UsageError for a key normaliser named as code to import (``module:attr``,
    ``file.py:attr``): `maker.tasks.keys.normaliser` would import and call it on every reply."""
    from maker.tasks.plugins import is_reference

    if isinstance(key, str) and is_reference(key) and not key.startswith("choice:"):
        raise UsageError(f"key {key!r} names code to import: refused for an agent; "
                         "use a built-in normaliser (integer, decimal, text, json, literal, lines, choice:a,b)")


def _refuse_imports(run: dict[str, Any]) -> None:
    """A log that names code to import (a task by module or file, user red-flag detectors, a key
    function) is not audited here."""
    from maker.tasks.plugins import is_reference

    task = run.get("task")
    if isinstance(task, str) and is_reference(task):
        raise ToolError(f"this log's task {task!r} is code to import: verify it with `maker replay --verify`")
    extra = (run.get("red_flags") or {}).get("extra") or []
    if extra:
        raise ToolError("this log's red-flag policy names user detectors (code to import): verify it with `maker replay --verify`")
    if run.get("task") == "map" and (run.get("task_options") or {}).get("op"):
        raise ToolError("this log's rows were voted by a user operation (code to import): verify it with `maker replay --verify`")
    key = (run.get("task_options") or {}).get("key")
    if run.get("task") == "vote" and isinstance(key, str) and ":" in key and not key.startswith("choice:"):
        raise ToolError("this log's key is a user function (code to import): verify it with `maker replay --verify`")


def serve(root: str | Path = ".", http_port: int | None = None, local: dict[str, int] | None = None) -> None:
    """Serve until the client goes away (stdio) or the process is stopped (HTTP on 127.0.0.1 only).

    `local`: {"replicas": N, "threads": M} (`maker mcp --local-*`) for the background runs of
    the embedded model (the `vote` tool's servers take them from
    `maker.cluster.local.serving.configure`)."""
    server = build_server(root, local)
    try:
        if http_port is None:
            server.run("stdio")
        else:
            server.run("streamable-http", host="127.0.0.1", port=http_port)
    finally:
        server._maker_runs.close()  # type: ignore[attr-defined]
