"""Wing & Gong's linearizability search with Lowe's memoisation, as porcupine's ``checkSingle``.

Theory of operation. The operations of one partition become 2n events (a call and a return each)
in real-time order, threaded on a doubly linked list held in two int arrays. The search walks the
list: at a call it tries to linearize that operation now (the model accepts it from the current
state) and, if the pair (set of linearized operations, new state) was never seen, lifts the
operation's call and return out of the list and starts again from the head. Reaching a return
whose operation was not linearized means the current prefix cannot be extended: backtrack (pop
the last linearized operation, put its events back, try the next candidate). An empty list means
every operation was placed: linearizable. Backtracking past the first operation: not.

Unknown outcomes (``info``, never completed) have ``ret = inf``: their return goes after every
other event, so they may take effect anywhere after their call (the model applies their effect
without an observed output; placed after everything, that is the same as never).

Speed in CPython comes from: a Python int as the bitset, a ``set`` of (bitset, state) for the memo,
int lists for the links, and no objects created per step beyond the memo key. The search is a
generator that yields every ``slice_steps`` steps, so ``check`` can interleave partitions and an
expensive one never delays finding a cheap illegal one (porcupine's c50-bad lesson).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftlab.history import Operation

from .result import UNKNOWN, Verdict


@dataclass(slots=True, kw_only=True)
class Outcome:
    valid: Verdict
    reason: str = ""
    prefix: list[int] = field(default_factory=list)  # indexes into the partition's operations
    states: list[Hashable] = field(default_factory=list)  # state after each prefix step
    steps: int = 0


class Deadline:
    """A shared wall-clock budget: the only clock the checker reads."""

    __slots__ = ("at",)

    def __init__(self, seconds: float | None) -> None:
        self.at = math.inf if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.at != math.inf and time.monotonic() >= self.at


def search(
    model: Any,
    ops: Sequence[Operation],
    *,
    deadline: Deadline | None = None,
    slice_steps: int = 2000,
    max_memo: int | None = None,
) -> Generator[None, None, Outcome]:
    """Decide one partition; yields between slices of work, returns an Outcome."""
    n = len(ops)
    if n == 0:
        return Outcome(valid=True)
    compile_op = getattr(model, "compile", None)
    fns: list[Callable[[Hashable], tuple[bool, Hashable]]] = (
        [compile_op(op) for op in ops] if compile_op is not None
        else [functools.partial(_step_of, model.step, op) for op in ops]
    )
    # events: (position, order, entry) — calls and returns sorted by real time; unknown returns last
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, 2 * i))
        events.append((op.ret, op.call, 2 * i + 1))
    events.sort()
    size = 2 * n
    head, tail = size, size + 1  # sentinels: the walk always meets a return before the tail
    nxt = [tail] * (size + 2)
    prv = [head] * (size + 2)
    last = head
    for _, _, entry in events:
        nxt[last] = entry
        prv[entry] = last
        last = entry
    nxt[last] = tail
    prv[tail] = last

    state: Hashable = model.init()
    # Once every operation with a known outcome is placed, the unknown ones left can take effect
    # "never": success without placing them (porcupine places them all; the answer is the same).
    known = [op.known for op in ops]
    known_left = sum(known)
    if known_left == 0:
        return Outcome(valid=True)
    linearized = 0
    memo: set[tuple[int, Hashable]] = set()
    calls: list[tuple[int, Hashable]] = []
    best_len = 0
    best: list[int] = []
    best_states: list[Hashable] = []
    dirty = False
    steps = 0
    entry = nxt[head]

    def snapshot() -> None:
        nonlocal best, best_states
        best = [e >> 1 for e, _ in calls]
        best_states = [s for _, s in calls[1:]] + [state]

    countdown = slice_steps
    while nxt[head] != tail:
        countdown -= 1
        if not countdown:
            countdown = slice_steps
            steps += slice_steps
            if deadline is not None and deadline.passed():
                if dirty:
                    snapshot()
                return Outcome(valid=UNKNOWN, reason=f"time limit reached after {steps} steps",
                               prefix=best, states=best_states, steps=steps)
            if max_memo is not None and len(memo) > max_memo:
                if dirty:
                    snapshot()
                return Outcome(valid=UNKNOWN, reason=f"memory budget of {max_memo} memo entries reached",
                               prefix=best, states=best_states, steps=steps)
            yield
        if not entry & 1:  # a call
            i = entry >> 1
            ok, new_state = fns[i](state)
            if ok:
                bits = linearized | (1 << i)
                key = (bits, new_state)
                if key not in memo:
                    memo.add(key)
                    calls.append((entry, state))
                    state = new_state
                    linearized = bits
                    if known[i]:
                        known_left -= 1
                        if not known_left:  # the order found is kept: the timeline shows it on hover
                            snapshot()
                            return Outcome(valid=True, prefix=best, states=best_states,
                                           steps=steps + slice_steps - countdown)
                    # lift the call and its return out of the list
                    p, q = prv[entry], nxt[entry]
                    nxt[p] = q
                    prv[q] = p
                    r = entry + 1
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    if len(calls) > best_len:
                        best_len = len(calls)
                        dirty = True
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:  # a return whose call is not linearized: backtrack
            if dirty:
                snapshot()
                dirty = False
            if not calls:
                return Outcome(valid=False, prefix=best, states=best_states, steps=steps + slice_steps - countdown)
            entry, state = calls.pop()
            linearized &= ~(1 << (entry >> 1))
            if known[entry >> 1]:
                known_left += 1
            # unlift: return first, then call (reverse order of lifting)
            r = entry + 1
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    snapshot()
    return Outcome(valid=True, prefix=best, states=best_states, steps=steps + slice_steps - countdown)


def _step_of(step: Callable[[Hashable, Operation], tuple[bool, Hashable]], op: Operation,
             state: Hashable) -> tuple[bool, Hashable]:
    return step(state, op)


def run_to_end(gen: Generator[None, None, Outcome]) -> Outcome:
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def stuck_operations(ops: Sequence[Operation], prefix: Sequence[int]) -> list[int]:
    """The operations that could have come next after ``prefix`` in real-time order, but did not fit."""
    placed = set(prefix)
    remaining = [i for i in range(len(ops)) if i not in placed]
    if not remaining:
        return []
    first_return = min(ops[i].ret for i in remaining)
    return [i for i in remaining if ops[i].call < first_return]


def minimise(model: Any, ops: Sequence[Operation], *, budget: float = 2.0) -> tuple[list[int], bool]:
    """Delta debugging (ddmin) over operations: a small subset that is still not linearizable.

    Real-time order among the kept operations is unchanged (positions are kept), so the subset is a
    genuine sub-history. Bounded by ``budget`` seconds; returns the smallest failing subset found
    and whether ddmin finished (then no single chunk of it can be removed at the finest split).
    """
    deadline = Deadline(budget)
    current = list(range(len(ops)))

    grounding = getattr(model, "grounding", None)
    grounded = grounding(ops) if grounding is not None else None

    def illegal(subset: list[int]) -> bool:
        chosen = [ops[i] for i in subset]
        if grounded is not None and not grounded(chosen):
            return False
        out = run_to_end(search(model, chosen, deadline=deadline))
        return out.valid is False

    chunks = 2
    finished = False
    while not deadline.passed():
        if len(current) < 2:
            finished = True
            break
        size = math.ceil(len(current) / chunks)
        pieces = [current[k:k + size] for k in range(0, len(current), size)]
        reduced = False
        for piece in pieces:
            if deadline.passed():
                break
            if len(piece) < len(current) and illegal(piece):
                current, chunks, reduced = piece, 2, True
                break
        if not reduced:
            for piece in pieces:
                if deadline.passed():
                    break
                rest = [i for i in current if i not in set(piece)]
                if rest and illegal(rest):
                    current, chunks, reduced = rest, max(chunks - 1, 2), True
                    break
        if not reduced:
            if chunks >= len(current):
                finished = not deadline.passed()  # a search cut short proves nothing
                break
            chunks = min(len(current), chunks * 2)
    return current, finished
