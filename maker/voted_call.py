"""One voted call: `maker.vote(prompt, models)` inside the user's own loop.

Why: most users do not have a million-step chain; they have one LLM call in their own
code that must not be wrong.  A voted call is exactly a one-step run of the task
`tasks/builtin/one_prompt.py` (the prompt as its only step, a key normaliser as its judge),
voted by the same step voter as every run (`_vote_one` is the single place it meets the
engine): round one draws k samples together (the first at `first_temperature`, the rest
at `temperature`), later rounds only what the leader still needs, red-flagged samples
never vote (`RedFlagPolicy`), first-to-ahead-by-k decides (`Ballot`), and with `log=` the
same sample and decision rows go to a step log that `maker replay` reads.

Concurrency: without Ray the call runs in-process on asyncio.  Every model's requests
go through one in-flight limit per model name and event loop (`concurrency`, default
16), shared by every voted call running on that loop, so `asyncio.gather` over a
thousand `avote` calls never has more than `concurrency` requests in flight per model.
Hosted-model clients are made once per model string and reused across calls.  With
`ray=True` (or a `ClusterConfig`) the step is voted in a Ray worker instead: model
strings only, and the key must be a normaliser name (the worker rebuilds the task).

Example (simulated: `sim:P` answers from `expected`):
    >>> import maker
    >>> r = maker.vote("What is 6 * 7?", ["sim:0.9"], k=3, key="integer", expected="42", seed=1)
    >>> r.key, r.simulated
    ('42', True)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from maker.budget.spend import Budget, billed_columns, check_cap, refuse_unpriced, resolve_prices, usd
from maker.cluster import ModelSpec, check_spec, make_client
from maker.cluster.clients import warn_unsent_settings
from maker.cluster.local.serving import Lease, acquire
from maker.cluster.protocol import ModelClient, Sample, SampleRequest
from maker.config import ClusterConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy, step_failure
from maker.errors import BudgetReached, UsageError
from maker.log.steplog import StepLogWriter
from maker.runtime.dag import NodeJob, NodeResult, check_batch, vote_nodes
from maker.runtime.driver import run_metadata
from maker.runtime.local_models import free_local, has_local, local_models, refuse_local_tiers
from maker.runtime.preflight import check_settings
from maker.tasks.base import Oracle, optional
from maker.tasks.builtin.one_prompt import OnePrompt, one_prompt

__all__ = ["VoteResult", "avote", "vote", "voted"]

#: Requests in flight per model and event loop when `concurrency` is not given.
DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class VoteResult:
    """What one voted call decided and spent.

    `key` is the winning vote key and `reply` the raw text of the first sample that voted
    for it; `votes` counts valid votes per key on the ballot that decided (after an
    escalation, the last tier's fresh ballot); `samples` is every sample drawn, on every
    tier (votes, red-flagged ones and any drawn in the deciding round after the decision);
    `red_flags` counts discarded samples by reason.  `cost_usd` is what the clients
    reported (0 for unpriced models), tokens are summed over every sample.  `simulated`
    is True when every model is a fake (`sim:`, `script:`, or a client saying so), None
    when a user-supplied client does not say.  `correct` compares `key` with `expected`
    (None without it).  `escalations` counts the stronger tiers the call was re-opened on
    (`VotingConfig.on_undecided="escalate"`) and `decided_by` names the models whose ballot
    decided; `plurality` is True when the leader was taken without a margin of k.
    """

    key: str
    reply: str
    votes: dict[str, int]
    samples: int
    rounds: int
    red_flags: dict[str, int]
    cost_usd: float
    tokens_in: int
    tokens_out: int
    k: int
    models: list[str]
    simulated: bool | None
    correct: bool | None
    wall_s: float
    log: str | None = None
    escalations: int = 0
    decided_by: list[str] | None = None
    plurality: bool = False
    reasoning_tokens: int = 0  # hidden reasoning tokens among tokens_out (reasoning models; billed as output)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def avote(
    prompt: Any,
    models: Sequence[str | ModelSpec | ModelClient],
    k: int | None = None,
    key: Any = "text",
    red_flags: RedFlagPolicy | Sequence[tuple[str, Any]] | None = None,
    log: str | Path | None = None,
    *,
    expected: str | None = None,
    voting: VotingConfig | None = None,
    seed: int | None = None,
    concurrency: int | None = None,
    ray: bool | ClusterConfig = False,
    max_cost_usd: float | None = None,
) -> VoteResult:
    """Vote one call: draw samples of `prompt` from `models` until one answer leads by k.

    prompt: a string (sent as one user message in the chat style) or a list of
    ``{"role", "content"}`` messages.  models: model strings (``openai/gpt-4.1-mini``,
    ``sim:P`` with `expected=`, ``script:NAME``, ``local`` / ``local:PATH.gguf``: the embedded
    model, served by this process's shared servers -- started on the first call, reused by
    every later one, stopped at exit; see `maker.runtime.local_models`), `ModelSpec`s (a model
    at an ``api_base``) or `ModelClient` objects; samples are spread over them in turn.  k: the margin (`VotingConfig`'s default when neither k
    nor `voting` is given; `voting.k` when `voting` is given).
    key: a normaliser name (`maker.tasks.keys.NORMALISERS`, ``choice:a,b``) or a function
    ``str -> str | None``; a reply it maps to None is red-flagged ``malformed``.  red_flags:
    a `RedFlagPolicy`, or extra ``(name, fn)`` detectors for the default one, each
    ``fn(sample, ctx) -> reason | None`` (`sample.text` is the reply; see
    `maker.engine.red_flags`).  log: a new
    step-log folder.  seed: names the draws (random when None; logged).  concurrency:
    requests in flight per model, shared by all calls on this event loop.  max_cost_usd: a
    spend cap for this call, in flight included (`maker.budget.spend`): no round is sent
    whose worst case would cross it; every model needs a known price (`ModelSpec(price=...)`
    or litellm's table).

    Raises UsageError (one line) for a bad prompt, k < 1, an unknown key normaliser, `sim:`
    without `expected`, an existing log, or settings a run refuses before drawing
    (`maker.runtime.preflight.check_settings`: temperature 0 with fewer models than k, a
    policy with its own token cap, a detector that raises on `expected`, ``local`` as an
    escalation tier); ModelConfigError for an unusable model; LocalServerError when a local
    server does not start or dies beyond its restarts during the call;
    VoteCapError (or its subclasses) when the step does not decide within
    `voting.max_samples_per_step` samples, BudgetReached when its next round would cross
    `max_cost_usd` -- the log, if any, holds every sample drawn.
    """
    started = time.perf_counter()
    task, voting, policy, seed = _prepare(prompt, models, k, key, red_flags, expected, voting, seed)
    cluster = ray if isinstance(ray, ClusterConfig) else ClusterConfig() if ray else None
    concurrency = DEFAULT_CONCURRENCY if concurrency is None else concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if cluster is not None:
        _check_ray(task, models)
    lease = held = None
    if has_local(models) and cluster is None:
        lease = await _serve_local(models, concurrency)
        models = _with_served(models, free_local(_local_specs(models, concurrency), lease.specs))
    elif has_local(models):  # in a Ray worker: served by this process (or on each node of a multi-node cluster)
        held = local_models(_local_specs(models, concurrency), address=cluster.address, resume_hint=False)  # type: ignore[union-attr]
        models = _with_served(models, await asyncio.to_thread(held.__enter__))
    try:
        return await _vote_served(task, models, voting, policy, seed, cluster, concurrency, log, started, max_cost_usd)
    except asyncio.CancelledError:
        error = lease.failure() if lease is not None else None
        if error is None:
            raise
        raise error from None  # a local server died for good: that, not a cancelled vote, is what happened
    finally:
        if lease is not None:
            lease.release()
        if held is not None:
            await asyncio.to_thread(held.__exit__, None, None, None)


async def _vote_served(task: OnePrompt, models: Sequence[Any], voting: VotingConfig, policy: RedFlagPolicy, seed: int,
                       cluster: ClusterConfig | None, concurrency: int, log: Any, started: float,
                       max_cost_usd: float | None = None) -> VoteResult:
    """`avote` once every local model is served (`models` point at the servers)."""
    names = [_name(m) for m in models]
    budget = _budget(max_cost_usd, models, voting)
    writer = None
    if log is not None:
        meta = run_metadata(task, [m if isinstance(m, ModelSpec) else ModelSpec(_name(m)) for m in models], voting, seed)
        meta["red_flags"] = policy.to_metadata()
        meta["simulated"] = _simulated(models)
        meta["voted_call"] = True
        writer = StepLogWriter(Path(log), meta)
    if cluster is not None:
        result = await asyncio.to_thread(_vote_on_ray, task, models, voting, policy, seed, cluster, budget)
    else:
        tiers = [m for m in voting.escalation_models if m not in names]  # `voting.on_undecided == "escalate"`
        clients = _clients([*models, *tiers], task, concurrency)
        result = await _vote_one(task, clients, voting, policy, tuple(names), seed, budget)
    if writer is not None:
        writer.append(result.samples, result.decisions, result.events)
    if result.budget_stopped:
        spent = billed_columns(result.samples)
        raise BudgetReached(
            f"budget reached: {usd(spent)} of {usd(budget.cap_usd)} spent; the call was not decided "
            f"({len(result.samples['step'])} samples drawn{', all in the log' if log is not None else ''})",
            spent_usd=spent, cap_usd=budget.cap_usd)
    if result.failed:
        raise step_failure(result.samples, 0, voting)
    return _result(result, voting, names, _simulated(models), time.perf_counter() - started, log)


def _local_specs(models: Sequence[Any], concurrency: int) -> list[ModelSpec]:
    """The ``local`` / ``local:PATH`` entries of `models`, as specs."""
    return [m if isinstance(m, ModelSpec) else ModelSpec(m, concurrency=concurrency)
            for m in models if isinstance(m, (str, ModelSpec)) and has_local([m])]


def _with_served(models: Sequence[Any], served: Sequence[ModelSpec]) -> list[Any]:
    """`models` with each local entry replaced by its served spec, in order."""
    rest = iter(served)
    return [next(rest) if isinstance(m, (str, ModelSpec)) and has_local([m]) else m for m in models]


async def _serve_local(models: Sequence[Any], concurrency: int) -> Lease:
    """Hold this process's local servers for one voted call (started in a thread if none
    run, so the event loop goes on).  Should a server die beyond its restarts while the
    call runs, the call's task is cancelled and `avote` raises LocalServerError."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()

    def down(message: str) -> None:  # a watchdog thread
        if me is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to stop
                loop.call_soon_threadsafe(me.cancel)

    holding = asyncio.ensure_future(asyncio.to_thread(acquire, _local_specs(models, concurrency), on_failure=down))
    try:
        return await asyncio.shield(holding)
    except asyncio.CancelledError:  # the caller gave up while the servers started: release them once they have
        holding.add_done_callback(lambda f: f.cancelled() or f.exception() is not None or f.result().release())
        raise


def vote(prompt: Any, models: Sequence[str | ModelSpec | ModelClient], k: int | None = None, key: Any = "text",
         red_flags: RedFlagPolicy | Sequence[tuple[str, Any]] | None = None, log: str | Path | None = None,
         **options: Any) -> VoteResult:
    """`avote` for code without an event loop (it runs one); same arguments, same errors.

    Inside a running event loop use ``await maker.avote(...)`` instead (UsageError here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(avote(prompt, models, k, key, red_flags, log, **options))
    raise UsageError("maker.vote was called inside a running event loop: use 'await maker.avote(...)'")


def voted(models: Sequence[str | ModelSpec | ModelClient], k: int | None = None, key: Any = "text", **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the wrapped function builds the prompt, the call returns its `VoteResult`.

        @maker.voted(models=["openai/gpt-4.1-mini"], k=3, key="integer")
        def count_r(word): return f"How many r's are in {word!r}? Answer with a number only."

        count_r("strawberry").key    # '3'

    An `async def` prompt builder gives an async function (it awaits `avote`).
    """

    def wrap(build: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(build):
            @functools.wraps(build)
            async def call_async(*args: Any, **kwargs: Any) -> VoteResult:
                return await avote(await build(*args, **kwargs), models, k, key, **options)

            return call_async

        @functools.wraps(build)
        def call(*args: Any, **kwargs: Any) -> VoteResult:
            return vote(build(*args, **kwargs), models, k, key, **options)

        return call

    return wrap


async def _vote_one(task: OnePrompt, clients: dict[str, Any], voting: VotingConfig, policy: RedFlagPolicy,
                    models: tuple[str, ...], seed: int, budget: Any = None) -> NodeResult:
    """The one place a voted call meets the engine: one step, voted exactly as a plan run
    votes its steps in a worker (`maker.runtime.dag.vote_nodes` over `maker.engine.step`)."""
    worker = SimpleNamespace(task=task, clients=clients)
    return await vote_nodes(worker, NodeJob((task.first_step(),), voting, policy, models, seed, budget))


def _budget(cap: Any, models: Sequence[Any], voting: VotingConfig) -> Budget | None:
    """The call's spend cap (None: no cap); UsageError for a bad cap or a model without a known price."""
    cap = check_cap(cap)
    if cap is None:
        return None
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    specs += [ModelSpec(m) for m in voting.escalation_models if m not in {s.model for s in specs}]
    prices = resolve_prices(specs)
    refuse_unpriced(cap, prices)
    return Budget(cap, prices)


def _vote_on_ray(task: OnePrompt, models: Sequence[Any], voting: VotingConfig, policy: RedFlagPolicy, seed: int,
                 cluster: ClusterConfig, budget: Any = None) -> NodeResult:
    """The same step voted in a Ray worker; the returned votes are re-checked here (the driver's guard)."""
    from maker.cluster import WorkerPool
    from maker.errors import MakerError

    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    named = {s.model for s in specs}
    tiers = [ModelSpec(m) for m in voting.escalation_models if m not in named]  # every tier's client in the worker
    pool = WorkerPool(task.spec, [*specs, *tiers], workers=1, address=cluster.address)
    try:
        step = task.first_step()
        result = pool.get(pool.submit(vote_nodes, NodeJob((step,), voting, policy, tuple(s.model for s in specs), seed,
                                                          budget)))
    finally:
        pool.close()
    problem = check_batch(result, {0: step}, task, voting.k)  # type: ignore[arg-type]
    if problem is not None:
        raise MakerError(f"worker result rejected: {problem}")
    return result


def _check_ray(task: OnePrompt, models: Sequence[Any]) -> None:
    """What a Ray worker needs: models it can rebuild from a name, a key it can rebuild from a name."""
    if not all(isinstance(m, (str, ModelSpec)) for m in models):
        raise UsageError("ray=True takes model strings or ModelSpecs only: a client object cannot be sent to a Ray worker")
    if ":" in task.key_name and not task.key_name.startswith("choice:"):
        raise UsageError("ray=True needs a key normaliser name: a Ray worker cannot rebuild a key function")


def _prepare(prompt: Any, models: Sequence[Any], k: int | None, key: Any, red_flags: Any, expected: Any,
             voting: VotingConfig | None, seed: int | None) -> tuple[OnePrompt, VotingConfig, RedFlagPolicy, int]:
    """Check every argument before anything is drawn; UsageError (one line) for bad input."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise UsageError(f"k must be an integer >= 1, got {k!r}")
    if voting is None:
        voting = VotingConfig() if k is None else VotingConfig(k=k)  # k's default is VotingConfig's
    elif k is not None and k != voting.k:
        raise UsageError(f"k={k} disagrees with voting.k={voting.k}: give one of them")
    if expected is not None and not isinstance(expected, str):
        raise UsageError(f"expected must be the answer's text (a string), got {type(expected).__name__}")
    try:
        task = one_prompt(prompt, key, expected)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence) or not models:
        raise UsageError("models must be a non-empty list of model strings or ModelClient objects")
    seen: set[str] = set()
    for model in models:
        name = _name(model)
        if name in seen:
            raise UsageError(f"model {name!r} is given twice: list each model once")
        seen.add(name)
        if isinstance(model, (str, ModelSpec)):
            spec = model if isinstance(model, ModelSpec) else ModelSpec(model)
            check_spec(spec)
            if spec.in_process_simulator and not isinstance(task, Oracle):
                raise UsageError(f"{model} answers from ground truth: pass expected= (the right answer) to simulate a vote")
    if isinstance(red_flags, RedFlagPolicy):
        policy = red_flags
    else:  # the cap is VotingConfig's alone: the judge is handed `voting.max_output_tokens` (`maker.engine.step`)
        policy = RedFlagPolicy(extra=tuple(red_flags or ()))
    check_settings(task, policy, voting, len(models))  # what `maker.run` refuses up front, refused here too
    refuse_local_tiers(voting.escalation_models)
    warn_unsent_settings([m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models],
                         voting.first_temperature, voting.temperature, tuple(optional(task, "stop") or ()))
    if seed is None:
        seed = secrets.randbits(62)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    return task, voting, policy, seed


def _name(model: Any) -> str:
    if isinstance(model, str):
        return model
    if isinstance(model, ModelSpec):
        return model.model
    if isinstance(model, ModelClient):
        return model.name
    raise UsageError(f"a model is a model string or a ModelClient (name + async complete), got {type(model).__name__}")


def _simulated(models: Sequence[Any]) -> bool | None:
    """True when any model is a fake (a mix holds simulated votes: never labelled real);
    None when no model is a fake but some client does not say what it is; else False."""
    verdicts = []
    for m in models:
        if isinstance(m, (str, ModelSpec)):
            spec = m if isinstance(m, ModelSpec) else ModelSpec(m)
            verdicts.append(spec.is_simulated or spec.model.startswith("script:"))
        else:
            verdicts.append(getattr(m, "simulated", None))
    if any(v is True for v in verdicts):
        return True
    return None if any(v is None for v in verdicts) else False


# -- clients: made once per model string, every model's requests under one shared limit ----------------------

_HOSTED: dict[ModelSpec, ModelClient] = {}  # model -> client (hosted models: the HTTP client is reused)
_LIMITS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _InFlight]] = weakref.WeakKeyDictionary()


def _clients(models: Sequence[Any], task: OnePrompt, concurrency: int) -> dict[str, Any]:
    limits = _LIMITS.setdefault(asyncio.get_running_loop(), {})
    out: dict[str, Any] = {}
    for model in models:
        name = _name(model)
        if isinstance(model, (str, ModelSpec)):
            spec = model if isinstance(model, ModelSpec) else ModelSpec(model, concurrency=concurrency)
            if spec.in_process_simulator or spec.model.startswith("script:"):
                client = make_client(spec, task)  # answers from this call's task: one per call
            else:
                client = _HOSTED.get(spec)
                if client is None:
                    client = _HOSTED[spec] = make_client(spec, task)
        else:
            client = model
        limit = limits.get(name)
        if limit is None or limit.limit != concurrency:
            limit = limits[name] = _InFlight(concurrency)
        out[name] = _Limited(client, limit)
    return out


class _InFlight:
    """At most `limit` requests in flight (one event loop): each request holds one slot."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.most = 0
        self._free = asyncio.Condition()

    async def run(self, client: Any, requests: Sequence[SampleRequest]) -> list[Sample]:
        """The batch's samples in order; the requests go out in slices as slots come free."""
        calls = []
        first = 0
        while first < len(requests):
            async with self._free:
                await self._free.wait_for(lambda: self.used < self.limit)
                take = min(len(requests) - first, self.limit - self.used)
                self.used += take
                self.most = max(self.most, self.used)
            calls.append(asyncio.ensure_future(self._call(client, requests[first : first + take])))
            first += take
        parts = await asyncio.gather(*calls)
        return [s for part in parts for s in part]

    async def _call(self, client: Any, requests: Sequence[SampleRequest]) -> list[Sample]:
        try:
            return list(await client.complete(requests))
        finally:
            async with self._free:
                self.used -= len(requests)
                self._free.notify_all()


class _Limited:
    """A client whose requests pass through a shared in-flight limit."""

    def __init__(self, client: Any, limit: _InFlight) -> None:
        self.client = client
        self.name = client.name
        self.limit = limit

    async def complete(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        return await self.limit.run(self.client, requests)


def _result(result: NodeResult, voting: VotingConfig, names: list[str], simulated: bool | None, wall: float,
            log: Any) -> VoteResult:
    s = result.samples
    votes: dict[str, int] = {}
    red: dict[str, int] = {}
    reply = ""
    winner = result.decisions["answer"][0]
    events = [json.loads(d) if isinstance(d, str) else d for d in result.events["detail"]]
    tiers = [e for e in events if e.get("event") == "escalation"]
    deciding = max((int(e["from_sample"]) for e in tiers), default=0)  # first sample of the deciding ballot
    for i, text, answer, flag, counted in zip(s["sample"], s["reply"], s["answer"], s["red_flag"], s["counted"]):
        if counted and i >= deciding:
            votes[answer] = votes.get(answer, 0) + 1
            if answer == winner and not reply:
                reply = text
        if flag is not None:
            red[flag] = red.get(flag, 0) + 1
    return VoteResult(
        key=winner,
        reply=reply,
        votes=votes,
        samples=len(s["step"]),
        rounds=int(result.decisions["rounds"][0]),
        red_flags=red,
        cost_usd=round(sum(c or 0.0 for c in s["cost_usd"]), 6),
        tokens_in=sum(t or 0 for t in s["tokens_in"]),
        tokens_out=sum(t or 0 for t in s["tokens_out"]),
        k=voting.k,
        models=names,
        simulated=simulated,
        correct=result.decisions["correct"][0],
        wall_s=round(wall, 4),
        log=str(log) if log is not None else None,
        escalations=len(tiers),
        decided_by=list(tiers[-1]["models"]) if tiers else list(names),
        plurality=any(e.get("event") == "plurality" for e in events),
        reasoning_tokens=sum(t or 0 for t in s["reasoning_tokens"]),
    )
