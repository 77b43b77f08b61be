"""Shrinking a counterexample to a minimal illegal sub-history that is faithful to the history.

Why. A failing partition can have thousands of operations; users want the few that cannot be
linearized together (jepsen-io/knossos#16). Plain delta debugging (keep any subset the search
rejects) lies: deleting the write a read saw, or the release that made a second acquire legal,
*invents* a violation, and the "minimal" history then shows a read of a value nobody wrote.

Guarantees. The kept operations M (positions unchanged, so real-time order is the history's) are
rejected by the search, and no deleted operation could have made them legal:

* ``ValueFlowModel`` (the registers): every kept observation keeps every write of its value it
  may have seen (called before it returned, and not certainly replaced before it began); when
  all such writes were replaced (a stale read), one of them and a replacing write are kept. So
  no kept read or cas shows a value no kept operation wrote, unless nothing in the partition did.
* ``MonotoneModel`` (porcupine's kv): every kept observation keeps every operation called before
  it returned that it shows (``shows``: an append whose value is in a get's output, a put its
  output starts with). A deleted operation then never persists into a kept observation's state
  in any linearization, so deleting it from one leaves a linearization: put back, it could not
  make M legal (the tests put each back and search again).
* any other model: M is a closed prefix (every operation called before some point T, where no
  operation with a known outcome is in flight) minus some read-only operations. Every deleted
  operation that changes state was called after every kept one returned, so it is linearized
  after them all in any linearization, and a read-only one changes no state: a linearization of
  the history restricted to M would be one of M. So M's violation is the history's.
* deterministic: the budget is counted in search steps, never seconds, so the same history
  gives the same M on any machine under any load (only a ``time_limit`` can cut it short).

Algorithm. First cut, free: no branch of the failing search reached a call after its
*frontier* (``Outcome.frontier``), so every sub-history that keeps the operations called before
it is illegal too. Registers and monotone models: those operations plus the writes their
observations may have seen (or the operations they show), then ddmin (Zeller) over all of them,
each candidate judged grounded-first (cheap) and cutting at its own frontier when accepted. The
result is called minimal when removing any one of its operations was refuted with proof. Other
models: the shortest closed prefix reaching the frontier, then the shortest closed illegal prefix
below it by bisection, then ddmin over its read-only operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .linearizable import Deadline, Outcome, Prepared, run_to_end, search
from .result import UNKNOWN

FLOOR_STEPS = 100_000
"""Search steps shrinking may always spend (about 50 ms), however quick the search was."""

SEARCH_SHARE = 0.5
"""Beyond the floor, shrinking spends at most this share of the steps the search took."""

SHOWN_PAIRS_MAX = 3_000
"""A monotone partition of more operations is shrunk to a closed prefix (pairing every
observation with every operation it may show is quadratic)."""

PROBE_FLOOR = 5_000
PROBE_FACTOR = 2
"""One candidate's search may take PROBE_FLOOR steps, or PROBE_FACTOR times as many as the search
of the last candidate accepted, at most: a subset of an illegal history that is itself illegal
is usually no harder to refute. A candidate that needs more is rejected (and the result is
then not called minimal)."""


@dataclass(slots=True, kw_only=True)
class Shrunk:
    kept: list[int]  # indexes into the partition's operations, in call order
    finished: bool  # ddmin ran to the end: no single operation of ``kept`` can be removed
    steps: int  # search steps spent


class _Budget(Exception):
    """The step budget (or the check's time limit) ran out."""


class _Judge:
    """Decides whether a candidate sub-history is a faithful illegal one, within a step budget."""

    def __init__(self, prep: Prepared, budget: int, probe_cap: int, deadline: Deadline | None) -> None:
        self.prep, self.left, self.probe_cap, self.deadline, self.spent = prep, budget, probe_cap, deadline, 0
        self.needs = _needs(prep) if prep.written is not None else _shown_needs(prep) if prep.shows else None
        self.seen: dict[tuple[int, ...], bool] = {}
        self.frontier: dict[tuple[int, ...], float] = {}  # accepted candidate -> its search's frontier
        self.best = list(range(len(prep.ops)))  # the smallest accepted candidate so far
        self.unproven: set[tuple[int, ...]] = set()  # probes that ran out of their own cap: rejected without proof

    def __call__(self, subset: list[int]) -> bool:
        key = tuple(sorted(subset))
        if key not in self.seen:
            self.seen[key] = self._judge(list(key), key)
            if self.seen[key] and len(key) < len(self.best):
                self.best = list(key)
        return self.seen[key]

    def _judge(self, subset: list[int], key: tuple[int, ...]) -> bool:
        if self.needs is not None and not _grounded(self.prep, self.needs, subset):
            return False
        if self.left <= 0 or (self.deadline is not None and self.deadline.passed()):
            raise _Budget
        last_probe = self.left <= self.probe_cap  # the budget, not the probe cap, bounds this one
        out = run_to_end(search(self.prep, subset, deadline=self.deadline, max_steps=min(self.left, self.probe_cap)))
        self.left -= max(out.steps, 1)
        self.spent += max(out.steps, 1)
        if out.valid == UNKNOWN:
            if last_probe or (self.deadline is not None and self.deadline.passed()):
                raise _Budget
            self.unproven.add(key)
        if out.valid is not False:
            return False
        self.frontier[key] = out.frontier
        self.probe_cap = max(PROBE_FLOOR, PROBE_FACTOR * out.steps)
        return True


@dataclass(slots=True, frozen=True, kw_only=True)
class _Need:
    """What keeping observation ``obs`` requires (value-flow models)."""

    obs: int
    required: frozenset[int]  # writes it may have seen: all kept
    any_of: frozenset[int]  # (stale read) one of these writes of its value kept, unless empty
    stale: bool  # every write it may have seen was replaced: keep a replacing write too


def _needs(prep: Prepared) -> list[_Need]:
    assert prep.observed is not None and prep.written is not None
    ops, observed, written = prep.ops, prep.observed, prep.written
    writers = [i for i in range(len(ops)) if written[i]]
    known_writes = sorted((ops[i].call, ops[i].ret) for i in writers if ops[i].known)

    def replaced_at(ret: float) -> float:
        """The earliest return of a known write called after ``ret``: then the value was replaced."""
        return min((r for c, r in known_writes if c > ret), default=math.inf)

    replaced = {i: replaced_at(ops[i].ret) for i in writers}
    init_replaced = replaced_at(-math.inf)
    needs: list[_Need] = []
    for o, op in enumerate(ops):
        if not op.known:  # an unknown cas shows nothing: what it may have seen is not its output
            continue
        for v in observed[o]:
            seen = [w for w in writers if w != o and v in written[w] and ops[w].call < op.ret]
            fresh = frozenset(w for w in seen if replaced[w] > op.call)
            init_fresh = v == prep.init and init_replaced > op.call
            if fresh:
                needs.append(_Need(obs=o, required=fresh, any_of=frozenset(), stale=False))
            elif seen and not init_fresh:
                needs.append(_Need(obs=o, required=frozenset(),
                                   any_of=frozenset() if v == prep.init else frozenset(seen), stale=True))
    return needs


def _shown_needs(prep: Prepared) -> list[_Need] | None:
    """Monotone models: each known read-only operation needs every operation called before it
    returned that it shows (``MonotoneModel.shows``); None when the partition is too large to
    pair them all (the closed prefix then)."""
    ops, shows = prep.ops, prep.shows
    assert shows is not None
    if len(ops) > SHOWN_PAIRS_MAX:
        return None
    changers = [j for j in range(len(ops)) if not prep.pure[j]]
    return [_Need(obs=g, required=frozenset(j for j in changers if ops[j].call < op.ret and shows(op, ops[j])),
                  any_of=frozenset(), stale=False)
            for g, op in enumerate(ops) if prep.pure[g] and op.known]


def _grounded(prep: Prepared, needs: Sequence[_Need], subset: list[int]) -> bool:
    kept = set(subset)
    ops, written = prep.ops, prep.written
    for need in needs:
        if need.obs not in kept:
            continue
        if not need.required <= kept:
            return False
        if need.any_of and not need.any_of & kept:
            return False
        if need.stale:
            assert written is not None
            # the latest kept write it may have seen must be replaced by a kept known write
            # that returned before the observation began
            latest = max((ops[w].ret for w in need.any_of & kept), default=-math.inf)
            call = ops[need.obs].call
            if not any(written[w] and ops[w].known and ops[w].call > latest and ops[w].ret < call for w in kept):
                return False
    return True


def shrink_partition(prep: Prepared, found: Outcome, *, deadline: Deadline | None = None) -> Shrunk:
    """A faithful minimal illegal sub-history of the partition ``prep``, which the search ``found``
    illegal (its steps set the budget, its frontier the first cut)."""
    judge = _Judge(prep, FLOOR_STEPS + int(SEARCH_SHARE * found.steps), max(PROBE_FLOOR, found.steps), deadline)
    ops = prep.ops
    try:
        if judge.needs is not None:
            fixed, current = [], _ddmin(judge, [], _grounded_window(judge, found.frontier))
        else:
            prefix = _closed_prefix(judge, found.frontier)
            fixed = [i for i in prefix if not (prep.pure[i] and ops[i].known)]
            current = _ddmin(judge, fixed, [i for i in prefix if prep.pure[i] and ops[i].known])
    except _Budget:  # the smallest faithful candidate found so far
        return Shrunk(kept=judge.best, finished=False, steps=judge.spent)
    # minimal: ddmin ran to the end, and removing any one of its operations was refuted with proof
    # (a probe cut short by its cap earlier, on a larger candidate, does not matter)
    finished = not any(tuple(sorted(fixed + [c for c in current if c != i])) in judge.unproven for i in current)
    return Shrunk(kept=sorted(fixed + current), finished=finished, steps=judge.spent)


def _grounded_window(judge: _Judge, frontier: float) -> list[int]:
    """The operations called before the frontier, plus every write called before one of them
    returned (what their observations may have seen; monotone models: what they show); the whole
    partition if that fails."""
    ops, written = judge.prep.ops, judge.prep.written
    everything = list(range(len(ops)))
    before = [i for i in everything if ops[i].call < frontier]
    if written is None:  # a monotone model
        assert judge.needs is not None
        kept = set(before)
        shown = {j for need in judge.needs if need.obs in kept for j in need.required}
        window = sorted(kept | shown)
    else:
        last = max((ops[i].ret for i in before if ops[i].known), default=-math.inf)
        window = [i for i in everything if ops[i].call < frontier or (written[i] and ops[i].call < last)]
    return window if judge(window) else everything


def _closed_prefix(judge: _Judge, frontier: float) -> list[int]:
    """The shortest illegal prefix in call order that ends where no known operation is in flight."""
    ops = judge.prep.ops
    cuts: list[int] = []  # k such that every known operation among ops[:k] returned before ops[k] began
    last = -math.inf
    for k, op in enumerate(ops):
        if k and last < op.call:
            cuts.append(k)
        if op.known:
            last = max(last, op.ret)
    cuts.append(len(ops))
    hi = next(j for j, k in enumerate(cuts) if k == len(ops) or ops[k].call >= frontier)  # illegal: frontier
    lo = -1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if judge(list(range(cuts[mid]))):
            hi = mid
        else:
            lo = mid
    return list(range(cuts[hi]))


def _ddmin(judge: _Judge, fixed: list[int], current: list[int]) -> list[int]:
    """Zeller's ddmin over ``current`` (``fixed`` always kept): a 1-minimal accepted subset."""
    if not current or judge(fixed):
        return []
    chunks = 2
    while len(current) >= 2:
        size = math.ceil(len(current) / chunks)
        pieces = [current[k:k + size] for k in range(0, len(current), size)]
        reduced = False
        for piece in pieces:
            if len(piece) < len(current) and judge(fixed + piece):
                current, chunks, reduced = piece, 2, True
                break
        if not reduced:
            for piece in pieces:
                drop = set(piece)
                rest = [i for i in current if i not in drop]
                if rest and judge(fixed + rest):
                    current, chunks, reduced = rest, max(chunks - 1, 2), True
                    break
        if reduced and judge.needs is not None:  # what the new candidate's search never reached goes
            ops = judge.prep.ops
            frontier = judge.frontier[tuple(fixed + current)]
            cut = [i for i in current if ops[i].call < frontier]
            if len(cut) < len(current) and judge(fixed + cut):
                current, chunks = cut, 2
        if not reduced:
            if chunks >= len(current):
                break
            chunks = min(len(current), chunks * 2)
    return current
