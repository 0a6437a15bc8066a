"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import sys
from dataclasses import replace
from typing import Any

from maker.cluster import ModelSpec
from maker.tasks.base import optional


def add_model_arguments(p: argparse.ArgumentParser) -> Any:
    g = p.add_argument_group("models")
    g.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="sim:P, local (the embedded SmolLM2), local:PATH.gguf, or a litellm model string; "
        "repeat to mix models within each step's votes (see 'maker models')",
    )
    g.add_argument("--api-base", help="base URL of an OpenAI-compatible server for the litellm models")
    g.add_argument("--concurrency", type=int, default=16, help="concurrent requests per model client (default 16)")
    g.add_argument("--rpm", type=float, help="most requests per minute per litellm model (default: no limit)")
    g.add_argument("--tpm", type=float, help="most tokens (prompt + reply) per minute per litellm model (default: no limit)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds before a model call is abandoned and retried (default 60)")
    add_price_arguments(g)
    add_local_arguments(p)
    return g


def add_price_arguments(g: Any) -> None:
    """--price-in/--price-out/--price-cached [MODEL=]USD: what a model's tokens cost, per million
    (for MODEL, or for every model without its own), over litellm's offline table."""
    for flag, what in (("in", "input"), ("out", "output"), ("cached", "cached prompt")):
        g.add_argument(f"--price-{flag}", action="append", metavar="[MODEL=]USD", default=None,
                       help=f"USD per million {what} tokens, for MODEL or for every model without its own; repeatable; "
                            "overrides litellm's offline price table" + (" (default: the input price)" if flag == "cached" else
                                                                          " (give --price-in and --price-out together)"))


def draft_model_name(args: argparse.Namespace) -> list[str]:
    """[the --draft model] when it is a model no --model names (one that --price-in/--price-out
    MODEL=USD may price and --max-cost must know the price of); [] for none, reference, py:."""
    value = getattr(args, "draft", None) or "none"
    return [] if value in ("none", "reference") or value.startswith("py:") or value in args.model else [value]


def user_prices(args: argparse.Namespace, models: list[str]) -> dict[str, Any]:
    """{model: Price} from --price-in/--price-out/--price-cached for those of `models` they
    price; UsageError (one line) for a bad amount, a MODEL= that names no model of the
    command, or a model given only one of --price-in/--price-out."""
    from maker.cluster.pricing import price_of
    from maker.errors import UsageError

    given: dict[str, dict[str | None, float]] = {}
    for flag in ("in", "out", "cached"):
        table: dict[str | None, float] = {}
        for item in getattr(args, f"price_{flag}", None) or ():
            name, eq, amount = str(item).rpartition("=")
            key = name.strip() if eq else None
            try:
                value = float(amount)
            except ValueError:
                value = -1.0
            if not value >= 0 or value == float("inf"):
                raise UsageError(f"--price-{flag} takes [MODEL=]USD per million tokens (>= 0), got {item!r}")
            if key is not None and key not in models:
                raise UsageError(f"--price-{flag} {item!r}: {key} is not a model of this command ({', '.join(models)})")
            table[key] = value
        given[flag] = table
    out: dict[str, Any] = {}
    for model in models:
        rate = {flag: given[flag].get(model, given[flag].get(None)) for flag in given}
        if rate["in"] is None and rate["out"] is None:
            continue
        if rate["in"] is None or rate["out"] is None:
            missing = "--price-out" if rate["out"] is None else "--price-in"
            raise UsageError(f"{model}: give {missing} too (a price needs input and output rates)")
        out[model] = price_of(model, rate["in"], rate["out"], rate["cached"])
    return out


