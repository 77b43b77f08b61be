"""A run's history placed in time: operation pairs, fault intervals, and where each violation began.

The checker answers *whether* a key's history is linearizable and shows a counterexample; a
reader of a campaign also wants *when* it went wrong, on *which node*, and *under which fault*.
This module answers that from the stored history alone (so ``raftlab report`` can rebuild it):

* ``fault_intervals``: each fault from the invoke that took effect to the event that healed it,
  using the nemesis package's ``perf`` table (which fs start and stop which fault);
* ``earliest_bad``: for one key, the shortest prefix of its events that is already not
  linearizable. Linearizability of a prefix is monotone (each later event only adds a
  constraint: an invoke adds an operation that may also never happen, a completion narrows one),
  so a binary search over prefixes with the checker's public ``check`` finds the event at which
  the violation became observable: usually the completion of a stale read. That operation's
  times, serving node (the history's ``node`` field) and the faults active during it are what
  the report puts on its first screen; a minimal illegal sub-history of that prefix explains it;
* ``locate``: ``earliest_bad`` for every key the checker did not settle as valid (the failing
  one, and those left unsearched because the search stops at the first illegal key), within a
  time budget, earliest first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from raftlab.history import NEMESIS, History, Op, OpType

Interval = tuple[str, str, int, int]
"""(fault name, colour, start ns, stop ns)."""

ANSWER_ERRORS = re.compile(r"mismatch", re.IGNORECASE)
"""A ``fail`` whose error matches is the store's definite answer (a cas whose expected value was
not there), not unavailability: dtkv says ``cas mismatch: found 2``, the toy server ``cas-mismatch``."""


def pair(history: Sequence[Op]) -> list[tuple[Op, Op | None]]:
    """Client invokes with their completions (None when never completed), in invoke order."""
    open_: dict[object, int] = {}
    out: list[tuple[Op, Op | None]] = []
    for op in history:
        if not op.is_client:
            continue
        if op.type is OpType.INVOKE:
            open_[op.process] = len(out)
            out.append((op, None))
        elif op.process in open_:
            slot = open_.pop(op.process)
            out[slot] = (out[slot][0], op)
    return out


def answered(done: Op | None) -> bool:
    """Did the system answer? ok, or a fail that is a definite answer (ANSWER_ERRORS)."""
    if done is None:
        return False
    return done.type is OpType.OK or (done.type is OpType.FAIL and bool(ANSWER_ERRORS.search(done.error or "")))


def fault_intervals(history: Sequence[Op], perf: Sequence[dict[str, Any]], end: int) -> list[Interval]:
    """(fault name, colour, start ns, stop ns) for every fault that took effect.

    Faults may share their fs (``kill`` and ``kill-leader``; ``link`` and ``link-slow``): an op is
    counted for the fault its ``fault`` field names (the nemesis lanes set it), and only an op
    without one falls back to the fault that owns its f; a heal without one (the final healer)
    ends every active fault it heals.
    """
    by_name = {p["name"]: p for p in perf}
    starts = {f: p for p in perf for f in p.get("start", ())}
    active: dict[str, int] = {}
    out: list[Interval] = []
    for op in history:
        if op.process != NEMESIS or op.type is OpType.INVOKE:
            continue
        named = (op.extra or {}).get("fault")
        if op.f in starts and not op.error:
            active.setdefault(named if named in by_name else starts[op.f]["name"], op.time)
            continue
        ended = [named] if named in active else [n for n in active if op.f in by_name[n].get("stop", ())]
        for name in ended:
            out.append((name, by_name[name].get("color", "#ccc"), active.pop(name), op.time))
    for name, t in active.items():
        out.append((name, by_name[name].get("color", "#ccc"), t, end))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveFault:
    """A fault in effect during an operation, and the nodes it touched."""

    name: str
    start: float  # seconds
    stop: float
    nodes: tuple[str, ...]
    detail: str  # e.g. the partition's shape "n1 | n2 n3 n4 n5"

    def describe(self) -> str:
        what = f" ({self.detail})" if self.detail else f" on {', '.join(self.nodes)}" if self.nodes else ""
        return f"{self.name}{what}, {self.start:.2f}-{self.stop:.2f}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One operation of an explanation, in seconds and with its node."""

    words: str
    call: float
    ret: float | None  # None: outcome unknown
    node: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BadOp:
    """The earliest operation of one key at which the key's history stopped being linearizable."""

    key: str
    words: str  # the model's description, e.g. "r6: read() -> 0"
    call: float  # seconds since the run's start
    ret: float
    node: str | None
    faults: tuple[ActiveFault, ...]
    minimal: tuple[Step, ...]  # a small illegal sub-history of the prefix ending here

    def describe(self) -> str:
        node = f" on {self.node}" if self.node else ""
        during = "; ".join(f.describe() for f in self.faults) or "no fault active"
        return f"{self.words} at {self.ret:.3f}s{node}, during: {during}"


def _nodes_in(value: Any, known: set[str]) -> set[str]:
    if isinstance(value, str):
        return {value} if value in known else set()
    if isinstance(value, dict):
        return set().union(*(_nodes_in(k, known) | _nodes_in(v, known) for k, v in value.items())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_nodes_in(v, known) for v in value)) if value else set()
    return set()


