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

Reductions, each of which keeps at least one linearization whenever there is one (so verdicts
are unchanged; ``tests/checker/test_properties.py`` compares them with a brute-force oracle):

* every known operation placed: done (unknown ones left over take effect "never");
* unknown reads, and unknown writes of values nothing observes, are not searched at all;
* of identical unknown operations the earlier-called is placed first; an unknown operation that
  leaves the state as it was is not placed; after an unknown write of v only an observer of v
  may come next (``ValueFlowModel``). These three took porcupine's etcd_002 from ~790k search
  steps to ~1.6k: unknown outcomes are what makes the plain search explode;
* a read-only operation (``ReadOnlyModel``) that fitted is never un-placed for an alternative;
* ``MonotoneModel`` (porcupine's kv, where appends only grow a string): at each node the
  read-only calls are tried first, and one that fits is placed with no alternative (it changes no
  state, and whatever had to precede it already does); a known get whose output the state can
  no longer grow into, with no put that could still come before it and lead to its value, kills
  the node before any child is searched (gets called a little later are examined too). This is
  what porcupine's kv c50-ok needed: no unknown outcomes, but ~900k steps of appends tried in
  every order until a get's return stopped them; now ~53k.

Speed in CPython comes from: a Python int as the bitset, a ``set`` of (bitset, state) for the memo,
int lists for the links, and no objects created per step beyond the memo key. The search is a
generator that yields every ``slice_steps`` steps, so ``check`` can interleave partitions and an
expensive one never delays finding a cheap illegal one (porcupine's c50-bad lesson).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
import time
from collections.abc import Callable, Generator, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftlab.history import Operation
from raftlab.protocols import CompiledModel, Model, MonotoneModel, ReadOnlyModel, ValueFlowModel

from .result import UNKNOWN, Verdict

LOOKAHEAD = 16
"""MonotoneModel: besides the calls before the first return (the ones that may come next), this
many list entries after it are examined for a get that can no longer fit: it is called later,
but it must still be linearized, so the branch is dead as well (c50-ok: 108k -> 53k steps)."""

RESETS_EXAMINED = 64
"""A get with more resets overlapping it than this is never declared dead (the cut is weaker,
never wrong, and the masks stay small)."""


@dataclass(slots=True, kw_only=True)
class Outcome:
    valid: Verdict
    reason: str = ""
    prefix: list[int] = field(default_factory=list)  # indexes into the partition's operations
    states: list[Hashable] = field(default_factory=list)  # state after each prefix step
    steps: int = 0
    # Illegal only: the latest real-time position of a return the search was ever stopped by. No
    # branch reached a call after it, so every sub-history keeping the operations called before
    # it is searched the same way, and is illegal too (the shrinker's first cut).
    frontier: float = -math.inf


class Deadline:
    """A shared wall-clock budget: the only clock the checker reads."""

    __slots__ = ("at",)

    def __init__(self, seconds: float | None) -> None:
        self.at = math.inf if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.at != math.inf and time.monotonic() >= self.at


@dataclass(slots=True, kw_only=True)
class Prepared:
    """What the search needs to know about each operation of one partition, computed once.

    ``fns[i](state) -> (ok, new_state)`` is the model's step for operation i (compiled when the
    model is a ``CompiledModel``); ``pure[i]``: it never changes the state (``ReadOnlyModel``);
    ``observed`` / ``written``: its values (``ValueFlowModel``), or None for other models.
    """

    ops: Sequence[Operation]
    init: Hashable
    fns: list[Callable[[Hashable], tuple[bool, Hashable]]]
    pure: list[bool]
    observed: list[tuple[Hashable, ...]] | None
    written: list[tuple[Hashable, ...]] | None
    resets: list[tuple[Hashable, ...] | None] | None = None  # MonotoneModel: the states a reset leaves
    reachable: list[Callable[[Hashable], bool]] | None = None  # MonotoneModel: may it fit later
    shows: Callable[[Operation, Operation], bool] | None = None  # MonotoneModel: for the shrinker


def prepare(model: Model[Any], ops: Sequence[Operation]) -> Prepared:
    fns = ([model.compile(op) for op in ops] if isinstance(model, CompiledModel)
           else [functools.partial(_step_of, model.step, op) for op in ops])
    pure = [bool(model.read_only(op)) for op in ops] if isinstance(model, ReadOnlyModel) else [False] * len(ops)
    flow = isinstance(model, ValueFlowModel)
    mono = isinstance(model, MonotoneModel)
    return Prepared(ops=ops, init=model.init(), fns=fns, pure=pure,
                    observed=[model.observed(op) for op in ops] if flow else None,
                    written=[model.written(op) for op in ops] if flow else None,
                    resets=[model.resets(op) for op in ops] if mono else None,
                    reachable=[model.reachable(op) for op in ops] if mono else None,
                    shows=model.shows if mono else None)


def searched(prep: Prepared, chosen: Iterable[int]) -> list[int]:
    """The operations of ``chosen`` the search must place: every known one, and the unknown ones
    whose effect could matter. An unknown read constrains nothing; an unknown write of a value no
    chosen operation observes can only make later observations fail, so "never" is always at
    least as good for it (``ValueFlowModel``'s contract)."""
    ops, pure = prep.ops, prep.pure
    chosen = list(chosen)
    if prep.observed is None or prep.written is None:
        return [i for i in chosen if ops[i].known or not pure[i]]
    observed, written = prep.observed, prep.written
    seen = {v for i in chosen for v in observed[i]}
    return [i for i in chosen if ops[i].known or (not pure[i] and any(v in seen for v in written[i]))]


def search(
    prep: Prepared,
    chosen: Sequence[int] | None = None,
    *,
    deadline: Deadline | None = None,
    slice_steps: int = 2000,
    max_memo: int | None = None,
    max_steps: int | None = None,
) -> Generator[None, None, Outcome]:
    """Decide the operations ``chosen`` (indexes into ``prep.ops``; default all) of one partition.

    Yields between slices of work and returns an Outcome whose ``prefix`` indexes ``prep.ops``.
    ``max_steps`` bounds the work (past it: unknown), so a bounded search is deterministic.
    """
    index = searched(prep, range(len(prep.ops)) if chosen is None else chosen)
    ops = [prep.ops[i] for i in index]
    n = len(ops)
    if not any(op.known for op in ops):
        return Outcome(valid=True)
    fns = [prep.fns[i] for i in index]
    pure = [prep.pure[i] for i in index]
    known = [op.known for op in ops]
    rets = [op.ret for op in ops]
    # Unknown operations are where the search explodes (each may take effect anywhere after its
    # call), so three rules place fewer of them; each keeps some canonical linearization:
    # * twins: of two identical unknown operations, the earlier-called is placed first (both
    #   have been called, and neither must ever return, so they are interchangeable);
    # * no-ops: an unknown operation that leaves the state as it was is not placed (it stays
    #   pending, which allows strictly more);
    # * value flow (ValueFlowModel): right after an unknown write of v, only an operation that
    #   observes v may follow. Anything else would overwrite v (drop the write: it never happened)
    #   or leave it (then place the write later, which an unknown operation may always be). This
    #   restriction is part of the memo key (FLAG), since it limits what follows.
    unknown = [not k for k in known]
    twin = [-1] * n
    last_of: dict[tuple[Any, ...], int] = {}
    for i, op in enumerate(ops):
        if unknown[i]:
            sig = (op.f, repr(op.key), repr(op.input))
            twin[i] = last_of.get(sig, -1)
            last_of[sig] = i
    flow = prep.observed is not None
    observes = [frozenset(prep.observed[i]) for i in index] if prep.observed is not None else []
    flag = 1 << n
    watching = False
    # MonotoneModel: a known read-only operation i that does not fit now, in a state it cannot
    # grow into one it fits, can never fit once the resets that could still come before it and
    # would leave a state it can grow into are placed (``reset_mask[i]``): the branch is dead.
    # Only the resets that overlap i can be unplaced then: one that returned before i was called
    # is placed, or the walk would have stopped at its return before reaching i (the lookahead
    # stops at a reset's return for the same reason).
    mono = prep.resets is not None and prep.reachable is not None
    reach = [prep.reachable[i] for i in index] if prep.reachable is not None else []
    reset_mask = [0] * n
    is_reset = [False] * n
    if prep.resets is not None:
        leaves = [prep.resets[k] for k in index]
        is_reset = [v is not None for v in leaves]
        by_call = sorted((ops[j].call, j) for j in range(n) if is_reset[j])
        calls_at = [c for c, _ in by_call]
        running: list[tuple[float, int]] = []  # (return, j): resets called before the get, by return
        taken = 0
        for i in sorted(range(n), key=lambda i: ops[i].call):
            if not (pure[i] and known[i]):
                continue
            call = ops[i].call
            while taken < len(by_call) and by_call[taken][0] < call:
                j = by_call[taken][1]
                heapq.heappush(running, (ops[j].ret, j))
                taken += 1
            while running and running[0][0] < call:
                heapq.heappop(running)
            overlapping = [j for _, j in running] + [j for _, j in by_call[taken:bisect.bisect_left(calls_at, ops[i].ret)]]
            reset_mask[i] = -1 if len(overlapping) > RESETS_EXAMINED else sum(  # -1: never dead
                1 << j for j in overlapping if any(map(reach[i], leaves[j] or ())))
    # events: (position, order, entry) — calls and returns sorted by real time; unknown returns last
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, op.call, 2 * i))
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

    state: Hashable = prep.init
    # Once every operation with a known outcome is placed, the unknown ones left can take effect
    # "never": success without placing them (porcupine places them all; the answer is the same).
    known_left = sum(known)
    linearized = 0
    memo: set[tuple[int, Hashable]] = set()
    calls: list[tuple[int, Hashable]] = []
    best_len = 0
    best: list[int] = []
    best_states: list[Hashable] = []
    dirty = False
    steps = 0
    frontier = -math.inf
    entry = nxt[head]

    def snapshot() -> None:
        nonlocal best, best_states
        best = [index[e >> 1] for e, _ in calls]
        best_states = [s for _, s in calls[1:]] + [state]

    def stopped(reason: str) -> Outcome:
        if dirty:
            snapshot()
        return Outcome(valid=UNKNOWN, reason=reason, prefix=best, states=best_states, steps=steps)

    # MonotoneModel: two phases at each node. First only the read-only calls are tried (``scan``):
    # one that fits is placed with no alternative (see the backtrack), and one that can never fit
    # kills the node before any child is searched; only then are the others tried.
    scan = mono
    countdown = slice_steps
    while True:
        countdown -= 1
        if not countdown:
            countdown = slice_steps
            steps += slice_steps
            if deadline is not None and deadline.passed():
                return stopped(f"time limit reached after {steps} steps")
            if max_memo is not None and len(memo) > max_memo:
                return stopped(f"memory budget of {max_memo} memo entries reached")
            if max_steps is not None and steps >= max_steps:
                return stopped(f"step budget of {max_steps} reached")
            yield
        if not entry & 1:  # a call
            i = entry >> 1
            if (pure[i] is not scan and (scan or mono)) or (watching and state not in observes[i]) or (
                    twin[i] >= 0 and not linearized >> twin[i] & 1):
                entry = nxt[entry]
                continue
            ok, new_state = fns[i](state)
            if ok and unknown[i] and new_state == state:
                ok = False
            if ok:
                bits = linearized | (1 << i)
                key = (bits | flag, new_state) if flow and unknown[i] else (bits, new_state)
                if key not in memo:
                    memo.add(key)
                    calls.append((entry, state))
                    state = new_state
                    linearized = bits
                    watching = flow and unknown[i]
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
                    scan = mono
                    continue
                if scan:  # a read-only operation that fits, already searched from here: dead end
                    entry = -1
            elif scan and known[i] and not reset_mask[i] & ~linearized and not reach[i](state):
                if rets[i] > frontier:  # the cut must keep i and what may reset before it returns
                    frontier = rets[i]
                entry = -1
            if entry >= 0:
                entry = nxt[entry]
                continue
        elif scan:  # no read-only call fits here: now the others
            dead = False
            e, k = entry, LOOKAHEAD  # gets called later must fit later too
            while k and e < size:
                j = e >> 1
                if e & 1:
                    if is_reset[j]:  # an unplaced reset returns before what follows: stop
                        break
                elif pure[j] and known[j] and not reset_mask[j] & ~linearized and not reach[j](state):
                    if rets[j] > frontier:
                        frontier = rets[j]
                    dead = True
                    break
                e, k = nxt[e], k - 1
            if not dead:
                scan = False
                entry = nxt[head]
                continue
            entry = -1
        # a return whose call is not linearized (or a dead end): backtrack
        if dirty:
            snapshot()
            dirty = False
        if entry >= 0 and rets[entry >> 1] > frontier:
            frontier = rets[entry >> 1]
        while True:
            if not calls:
                return Outcome(valid=False, prefix=best, states=best_states,
                               steps=steps + slice_steps - countdown, frontier=frontier)
            entry, state = calls.pop()
            i = entry >> 1
            linearized &= ~(1 << i)
            if known[i]:
                known_left += 1
            # unlift: return first, then call (reverse order of lifting)
            r = entry + 1
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            # A read-only operation that fits is placed first with no alternative: any completion
            # from here is one with it first (it changes no state, and every operation that must
            # precede it already does). So its failure is its parent's.
            if not pure[i]:
                break
        watching = flow and bool(calls) and unknown[calls[-1][0] >> 1]
        entry = nxt[entry]
        scan = False


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