def add_local_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `--model local` / `--model local:PATH.gguf` (see cluster.local.server); each
    defaults to None, "not given": `maker.runtime.local_models.local_settings` owns the values."""
    from maker.cluster.local.serving import LocalSettings

    g = p.add_argument_group("local model (--model local: SmolLM2-135M served on 127.0.0.1; local:PATH.gguf: any GGUF)")
    g.add_argument("--local-port", type=int, help="serve on this port of 127.0.0.1 (default: a free one)")
    g.add_argument("--local-threads", type=int, help="llama.cpp threads (default: one per two cores)")
    g.add_argument("--local-log", help="the server's log file (default: in the temp folder; its path is printed)")
    g.add_argument("--local-restarts", type=int,
                   help=f"restarts of a server that dies mid-run (default {LocalSettings.max_restarts})")
    g.add_argument("--local-replicas", type=int,
                   help=f"servers per local model, one prompt variant each (default {LocalSettings.replicas}); with --address, on every "
                   "node that runs a worker")


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    from maker.errors import UsageError

    if args.concurrency < 1:
        raise UsageError("--concurrency must be >= 1")
    for name in ("rpm", "tpm", "timeout"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise UsageError(f"--{name} must be > 0, got {value}")
    tiers = [m for tier in getattr(args, "escalate_to", None) or () for m in tier]
    prices = user_prices(args, list(dict.fromkeys([*args.model, *tiers, *draft_model_name(args)])))
    specs = [
        ModelSpec(
            m,
            api_base=args.api_base,
            concurrency=args.concurrency,
            timeout_s=getattr(args, "timeout", 60.0),
            rpm=getattr(args, "rpm", None),
            tpm=getattr(args, "tpm", None),
            price=prices.get(m),
        )
        for m in args.model
    ]
    from maker.cluster.local.server import is_local_model

    if any(is_local_model(spec.model) for spec in specs):
        return served_specs(args, specs)
    for flag in ("local_port", "local_threads", "local_replicas", "local_log", "local_restarts"):
        if getattr(args, flag, None) is not None:  # nothing to apply them to: refused, not ignored
            raise UsageError(f"--{flag.replace('_', '-')} needs --model local or --model local:PATH.gguf")
    return specs


def served_specs(args: argparse.Namespace, specs: list[ModelSpec]) -> list[ModelSpec]:
    """`specs` with local models pointed at their servers, started on first use (after the
    command validated its other input) and stopped when the command ends: `maker.cli`
    puts an ExitStack on ``args._exit_stack``; without one, at interpreter exit.

    The library serves them (`maker.runtime.local_models`): on this machine, or with
    ``--address`` on every node of the cluster that runs a worker, each worker using its
    own node's.  This adds the ``--local-*`` settings and the announcements."""
    from maker.runtime.local_models import local_models, local_settings

    served: dict[str, ModelSpec] | None = getattr(args, "_served_models", None)
    if served is None:
        settings = local_settings(port=getattr(args, "local_port", None), threads=getattr(args, "local_threads", None),
                                  log=getattr(args, "local_log", None), restarts=getattr(args, "local_restarts", None),
                                  replicas=getattr(args, "local_replicas", None))
        stack = getattr(args, "_exit_stack", None)
        if stack is None:
            stack = contextlib.ExitStack()
            atexit.register(stack.close)
        context = local_models(specs, address=getattr(args, "address", None), workers=getattr(args, "workers", 1) or 1,
                               settings=settings, on_start=_announce, on_node_start=_announce_node, keep=False)
        served = {s.model: t for s, t in zip(specs, stack.enter_context(context))}
        args._served_models = served
    return [replace(s, model=served[s.model].model, api_base=served[s.model].api_base,
                    api_bases=served[s.model].api_bases, node_bases=served[s.model].node_bases,
                    price=served[s.model].price)
            if s.model in served else s for s in specs]


def _announce_node(answer: Any) -> None:
    first = answer.servers[0] if answer.servers else (None, "?", "?")
    print(
        f"maker: local model on Ray node {answer.node_id[:12]} ({answer.host}): {len(answer.servers)} server(s) "
        f"from {first[1]} (pid {first[0]}, log {first[2]})",
        file=sys.stderr,
    )


def _announce(server: Any) -> None:
    print(
        f"maker: local model {server.alias} on {server.api_base} (pid {server.pid}, log {server.log_path})",
        file=sys.stderr,
    )