def active_faults(history: Sequence[Op], intervals: Iterable[Interval], a: int, b: int) -> tuple[ActiveFault, ...]:
    """The faults whose interval overlaps [a, b] (ns), each with the nodes its start event names."""
    started = {op.time: op for op in history if op.process == NEMESIS and op.type is not OpType.INVOKE}
    known = {str(op.extra["node"]) for op in history if op.extra and "node" in op.extra}
    for ev in started.values():  # hosts a nemesis names: kill/pause targets, a partition's grudge
        if isinstance(ev.value, dict):
            for name in ("targets", "done"):
                if isinstance(ev.value.get(name), list):
                    known |= {h for h in ev.value[name] if isinstance(h, str)}
            if isinstance(ev.value.get("grudge"), dict):
                known |= {str(h) for h in ev.value["grudge"]}
    out = []
    for name, _, s, e in intervals:
        if s <= b and a <= e:
            ev = started.get(s)
            value = ev.value if ev is not None else None
            detail = value.get("description", "") if isinstance(value, dict) else ""
            out.append(ActiveFault(name=name, start=s / 1e9, stop=e / 1e9,
                                   nodes=tuple(sorted(_nodes_in(value, known))), detail=str(detail)))
    return tuple(out)


def _node(op: Op | None) -> str | None:
    return str(op.extra["node"]) if op is not None and op.extra and "node" in op.extra else None


def earliest_bad(events: Sequence[Op], model: Any, *, time_limit: float) -> tuple[int, Any] | None:
    """(n, result): the shortest prefix ``events[:n]`` that is not linearizable, and its check.

    None when the whole is not shown illegal within ``time_limit`` seconds.
    """
    from raftlab.checker import check

    deadline = time.monotonic() + time_limit

    def illegal(n: int, shrink: float = 0.0) -> Any:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        r = check(History(events[:n], validate=False), model, time_limit=left, minimise_budget=shrink, workers=1)
        return r if r.valid is False else None

    if illegal(len(events)) is None:
        return None
    lo, hi = 1, len(events)  # events[:hi] is illegal; find the smallest such hi
    while lo < hi:
        mid = (lo + hi) // 2
        if illegal(mid) is not None:
            hi = mid
        else:
            lo = mid + 1
    result = illegal(hi, shrink=1.0)
    return (hi, result) if result is not None else None


UNSEARCHED = "not searched to the end: another partition was illegal"


def settle(history: History, result: Any, *, budget: float = 10.0) -> Any:
    """``result`` with the partitions the checker left unsearched (it stops at the first illegal
    one) checked one by one, within ``budget`` seconds, so the timeline can show every key's
    linearization and every illegal key's counterexample. Returns a new Result; ``result`` is kept.
    """
    from dataclasses import replace as copy

    from raftlab.checker import ModelError, PartitionResult, check
    from raftlab.checker.models import make_model

    todo = [p for p in result.partitions if p.valid == "unknown" and p.reason == UNSEARCHED]
    try:
        model = make_model(result.model) if todo else None
    except ModelError:
        return result
    full_ops = history.operations()
    deadline = time.monotonic() + budget
    settled: dict[str, PartitionResult] = {}
    for part in todo:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        events = [op for op in history if op.is_client and str(op.key) == part.name]
        mine = [op.id for op in full_ops if str(op.key) == part.name]
        r = check(History(events, validate=False), model, time_limit=left, minimise_budget=min(1.0, left), workers=1)
        if len(r.partitions) != 1:
            continue
        sub = r.partitions[0]
        ids = dict(enumerate(mine))
        settled[part.name] = PartitionResult(
            name=part.name, valid=sub.valid, operations=sub.operations, reason=sub.reason,
            longest_prefix=[ids[i] for i in sub.longest_prefix], states=sub.states,
            stuck=[ids[i] for i in sub.stuck], minimal=[ids[i] for i in sub.minimal],
            minimal_finished=sub.minimal_finished, described={ids[i]: w for i, w in sub.described.items()})
    return copy(result, partitions=[settled.get(p.name, p) for p in result.partitions])


def locate(history: Sequence[Op], model_name: str, keys: Sequence[str], intervals: Sequence[Interval],
           *, budget: float = 15.0) -> list[BadOp]:
    """The earliest bad operation of each of ``keys`` that is not linearizable, earliest first."""
    from raftlab.checker import ModelError
    from raftlab.checker.models import make_model

    try:
        model = make_model(model_name)
    except ModelError:
        return []
    by_key: dict[str, list[Op]] = {}
    for op in history:
        if op.is_client:
            by_key.setdefault(str(op.key), []).append(op)
    deadline = time.monotonic() + budget
    found = []
    for key in keys:
        events = by_key.get(key)
        left = deadline - time.monotonic()
        if not events or left <= 0:
            continue
        located = earliest_bad(events, model, time_limit=left)
        if located is None:
            continue
        n, result = located
        last = events[n - 1]
        invoke = next(op for op in reversed(events[: n - 1]) if op.process == last.process and op.type is OpType.INVOKE)
        ops = History(events[:n], validate=False).operations()
        bad = next(op for op in ops if op.call == events.index(invoke))
        failing = result.failing
        steps = tuple(Step(words=model.describe_op(ops[i]), call=events[ops[i].call].time / 1e9,
                           ret=None if ops[i].ret_time is None else ops[i].ret_time / 1e9,
                           node=_node(events[ops[i].call]))
                      for i in sorted(failing.minimal if failing else [], key=lambda i: ops[i].call))
        found.append(BadOp(key=key, words=model.describe_op(bad), call=invoke.time / 1e9, ret=last.time / 1e9,
                           node=_node(last) or _node(invoke), faults=active_faults(history, intervals, invoke.time,
                                                                                    last.time), minimal=steps))
    return sorted(found, key=lambda b: b.ret)
