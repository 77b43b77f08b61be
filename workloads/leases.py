"""The lock, watch and ttl workloads: distributed locks, change streams and temporary nodes.

Op vocabularies (each system's client implements them; the reference node's are in
raftlab/systems/dtkv_leases.py, which documents the values):

| workload | ops | final | checker (checker/leases.py) |
| --- | --- | --- | --- |
| lock | ``hold`` {elem, lease_ms, hold_ms}: try-lock, read-modify-write the guarded list, refresh, unlock | ``read-set`` until ok | mutex model + lock-guarded list + fencing tokens |
| watch | ``wput`` key value (a put under ``w``), ``watch`` (one poll from the worker's next index) | six polls per worker | gap-free, duplicate-free, ordered slices of the committed sequence; convergence |
| ttl | per worker, cycles of ``ttl-create``, ``refreshes`` x ``ttl-refresh`` every TTL/3, then ``ttl-read`` every 0.1 s for TTL + bound + 1 s | none | premature and missed expiry, expiry delays |

Each worker is its own lock contender, watcher and temp-node owner (owner id ``p<process>``).
Options (``--workload-opt``): lock ``lease_ms`` (default 2000), ``hold_ms`` (300, a refresh in
the middle: longer than half the lease would need it), ``interval`` (0.05 s between holds),
``pause_ms`` (0; else the holder stalls that long without refreshing, as in a GC pause, and then
writes anyway: longer than the lease, this shows what a lease lock cannot promise) and
``fenced`` (false; true: the guarded write is refused when a newer token was written, which is
what fencing tokens are for: the data survives the overlap the lease could not prevent);
watch ``keys`` (5); ttl ``ttl_ms`` (800), ``refreshes`` (4), ``bound`` (3.0 s: a leader
change re-arms the TTL in full and costs an election, so expiry may be up to about TTL +
election late per change).
"""

from __future__ import annotations

import itertools
from typing import Any

from raftlab.workloads import Workload

from raftlab import generator as gen
from raftlab.history import History, Op, OpType


class LockChecker:
    def __init__(self, time_limit: float | None) -> None:
        self.time_limit = time_limit

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker.leases import check_lock

        return check_lock(history, time_limit=opts.get("time_limit", self.time_limit))


class WatchChecker:
    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker.leases import check_watch

        return check_watch(history)


class TtlChecker:
    def __init__(self, ttl_ms: int, bound: float, missed_when_healed: bool = False) -> None:
        self.ttl_ms = ttl_ms
        self.bound = bound
        self.missed_when_healed = missed_when_healed

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker.leases import check_ttl

        return check_ttl(history, ttl_ms=self.ttl_ms, bound_s=self.bound, missed_when_healed=self.missed_when_healed)


def lock(*, lease_ms: int = 2000, hold_ms: int = 300, pause_ms: int = 0, fenced: bool | str = False,
         interval: float = 0.05, final_retry: float = 0.1, check_time_limit: float | None = 60.0,
         **_: Any) -> Workload:
    if lease_ms < 10 or hold_ms < 0 or pause_ms < 0:
        raise ValueError(f"lock needs lease_ms >= 10, hold_ms >= 0, pause_ms >= 0, not {lease_ms}, {hold_ms}, {pause_ms}")
    fence = fenced in (True, 1, "1", "true", "yes")
    elems = itertools.count()
    holds = gen.stagger(interval, gen.lift(lambda ctx: {"f": "hold", "key": "lock", "value": {
        "elem": next(elems), "lease_ms": int(lease_ms), "hold_ms": int(hold_ms), "pause_ms": int(pause_ms),
        "fenced": fence}}))
    final = gen.until_ok(gen.stagger(final_retry, gen.repeat({"f": "read-set"})))
    return Workload(name="lock", generator=holds, final_generator=final, checker=LockChecker(check_time_limit),
                    final_fs=frozenset({"read-set"}), probe={"f": "read-set"})


def watch(*, keys: int = 5, **_: Any) -> Workload:
    if keys < 1:
        raise ValueError(f"watch needs keys >= 1, not {keys}")
    values = itertools.count(1)

    def op(ctx: gen.Context) -> dict[str, Any]:
        if ctx.rng.random() < 0.5:
            return {"f": "wput", "key": f"k{ctx.rng.randrange(keys)}", "value": next(values)}
        return {"f": "watch", "key": "w"}

    final = gen.each_process(lambda: gen.repeat({"f": "watch", "key": "w"}, 6))
    return Workload(name="watch", generator=gen.lift(op), final_generator=final, checker=WatchChecker(),
                    final_fs=frozenset({"watch"}), probe={"f": "watch", "key": "w"})


def ttl_cycle(ttl_ms: int, refreshes: int, read_for: float) -> gen.Generator:
    """One temp node's life as its owner sees it: create, ``refreshes`` refreshes every TTL/3, then
    a read every 0.1 s for ``read_for`` seconds (long enough to see it go)."""
    arg = {"ttl_ms": int(ttl_ms)}
    return gen.seq(gen.once({"f": "ttl-create", "value": arg}),
                   *(gen.seq(gen.sleep(ttl_ms / 3000), gen.once({"f": "ttl-refresh", "value": arg}))
                     for _ in range(refreshes)),
                   *(gen.seq(gen.sleep(0.1), gen.once({"f": "ttl-read", "value": arg}))
                     for _ in range(int(read_for / 0.1))))


def _gone(e: Op) -> bool:
    return e.type is OpType.OK and not e.value["present"]


def ttl_final_reads(ttl_ms: int, bound: float) -> gen.Generator:
    """Each worker reads its last temp node every 0.2 s until it is gone, for at most TTL + bound
    + 1 s: on a healed cluster it must go within TTL + bound of its owner's last write, so a last
    read that still finds it is a missed expiry the checker names (the reads say ``healed``)."""
    arg = {"ttl_ms": int(ttl_ms), "healed": True}
    reads = int((ttl_ms / 1000 + bound + 1) / 0.2)
    return gen.each_process(lambda: gen.until(_gone, gen.seq(
        *(gen.seq(gen.sleep(0.2), gen.once({"f": "ttl-read", "value": arg})) for _ in range(reads)))))


def ttl(*, ttl_ms: int = 800, refreshes: int = 4, bound: float = 3.0, **_: Any) -> Workload:
    check_ttl_opts(ttl_ms, refreshes, bound)
    return Workload(name="ttl",
                    generator=gen.each_process(lambda: gen.repeat(lambda: ttl_cycle(ttl_ms, refreshes,
                                                                                    ttl_ms / 1000 + bound + 1))),
                    final_generator=None, checker=TtlChecker(int(ttl_ms), float(bound)), probe={"f": "read-set"})


def check_ttl_opts(ttl_ms: int, refreshes: int, bound: float) -> None:
    if ttl_ms < 10 or refreshes < 0 or bound < 0:
        raise ValueError(f"ttl needs ttl_ms >= 10, refreshes >= 0, bound >= 0, not {ttl_ms}, {refreshes}, {bound}")
