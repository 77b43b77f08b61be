"""The lock, watch and ttl checkers (checker/leases.py) on small hand-written histories: each
catches the violation it exists for, and passes the same history without it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from raftlab.checker.leases import check_lock, check_ttl, check_watch

from raftlab.history import NEMESIS, History, Op, OpType

MS = 1_000_000


def pair(process: int, f: str, t0: int, t1: int, value: Any = None, *, kind: OpType = OpType.OK,
         key: Any = None, error: str | None = None) -> list[Op]:
    return [Op(type=OpType.INVOKE, process=process, f=f, key=key, time=t0),
            Op(type=kind, process=process, f=f, key=key, value=value, time=t1, error=error)]


def history(*pairs: list[Op]) -> History:
    ops = sorted((op for p in pairs for op in p), key=lambda o: (o.time, o.type is OpType.INVOKE))
    return History(ops)


def hold(process: int, t0: int, t1: int, elem: int, token: int) -> list[Op]:
    return pair(process, "hold", t0, t1, {"elem": elem, "token": token, "acquired_ns": 10 * MS,
                                          "released_ns": t1 - t0 - 10 * MS}, key="lock")


def test_lock_sequential_holds_pass_and_an_overlap_loses_an_element() -> None:
    good = history(hold(0, 0, 100 * MS, 1, 5), hold(1, 120 * MS, 220 * MS, 2, 9),
                   pair(2, "read-set", 300 * MS, 310 * MS, [[5, 1], [9, 2]]))
    r = check_lock(good)
    assert r.valid is True and "2 acknowledged holds" in r.explanation and "token 9" in r.explanation
    overlapping = history(hold(0, 0, 100 * MS, 1, 5), hold(1, 30 * MS, 200 * MS, 2, 9),
                          pair(2, "read-set", 300 * MS, 310 * MS, [[9, 2]]))
    bad = check_lock(overlapping)
    assert bad.valid is False and "mutex model" in bad.explanation and "lost 1" in bad.explanation


def test_lock_fencing_tokens_out_of_order_are_flagged() -> None:
    h = history(hold(0, 0, 100 * MS, 1, 5), hold(1, 120 * MS, 220 * MS, 2, 9),
                pair(2, "read-set", 300 * MS, 310 * MS, [[9, 2], [5, 1]]))
    r = check_lock(h)
    assert r.valid is False and "fencing" in r.explanation


def poll(process: int, t0: int, t1: int, lo: int, hi: int, events: list[list[Any]]) -> list[Op]:
    return pair(process, "watch", t0, t1, {"from": lo, "next": hi, "events": events}, key="w")


def test_watch_gap_free_slices_pass_and_a_skipped_event_is_caught() -> None:
    writes = [pair(9, "wput", 0, 10 * MS, [1, 3], key="k0"), pair(9, "wput", 20 * MS, 30 * MS, [2, 4], key="k1")]
    e3, e4 = [3, "put", "w.k0", "1"], [4, "put", "w.k1", "2"]
    ok = check_watch(history(*writes, poll(0, 0, 15 * MS, 3, 4, [e3]), poll(0, 16 * MS, 40 * MS, 4, 5, [e4])))
    assert ok.valid is True and "watcher lag" in ok.explanation
    gap = check_watch(history(*writes, poll(0, 0, 15 * MS, 3, 4, [e3]), poll(0, 16 * MS, 40 * MS, 4, 5, [])))
    assert gap.valid is False and "missing [4]" in gap.explanation
    dup = check_watch(history(*writes, poll(0, 0, 15 * MS, 3, 4, [e3]), poll(0, 16 * MS, 40 * MS, 4, 5, [e4, e4])))
    assert dup.valid is False
    jump = check_watch(history(*writes, poll(0, 0, 15 * MS, 3, 4, [e3]), poll(0, 16 * MS, 40 * MS, 5, 5, [])))
    assert jump.valid is False and "after one that ended at 4" in jump.explanation


def ttl_op(process: int, f: str, t0: int, t1: int, present: bool = True, *, kind: OpType = OpType.OK) -> list[Op]:
    return pair(process, f, t0, t1, {"key": f"ttl.p{process}_1", "present": present}, kind=kind)


def test_ttl_missed_expiry_judged_only_on_healed_reads_when_asked() -> None:
    base = [ttl_op(0, "ttl-create", 0, 10 * MS), ttl_op(0, "ttl-refresh", 300 * MS, 310 * MS)]
    under_faults = history(*base, ttl_op(0, "ttl-read", 2500 * MS, 2510 * MS, True))
    assert check_ttl(under_faults, ttl_ms=800, bound_s=1.0, missed_when_healed=True).valid is True
    healed = ttl_op(0, "ttl-read", 2500 * MS, 2510 * MS, True)
    healed[0] = Op(type=OpType.INVOKE, process=0, f="ttl-read", value={"ttl_ms": 800, "healed": True}, time=2500 * MS)
    late = check_ttl(history(*base, healed), ttl_ms=800, bound_s=1.0, missed_when_healed=True)
    assert late.valid is False and "missed expiry" in late.explanation
    # the final restart at 2.0 s elected a new leader, which re-arms the TTL: 0.5 s after it is not late
    restart = [Op(type=OpType.INVOKE, process=NEMESIS, f="restart-all", time=1500 * MS),
               Op(type=OpType.INFO, process=NEMESIS, f="restart-all", time=2000 * MS, value={"healthy": True})]
    assert check_ttl(history(*base, restart, healed), ttl_ms=800, bound_s=1.0, missed_when_healed=True).valid is True
    later = ttl_op(0, "ttl-read", 3900 * MS, 3910 * MS, True)
    later[0] = replace(later[0], value={"ttl_ms": 800, "healed": True})
    late = check_ttl(history(*base, restart, later), ttl_ms=800, bound_s=1.0, missed_when_healed=True)
    assert late.valid is False and "1900 ms after the nemesis's last step" in late.explanation, late.explanation
    early = check_ttl(history(*base, ttl_op(0, "ttl-read", 600 * MS, 610 * MS, False)), ttl_ms=800, bound_s=1.0,
                      missed_when_healed=True)
    assert early.valid is False and "premature" in early.explanation  # premature is judged on every read


def test_ttl_premature_and_missed_expiry() -> None:
    base = [ttl_op(0, "ttl-create", 0, 10 * MS), ttl_op(0, "ttl-refresh", 300 * MS, 310 * MS)]
    fine = check_ttl(history(*base, ttl_op(0, "ttl-read", 1200 * MS, 1210 * MS, False)), ttl_ms=800, bound_s=1.0)
    assert fine.valid is True and "expiry delay" in fine.explanation
    early = check_ttl(history(*base, ttl_op(0, "ttl-read", 600 * MS, 610 * MS, False)), ttl_ms=800, bound_s=1.0)
    assert early.valid is False and "premature" in early.explanation
    late = check_ttl(history(*base, ttl_op(0, "ttl-read", 2500 * MS, 2510 * MS, True)), ttl_ms=800, bound_s=1.0)
    assert late.valid is False and "missed expiry" in late.explanation
