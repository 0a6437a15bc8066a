"""The run's safeguards as flags: red flags, prompt variants and the live guard (`maker run`,
`maker map`, `maker estimate`), and the guard's summary line.

Kept apart from `run.py` so that the run command stays a short list of groups; not a
subcommand (it is not in `maker.cli.main.COMMANDS`).
"""

from __future__ import annotations

import argparse
from typing import Any

from maker.budget.advice import next_k
from maker.cli.common import voting_default
from maker.config import GuardConfig
from maker.engine.red_flags import RedFlagPolicy, check_detectors, load_detector
from maker.engine.variants import check_variants

RED_FLAGS_HELP = """Red flags discard samples that must not vote (each discard is logged with its
reason; --json counts them by reason). Built-in detectors, in order: transport, empty,
overlong, binary, code, then the task's parser (malformed, rule_breaking), then user
detectors and non_independent (cached replies, repeated response ids, byte-identical long
replies at temperature > 0, a second temperature-0 vote of one model on one prompt).
  maker run hanoi --disks 10 --model sim:0.99 --red-flag mychecks:too_chatty
  maker run hanoi --disks 10 --model sim:0.99,confused=0.5 --no-red-flags    (comparison run)
A detector is a function (sample, ctx) -> reason text or None; ctx has .step, .policy,
.temperature, .variant, .task."""

GUARD_HELP = """The live guard estimates p from the votes (an error is a counted vote that
disagrees with its step's decision), with a Clopper-Pearson interval, and the collision
ratio (steps whose first two votes are both wrong, against (1-p)^2). It warns, logs an
event row, and with --adaptive-k raises k (up to --k-max) when the interval's low end falls
below the plan's p (--p, or the p that k just suffices for at --target) or collisions exceed
independence by --collision-factor. It never lowers k. It acts between segments, so
--segment-steps bounds how quickly.
  maker run hanoi --disks 12 --model sim:0.998,hard=0.01,hard_p=0.7 --k 3 --adaptive-k --k-max 12 --segment-steps 128
  maker run hanoi --disks 12 --model sim:0.998,hard=0.01,variant_bias=1 --prompt-variants 3"""


def add_safeguard_arguments(p: argparse.ArgumentParser) -> None:
    add_red_flag_arguments(p)
    add_guard_arguments(p)


def add_red_flag_arguments(p: argparse.ArgumentParser) -> None:
    """Red flags and prompt variants: how samples are drawn and judged (`maker run` and `maker estimate`)."""
    r = p.add_argument_group("red flags", RED_FLAGS_HELP)
    r.add_argument(
        "--no-red-flags",
        action="store_true",
        help="switch every red flag off, for comparison runs; transport failures and unparseable or "
        "rule-breaking replies still cannot vote (they have no vote key)",
    )
    r.add_argument("--red-flag", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="add a user detector (repeatable); also FILE.py:FUNCTION; checked on a known-good reply at start")
    r.add_argument("--skip-red-flag", action="append", default=[], metavar="NAME",
                   help="leave out one built-in detector (repeatable), e.g. code or non_independent")
    r.add_argument("--identical-min-chars", type=int, default=200, metavar="N",
                   help="byte-identical replies of a step at temperature > 0 this long or longer are "
                   "non_independent (default 200)")
    r.add_argument("--max-discards-in-a-row", type=int, default=None, metavar="N",
                   help="stop the run when a step's first N samples are all red-flagged: the policy or the model "
                   "discards everything (default " + str(voting_default("max_discards_in_a_row")) + "; rounded up to a whole sampling round)")
    r.add_argument("--max-failed-calls", type=int, default=None, metavar="N",
                   help="stop the run when a step's first N calls all fail after their retries (timeouts, refused "
                   "connections, 5xx): the endpoint is down; see --timeout (default " + str(voting_default("max_failed_calls")) + ")")
    r.add_argument("--max-cut-off", type=int, default=None, metavar="N",
                   help="stop the run when N of a step's samples, before any vote, were cut at the output cap "
                   "(finish_reason length): the cap is too small for the model (a reasoning model's hidden "
                   "reasoning counts against it); see --max-output-tokens (default " + str(voting_default("max_cut_off")) + ")")
    r.add_argument("--prompt-variants", type=int, default=None, metavar="N",
                   help="spread each step's samples over N prompt variants of the task (sample i uses variant "
                   "i %% N, shifted so that every model meets every variant); all variants vote on the same "
                   "canonical key (default " + str(voting_default("prompt_variants")) + "; hanoi offers 4)")


