"""Towers of Hanoi as a chain of one-move steps, as in the MAKER paper.

Why this task: its steps are all alike, each needs one decision, its ground truth is
O(1) per step, and 20 disks give a 1,048,575-step chain where a single wrong move
ruins the run.

Pegs are 0, 1, 2; disks 1..n, 1 the smallest; a state is three lists, bottom disk
first.  All disks start on peg 0 and must end on peg 2.  Disk 1 cycles 0->1->2->0
when n is even and 0->2->1->0 when n is odd, which puts the tower on peg 2 either way;
the prompt states the direction.

Example:
    >>> t = Hanoi(disks=3)
    >>> s = t.first_step()
    >>> t.truth(0)
    'move = [1, 0, 2]\\nnext_state = [[3, 2], [], [1]]'
"""

from __future__ import annotations

from ..base import Prompt, PromptStyle, StepInput, TaskOption, TaskSpec, Verdict, checked_advance
from .hanoi_rules import (
    INTS,
    MAX_DISKS,
    MOVE_LINE,
    STATE_LINE,
    Move,
    Pegs,
    apply_move,
    format_key,
    format_pegs,
    read_reply,
)


class Hanoi:
    """Towers of Hanoi with `disks` disks; one step is one move."""

    name = "hanoi"
    summary = "Towers of Hanoi, one move per step (2**disks - 1 steps)"
    options = (TaskOption("disks", int, f"number of disks, 1..{MAX_DISKS} (20 disks = 1,048,575 steps)", required=True),)
    #: prompt variants: other peg names and orders, top-first notation, rules reordered
    #: (see tasks.builtin.hanoi_variants.SURFACES); every variant votes on the canonical key
    variants = 4

    def __init__(self, disks: int) -> None:
        if isinstance(disks, bool) or not isinstance(disks, int):
            raise ValueError(f"--disks must be an integer, got {disks!r}")
        if disks < 1 or disks > MAX_DISKS:
            raise ValueError(f"--disks must be between 1 and {MAX_DISKS}, got {disks}")
        self.disks = disks
        self.spec = TaskSpec("hanoi", {"disks": disks})
        #: +1 means 0->1->2, -1 means 0->2->1; odd disks share disk 1's direction.
        self._small_dir = 1 if disks % 2 == 0 else -1
        self._cycle = "0 -> 1 -> 2 -> 0" if self._small_dir == 1 else "0 -> 2 -> 1 -> 0"
        self._all = frozenset(range(1, disks + 1))
        self._system = _SYSTEM.format(n=disks, cycle=self._cycle)
        #: canonical key -> (move, pegs) of recently judged answers, so that advancing
        #: on a decision does not parse its text again.
        self._parsed: dict[str, tuple[Move, Pegs]] = {}
        self._reference: tuple[object, str] = (None, "")

    # -- Task ---------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return (1 << self.disks) - 1

    def first_step(self) -> StepInput:
        start: Pegs = (tuple(range(self.disks, 0, -1)), (), ())
        return StepInput(0, (start, None))

    def prompt(self, step: StepInput, style: PromptStyle = "chat", variant: int = 0) -> Prompt:
        if variant:
            from .hanoi_variants import variant_prompt

            return variant_prompt(self, step, style, variant)
        pegs, prev = step.premise
        prev_text = "none (this is the first move)" if prev is None else f"[{prev[0]}, {prev[1]}, {prev[2]}]"
        user = _USER.format(prev=prev_text, state=format_pegs(pegs))
        if style == "completion":
            return f"{self._system}\n\n{user}\nmove = ["
        return [{"role": "system", "content": self._system}, {"role": "user", "content": user}]

    def judge(self, step: StepInput, reply: str, variant: int = 0) -> Verdict:
        if variant:
            from .hanoi_variants import to_canonical

            canonical, problem = to_canonical(reply, variant)
            if canonical is None:
                return Verdict(None, "malformed", problem)
            reply = canonical
        exact = MOVE_LINE.match(reply)  # a reply that is already the canonical text needs no full parse
        if exact is not None:
            move = (int(exact[1]), int(exact[2]), int(exact[3]))
            expected = apply_move(step.premise[0], move)
            if expected is not None:
                key = format_key(move, expected)
                if reply == key:
                    return self._keep(key, move, expected)
        read = read_reply(reply)
        if isinstance(read, str):
            return Verdict(None, "malformed", read)
        d, a, b = read[0]
        move = (int(d), int(a), int(b))
        pegs = tuple(read[1])
        seen = [x for p in pegs for x in p]
        if len(seen) != self.disks or set(seen) != self._all:
            return Verdict(None, "malformed", "next_state does not hold every disk exactly once")
        expected = apply_move(step.premise[0], move)
        if expected is None:
            return Verdict(None, "rule_breaking", f"illegal move {list(move)}")
        if expected != pegs:
            return Verdict(None, "rule_breaking", "next_state is not the move applied")
        return self._keep(format_key(move, expected), move, expected)

    def _keep(self, key: str, move: Move, pegs: Pegs) -> Verdict:
        """Remember what `key` parsed to (for `step_after`); the verdict admitting it."""
        parsed = self._parsed
        if len(parsed) > 256:
            parsed.clear()
        parsed[key] = (move, pegs)
        return Verdict(key)

    def advance(self, step: StepInput, key: str) -> StepInput:
        return checked_advance(self, step, key)

    def step_after(self, index: int, key: str) -> StepInput:
        known = self._parsed.get(key)
        if known is not None:
            return StepInput(index + 1, (known[1], known[0]))
        move_text, _, state_text = key.partition("\n")
        move = tuple(int(x) for x in INTS.findall(move_text))
        found = STATE_LINE.findall(state_text)
        if len(move) != 3 or not found:
            raise ValueError(f"step {index}: {key!r} is not a canonical hanoi answer")
        pegs = tuple(tuple(int(x) for x in INTS.findall(p)) for p in found[0])
        return StepInput(index + 1, (pegs, move))

    def is_solved(self, step: StepInput) -> bool:
        pegs = step.premise[0]
        return len(pegs[2]) == self.disks

    def describe_premise(self, step: StepInput) -> str:
        pegs, prev = step.premise
        return f"state {format_pegs(pegs)}, previous move {list(prev) if prev else None}"

    # -- Oracle -----------------------------------------------------------------------
    def _direction(self, disk: int) -> int:
        return self._small_dir if disk % 2 == 1 else -self._small_dir

    def truth_move(self, index: int) -> Move:
        """The (index+1)-th move of the optimal solution, O(1)."""
        m = index + 1
        disk = (m & -m).bit_length()
        moved_before = m >> disk
        direction = self._direction(disk)
        return (disk, (moved_before * direction) % 3, ((moved_before + 1) * direction) % 3)

    def truth_pegs(self, index: int) -> Pegs:
        """The pegs after move index+1 (after `index + 1` moves), O(disks)."""
        m = index + 1
        pegs: list[list[int]] = [[], [], []]
        for disk in range(self.disks, 0, -1):
            moves = (m + (1 << (disk - 1))) >> disk
            pegs[(moves * self._direction(disk)) % 3].append(disk)
        return (tuple(pegs[0]), tuple(pegs[1]), tuple(pegs[2]))

    def truth(self, index: int) -> str:
        return format_key(self.truth_move(index), self.truth_pegs(index))

    def strategy_move(self, step: StepInput) -> Move:
        """The move the prompt's strategy prescribes for this premise."""
        pegs, prev = step.premise
        if prev is None or prev[0] != 1:
            src = next(i for i in range(3) if pegs[i] and pegs[i][-1] == 1)
            return (1, src, (src + self._small_dir) % 3)
        a, b = (i for i in range(3) if not (pegs[i] and pegs[i][-1] == 1))
        top_a = pegs[a][-1] if pegs[a] else None
        top_b = pegs[b][-1] if pegs[b] else None
        if top_a is None and top_b is None:
            # Every disk is on disk 1's peg (off the solution path): only disk 1 can move.
            src = next(i for i in range(3) if pegs[i])
            return (1, src, (src + self._small_dir) % 3)
        if top_b is None or (top_a is not None and top_a < top_b):
            return (top_a, a, b)  # type: ignore[return-value]
        return (top_b, b, a)

    def reference_reply(self, step: StepInput) -> str:
        cached_step, cached_reply = self._reference
        if cached_step is step:  # the simulator and the error count ask for the same step
            return cached_reply
        move = self.strategy_move(step)
        pegs = apply_move(step.premise[0], move)
        assert pegs is not None
        reply = format_key(move, pegs)
        self._reference = (step, reply)
        return reply

    def wrong_replies(self, step: StepInput) -> list[str]:
        right = self.strategy_move(step)
        pegs = step.premise[0]
        out = []
        for src in range(3):
            if not pegs[src]:
                continue
            disk = pegs[src][-1]
            for dst in range(3):
                move = (disk, src, dst)
                after = apply_move(pegs, move)
                if after is not None and move != right:
                    out.append(format_key(move, after))
        return out

    def variant_reply(self, step: StepInput, reply: str, variant: int) -> str:
        """A canonical reply written in prompt variant `variant` (what the simulator answers)."""
        from .hanoi_variants import render

        return render(reply, variant)

    def broken_reply(self, step: StepInput, kind: str) -> str:
        right = self.strategy_move(step)
        if kind == "rule_breaking":
            # A well-formed reply whose state is not the move applied.
            return format_key(right, step.premise[0])
        return f"move = [{right[0]}, {right[1]},"


_SYSTEM = """You are solving Towers of Hanoi one move at a time.
Rules: there are 3 pegs (0, 1, 2) and {n} disks numbered 1 (smallest) to {n} (largest).
A state lists the disks on each peg from bottom to top. Only the top disk of a peg may
move, and a disk may never be placed on a smaller disk. All disks start on peg 0; the goal
is to move them all to peg 2.
Strategy (follow it exactly): if the previous move did not move disk 1, move disk 1 one
peg along the cycle {cycle}. Otherwise, make the only legal move that does not move disk 1.
Answer with exactly two lines and nothing else:
move = [disk, from_peg, to_peg]
next_state = [[...], [...], [...]]"""

_USER = """Previous move: {prev}
Current state: {state}
What is the next move?"""