def prompt_style_of(args: argparse.Namespace, task: Any) -> str:
    """--prompt-style if given, else the task's preferred style, else chat."""
    return getattr(args, "prompt_style", None) or optional(task, "prompt_style") or "chat"


def voting_default(name: str) -> Any:
    """`VotingConfig`'s default for field `name`: what a flag left out means (help texts say it;
    the flag itself defaults to None, "not given", so the config class owns the value)."""
    from dataclasses import fields

    from maker.config import VotingConfig

    return next(f.default for f in fields(VotingConfig) if f.name == name)


def add_voting_arguments(p: argparse.ArgumentParser, unit: str = "step", *, title: str = "voting",
                         auto: bool = True, style: bool = True) -> Any:
    """The voting group of `maker run`, `maker map` and `maker solve` (`unit`: what one step
    is, "step" or "row"; `auto`: --k auto with --p, --estimate-samples and --target; `style`:
    --prompt-style).  Every `VotingConfig` field defaults to None ("not given"):
    `voting_from_args` leaves those to the config class."""
    v = p.add_argument_group(title)
    if auto:
        v.add_argument("--k", help=f"vote margin: an integer >= 1 (default {voting_default('k')}), or 'auto' "
                       f"(chosen for --target from --p, or from an estimate of p on a sample of {unit}s)")
        v.add_argument("--p", type=float, help=f"per-{unit} accuracy to choose k with when --k auto (default: estimate it first)")
        v.add_argument("--estimate-samples", type=int, default=200,
                       help=f"--k auto without --p: random {unit}s to estimate p on (default 200)")
        v.add_argument("--target", type=float, default=0.95,
                       help=f"wanted probability that every {unit} is right (default 0.95)")
    else:
        v.add_argument("--k", help=f"vote margin, an integer >= 1 (default {voting_default('k')})")
    v.add_argument("--max-samples-per-step", type=int,
                   help=f"loud cap: a {unit} that needs more samples gives up (default {voting_default('max_samples_per_step')})")
    v.add_argument("--max-output-tokens", type=int,
                   help=f"replies longer than this are red-flagged (default {voting_default('max_output_tokens')})")
    v.add_argument("--first-temperature", type=float,
                   help=f"temperature of each {unit}'s first sample (default {voting_default('first_temperature')})")
    v.add_argument("--temperature", type=float,
                   help=f"temperature of later samples (default {voting_default('temperature')})")
    if style:
        v.add_argument("--prompt-style", choices=("chat", "completion"),
                       help="chat messages or a plain completion prompt (default: the task's choice, else chat)")
    add_undecided_arguments(v)
    v.add_argument("--seed", type=int, default=0, help="run seed: names every draw, so seeded simulators repeat exactly")
    return v


#: `VotingConfig` fields a command's flags of the same name set (those it has; None: not given).
VOTING_FLAGS = ("first_temperature", "temperature", "max_samples_per_step", "max_output_tokens", "prompt_variants",
                "max_discards_in_a_row", "max_failed_calls", "max_cut_off")


def voting_from_args(args: argparse.Namespace, task: Any = None, k: int | None = None) -> Any:
    """The one place the CLI builds a `VotingConfig` (`VotingConfig.from_options`): the
    voting, red-flag and undecided flags the command has, the prompt style (--prompt-style,
    else the task's), and `k` (None: the config's default).  UsageError for bad values."""
    from maker.config import VotingConfig

    given = {name: getattr(args, name, None) for name in VOTING_FLAGS}
    undecided = undecided_settings(args) if hasattr(args, "on_undecided") else {}
    return VotingConfig.from_options(k=k, prompt_style=prompt_style_of(args, task), **given, **undecided)