def add_guard_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live guard", GUARD_HELP)
    g.add_argument("--adaptive-k", action="store_true", help="let the guard raise k for the rest of the run")
    g.add_argument("--k-max", type=int, metavar="K", help="the most --adaptive-k may raise k to (default 3 x k)")
    g.add_argument("--collision-factor", type=float, default=3.0, metavar="F",
                   help="alarm when collisions exceed independence by this factor (default 3)")
    g.add_argument("--min-collisions", type=int, default=3, metavar="N",
                   help="collisions needed before the collision alarm may fire (default 3)")


def red_flag_policy(args: argparse.Namespace, task: Any = None, voting: Any = None) -> RedFlagPolicy:
    """The RedFlagPolicy the arguments ask for; UsageError (exit 2) for unknown names, and
    (given the task and the run's `VotingConfig`) for a variant count it does not offer or a
    detector that fails on a known-good reply -- all before `--k auto` spends anything."""
    extra = tuple(load_detector(spec) for spec in getattr(args, "red_flag", None) or ())
    policy = RedFlagPolicy(
        identical_min_chars=args.identical_min_chars,
        enabled=not args.no_red_flags,
        skip=frozenset(getattr(args, "skip_red_flag", None) or ()),
        extra=extra,
    )
    if task is not None and voting is not None:
        check_detectors(task, policy, check_variants(task, voting.prompt_variants), voting.max_output_tokens)
    return policy


def guard_config(args: argparse.Namespace, k: int) -> GuardConfig:
    config = GuardConfig(
        target=args.target,
        p_assumed=args.p,
        adaptive=args.adaptive_k,
        k_max=args.k_max,
        collision_factor=args.collision_factor,
        min_collisions=args.min_collisions,
    )
    config.checked_k_max(k)
    return config


def guard_line(guard: dict[str, Any], steps_left: int = 0) -> str:
    """One summary line for the guard's figures (empty before any vote was counted): p̂ says
    which p it is (graded against ground truth, or agreement with the decisions), and a run
    with known wrong decisions is told that its k did not hold (`maker.budget.advice.next_k`).

    `steps_left`: the task's steps still undecided when the run stopped (--max-steps); the
    guard then has no step left of *this* run, which says nothing about the task's rest."""
    if "p_hat" not in guard:
        return ""
    ratio = guard.get("collision_ratio")
    ratio_text = "n/a" if ratio is None else f"{ratio:.2f}x independence"
    k_text = f"k {guard['k_start']} -> {guard['k']}" if guard["k"] != guard["k_start"] else f"k {guard['k']}"
    alarms = sum(1 for e in guard.get("events", ()) if e.get("event") == "alarm")
    if guard.get("remaining_steps") == 0 and steps_left > 0:
        success = f"? ({steps_left:,} steps of the task left after --max-steps)"
    elif guard.get("remaining_steps") == 0:
        success = "1 (no step left)"
    elif guard.get("votes", 0) < guard.get("min_votes", 0):  # too few votes to say: unknown, not a small number
        success = f"? ({guard.get('votes', 0)} votes)"
    else:
        success = f"{guard['success']:.4f}"
    wrong = guard.get("wrong_decisions")
    if wrong:  # the same rule as tune and report (maker.budget.advice): a k that made wrong decisions is not kept
        at = guard.get("k_at_wrong") or guard["k"]
        advised, _ = next_k(guard["k"], k_used=at, wrong_decisions=wrong)
        success += f"  wrong decisions {wrong:,} (ground truth): k {at} did not hold, use k >= {advised}"
    source = guard.get("p_source", "agreement")
    return (
        f"  guard: p̂ {guard['p_hat']:.5f} ({source}; 95% low {guard['p_low']:.5f}, assumed {guard['p_assumed']:.5f})  "
        f"collisions {guard['collisions']} ({ratio_text})  P(rest right) {success}  {k_text}  "
        f"alarms {alarms}"
    )
