"""Shrinking a counterexample to a minimal illegal sub-history that is faithful to the history.

Why. A failing partition can have thousands of operations; users want the few that cannot be
linearized together (jepsen-io/knossos#16). Plain delta debugging (keep any subset the search
rejects) lies: deleting the write a read saw, or the release that made a second acquire legal,
*invents* a violation, and the "minimal" history then shows a read of a value nobody wrote.

Guarantees. The kept operations M (positions unchanged, so real-time order is the history's):

* are rejected by the search (illegal under the model), and
* are faithful, by the strongest rule the model's capabilities allow:
  - ``ValueFlowModel`` (the registers): every kept observation keeps every write of its value it
    may have seen (called before it returned, not certainly replaced before it began); when all
    such writes were replaced (a stale read), one of them and one replacing write are kept. So no
    kept read shows a value no kept operation wrote (unless nothing in the history wrote it).
  - any other model: M with real time ignored is legal (some order of M is accepted by the
    model), so every observation is explained by kept operations and the violation is one of
    real-time order. If even the whole partition has no such order, M itself has none.
* are deterministic: the budget is counted in search steps, never seconds, so the same history
  gives the same M on any machine under any load (only a ``time_limit`` can cut it short).

Algorithm: (1) the shortest faithful illegal prefix of the partition in call order, by bisection;
(2) the latest start that keeps the window faithful and illegal, by bisection; (3) ddmin (Zeller)
on that window, each candidate judged grounded-first (cheap), then by the search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .linearizable import Deadline, Prepared, run_to_end, search

FLOOR_STEPS = 100_000
"""Search steps shrinking may always spend (about 50 ms), however quick the search was."""

SEARCH_SHARE = 0.5
"""Beyond the floor, shrinking spends at most this share of the steps the search took."""


@dataclass(slots=True, kw_only=True)
class Shrunk:
    kept: list[int]  # indexes into the partition's operations, in call order
    finished: bool  # ddmin ran to the end: no single operation of ``kept`` can be removed
    steps: int  # search steps spent


class _Budget(Exception):
    """The step budget (or the check's time limit) ran out."""


class _Judge:
    """Decides whether a candidate sub-history is a faithful illegal one, within a step budget."""

    def __init__(self, prep: Prepared, budget: int, deadline: Deadline | None) -> None:
        self.prep, self.left, self.deadline, self.spent = prep, budget, deadline, 0
        self.seen: dict[tuple[int, ...], bool] = {}
        self.best = list(range(len(prep.ops)))  # the smallest accepted candidate so far
        self.needs = _needs(prep) if prep.written is not None else None
        self.whole_relaxed: bool | str | None = "not searched"  # has the whole partition any order?

    def _search(self, subset: list[int], *, relaxed: bool = False) -> bool | None:
        if self.left <= 0 or (self.deadline is not None and self.deadline.passed()):
            raise _Budget
        out = run_to_end(search(self.prep, subset, deadline=self.deadline, max_steps=self.left, relaxed=relaxed))
        self.left -= max(out.steps, 1)
        self.spent += max(out.steps, 1)
        return None if out.valid == "unknown" else out.valid is True

    def __call__(self, subset: list[int]) -> bool:
        key = tuple(subset)
        if key not in self.seen:
            self.seen[key] = self._judge(subset)
            if self.seen[key] and len(subset) < len(self.best):
                self.best = subset
        return self.seen[key]

    def _judge(self, subset: list[int]) -> bool:
        if self.needs is not None:
            return _grounded(self.prep, self.needs, subset) and self._search(subset) is False
        if self.whole_relaxed == "not searched":
            self.whole_relaxed = self._search(list(range(len(self.prep.ops))), relaxed=True)
        if self.whole_relaxed is False:  # the partition has no order at all: neither may M
            return self._search(subset, relaxed=True) is False
        return self._search(subset) is False and self._search(subset, relaxed=True) is True


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
        if not op.known:
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


def _grounded(prep: Prepared, needs: Sequence[_Need], subset: list[int]) -> bool:
    kept = set(subset)
    ops, written = prep.ops, prep.written
    assert written is not None
    for need in needs:
        if need.obs not in kept:
            continue
        if not need.required <= kept:
            return False
        if need.any_of and not need.any_of & kept:
            return False
        if need.stale:
            # the latest kept write it may have seen must be replaced by a kept known write
            # that returned before the observation began
            latest = max((ops[w].ret for w in need.any_of & kept), default=-math.inf)
            call = ops[need.obs].call
            if not any(written[w] and ops[w].known and ops[w].call > latest and ops[w].ret < call for w in kept):
                return False
    return True


def shrink(prep: Prepared, *, search_steps: int, deadline: Deadline | None = None) -> Shrunk:
    """A faithful minimal illegal sub-history of the (illegal) partition ``prep``."""
    judge = _Judge(prep, FLOOR_STEPS + int(SEARCH_SHARE * search_steps), deadline)
    try:
        kept = _ddmin(judge, _window(judge, list(range(len(prep.ops)))))
    except _Budget:  # the smallest faithful candidate found so far
        return Shrunk(kept=judge.best, finished=False, steps=judge.spent)
    return Shrunk(kept=kept, finished=True, steps=judge.spent)


def _window(judge: _Judge, current: list[int]) -> list[int]:
    """The shortest accepted prefix in call order, then the latest accepted start of it."""
    lo, hi = 0, len(current)  # current[:hi] accepted (the whole partition), current[:lo] not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if judge(current[:mid]):
            hi = mid
        else:
            lo = mid
    current = current[:hi]
    lo, hi = 0, len(current)  # current[lo:] accepted, current[hi:] not (empty)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if judge(current[mid:]):
            lo = mid
        else:
            hi = mid
    return current[lo:]


def _ddmin(judge: _Judge, current: list[int]) -> list[int]:
    """Zeller's ddmin: returns a 1-minimal accepted subset (no single operation can go)."""
    chunks = 2
    while len(current) >= 2:
        size = math.ceil(len(current) / chunks)
        pieces = [current[k:k + size] for k in range(0, len(current), size)]
        reduced = False
        for piece in pieces:
            if len(piece) < len(current) and judge(piece):
                current, chunks, reduced = piece, 2, True
                break
        if not reduced:
            for piece in pieces:
                drop = set(piece)
                rest = [i for i in current if i not in drop]
                if rest and judge(rest):
                    current, chunks, reduced = rest, max(chunks - 1, 2), True
                    break
        if not reduced:
            if chunks >= len(current):
                break
            chunks = min(len(current), chunks * 2)
    return current