def add_undecided_arguments(g: Any) -> None:
    """`--on-undecided` and `--escalate-to` (`maker run`, `maker solve`): what a step that
    gives up does; `undecided_settings` turns them into `VotingConfig` fields."""
    g.add_argument("--on-undecided", choices=("fail", "escalate", "plurality"),
                   help="a step that gives up (the sample cap, every sample discarded): fail the run (default), "
                        "escalate it to the next --escalate-to tier with a fresh ballot, or take its plurality leader (logged warning)")
    g.add_argument("--escalate-to", nargs="+", action="append", metavar="MODEL", default=None,
                   help="one escalation tier (repeat the flag for further tiers): the models that re-vote a step the "
                        "run's models could not decide; needs --on-undecided escalate")
    g.add_argument("--escalate-on-split", action="store_true",
                   help="escalate a step at once when its tier's first k votes are not unanimous, instead of drawing "
                        "to --max-samples-per-step first (cheap models give up sooner on the steps they find hard); "
                        "needs --on-undecided escalate")


def undecided_settings(args: argparse.Namespace) -> dict[str, Any]:
    """{on_undecided, escalate_to, escalate_on_split} for `VotingConfig` (which refuses inconsistent pairs with a UsageError)."""
    return {"on_undecided": getattr(args, "on_undecided", None), "escalate_to": tuple(tuple(tier) for tier in args.escalate_to or ()),
            "escalate_on_split": bool(getattr(args, "escalate_on_split", False))}


# -- the spend cap (--max-cost: maker run, maker solve) ---------------------------------------
def add_budget_argument(g: Any) -> None:
    g.add_argument("--max-cost", type=float, metavar="USD",
                   help="spend cap in US dollars, in flight included: no round is sent whose worst case would cross it; "
                        "the run then stops (exit 1) with its log intact, and --resume with a new --max-cost continues, "
                        "counting what the log already spent. Every model needs a known price (--price-in/--price-out)")


def budget_preamble(task: Any, specs: list[Any], voting: Any, args: argparse.Namespace, steps: int) -> None:
    """Before the first call: `maker.budget.outlook.spend_outlook`'s lines on stderr (the cap
    next to the expected cost); UsageError (exit 2) when a model's price is unknown."""
    from maker.budget.outlook import spend_outlook
    from maker.cluster import ModelSpec

    if args.max_cost is None:
        return
    tiers = [m for m in voting.escalation_models if m not in {s.model for s in specs}]
    drafts = [ModelSpec(m, api_base=getattr(args, "draft_api_base", None)) for m in draft_model_name(args)]
    given = user_prices(args, [*(s.model for s in specs), *tiers, *(d.model for d in drafts)])
    lines = spend_outlook(task, specs, voting, args.max_cost, steps, prices=given, drafts=drafts,
                          resume_log=args.log if args.resume and args.log else None,
                          whole_run=args.max_steps is None, p=args.p, estimate=getattr(args, "estimate", None))
    for line in lines:
        print(f"maker: {line}", file=sys.stderr)


def estimate_spend(report: Any) -> float:
    """What `--k auto`'s estimate of p spent (it counts against --max-cost)."""
    if report is None:
        return 0.0
    return sum(m.cost_per_sample * m.samples for m in report.models if m.price_known)


def print_cost_lines(result: Any) -> None:
    """Where the money went (a priced run): by model and kind, each price's source, the budget."""
    breakdown = result.extra.get("cost_breakdown") or {}
    if result.cost_usd or result.abandoned_usd:
        models = ", ".join(f"{m} ${v:,.4f}" for m, v in sorted(breakdown.get("by_model", {}).items(), key=lambda kv: -kv[1]))
        kinds = ", ".join(f"{k.replace('_', ' ')} ${v:,.4f}" for k, v in breakdown.get("by_kind", {}).items() if v)
        share = breakdown.get("cached_share")
        cached = f"; cached prompt tokens {share:.1%}" if share is not None else ""
        print(f"  cost by model: {models}")
        print(f"  cost by kind: {kinds}{cached}")
    for model, price in result.prices.items():
        if not price.get("known", True) or result.cost_usd:
            rates = (f"${price['input_per_m']:g} in / ${price['output_per_m']:g} out per M" if price.get("known", True)
                     else "price unknown")
            print(f"  price {model}: {rates} ({price['source']})")
    budget = result.budget
    if budget:
        from maker.budget.spend import usd

        print("  " + (budget.get("line") or f"budget: {usd(budget['spent_usd'])} of {usd(budget['cap_usd'])} spent"))
