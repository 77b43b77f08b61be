"""Checkers for locks, watches and temp nodes (the lock, watch and ttl workloads; ops in
raftlab/systems/dtkv_leases.py). Each result's explanation says what happened in the run's
own terms (who held the lock when, how far watchers lagged, how late nodes expired), valid
or not, so a report shows more than a verdict.

* ``check_lock``: (1) the holds, as acquire/release pairs, must be linearizable against the
  ``mutex`` model (an ``info`` hold is an acquire that may or may not have happened);
  (2) lock-guarded list: every acknowledged hold's element is in the final list (a hold that
  overlapped another one read a stale list and lost the other's element); (3) fencing: the
  list's tokens never decrease (a write carrying an older token after a newer one means a
  stale holder wrote after its successor had the lock).
* ``check_watch``: the committed changes are the union of every watcher's events plus every
  acknowledged ``wput`` (index, key, value); two reports of one index must agree; each watch
  poll must report exactly the union's events in its ``[from, next)`` range (a gap or a
  duplicate shows up as a difference), in index order; a worker's next poll starts where its
  last one ended (unless it was told ``compacted``); and every watcher ends past the last
  acknowledged write (convergence: every worker that polls after that write was acknowledged
  must end past it; workers replaced after an ``info`` stop without converging). Lag: how long after a write was acknowledged watchers saw it.
* ``check_ttl``: premature expiry: a read (or refresh) that found the node gone, invoked after
  an acknowledged create/refresh completed, and completed less than TTL after that write was
  *invoked* (the leader arms the TTL only once it applies the write, later still, so no clock
  comparison across machines is involved); missed expiry: a read that still found the node
  more than ``ttl + bound`` after the owner's last write attempt completed. Expiry delays (first
  absent read minus last write + TTL) are reported.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections import defaultdict
from typing import Any

from raftlab.history import NEMESIS, History, Op, OpType

from .result import UNKNOWN, Result


def _pairs(history: History, fs: frozenset[str]) -> list[tuple[Op, Op]]:
    """(invoke, completion) of the client ops with these ``f``s, in completion order."""
    open_: dict[Any, Op] = {}
    out: list[tuple[Op, Op]] = []
    for op in history:
        if not op.is_client or op.f not in fs:
            continue
        if op.type is OpType.INVOKE:
            open_[op.process] = op
        elif op.process in open_:
            out.append((open_.pop(op.process), op))
    return out


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.0f} ms"


# -- lock ------------------------------------------------------------------------------------


def check_lock(history: History, *, time_limit: float | None = None) -> Result:
    from raftlab.checker import check

    holds = _pairs(history, frozenset({"hold"}))
    mutex_ops: list[Op] = []
    timeline: list[tuple[int, int, Any, int]] = []
    acked: dict[Any, int] = {}
    for inv, done in holds:
        if done.type is OpType.FAIL:
            continue
        mutex_ops.append(Op(type=OpType.INVOKE, process=inv.process, f="acquire", key="lock", time=inv.time))
        if done.type is OpType.INFO:
            mutex_ops.append(Op(type=OpType.INFO, process=inv.process, f="acquire", key="lock", time=done.time))
            continue
        v = done.value
        got, rel = inv.time + int(v["acquired_ns"]), inv.time + int(v["released_ns"])
        mutex_ops += [Op(type=OpType.OK, process=inv.process, f="acquire", key="lock", time=got),
                      Op(type=OpType.INVOKE, process=inv.process, f="release", key="lock", time=rel),
                      Op(type=OpType.OK, process=inv.process, f="release", key="lock", time=done.time)]
        timeline.append((got, rel, inv.process, int(v["token"])))
        acked[v["elem"]] = int(v["token"])
    mutex_ops.sort(key=lambda o: o.time)
    final = [done.value for _, done in _pairs(history, frozenset({"read-set"})) if done.type is OpType.OK]
    lines = [f"{len(timeline)} acknowledged holds, {sum(1 for _, d in holds if d.type is OpType.FAIL)} refused "
             f"(lock held), {sum(1 for _, d in holds if d.type is OpType.INFO)} unknown"]
    timeline.sort()
    lines += [f"  {a / 1e9:8.3f}-{b / 1e9:8.3f} s  p{p:<4} token {t}" for a, b, p, t in timeline[:40]]
    if len(timeline) > 40:
        lines.append(f"  ... {len(timeline) - 40} more holds")
    problems: list[str] = []
    verdict: Any = True
    mutex = check(History(mutex_ops), "mutex", time_limit=time_limit, workers=1) if mutex_ops else None
    if mutex is not None and mutex.valid is not True:
        verdict = mutex.valid
        problems.append(f"mutex model: {mutex.valid} ({mutex.explanation.splitlines()[0] if mutex.explanation else ''})")
    if not final:
        return Result(valid=UNKNOWN, model="lock", explanation="\n".join([*lines, "no final read of the guarded list"]))
    items = final[-1]
    present = {elem for _, elem in items}
    lost = sorted(e for e in acked if e not in present)
    if lost:
        verdict = False
        problems.append(f"lock-guarded list lost {len(lost)} acknowledged elements (overlapping holds), e.g. {lost[:5]}")
    tokens = [t for t, _ in items]
    backwards = [(a, b) for a, b in itertools.pairwise(tokens) if b < a]
    if backwards:
        verdict = False
        problems.append(f"fencing: a write with token {backwards[0][1]} came after one with {backwards[0][0]}")
    lines.append(f"guarded list: {len(items)} entries, tokens {'increasing' if not backwards else 'NOT ordered'}")
    return Result(valid=verdict, model="lock", operations=len(holds), explanation="\n".join(problems + lines),
                  details={"holds": len(timeline), "lost": lost[:20], "fencing_backwards": backwards[:5]})


# -- watch -----------------------------------------------------------------------------------


def check_watch(history: History) -> Result:
    writes = [(i, d) for i, d in _pairs(history, frozenset({"wput"})) if d.type is OpType.OK]
    polls = _pairs(history, frozenset({"watch"}))
    truth: dict[int, list[tuple[str, str, Any]]] = defaultdict(list)
    problems: list[str] = []
    reported: dict[int, tuple[tuple[str, str, Any], ...]] = {}
    for _, done in polls:
        if done.type is not OpType.OK:
            continue
        by_index: dict[int, list[tuple[str, str, Any]]] = defaultdict(list)
        for index, kind, key, value in done.value["events"]:
            by_index[index].append((kind, key, value))
        for index, events in by_index.items():
            if len(set(events)) != len(events):
                problems.append(f"p{done.process}: index {index} reported twice in one poll: {events[:2]}")
                events = list(dict.fromkeys(events))
            seen = reported.setdefault(index, tuple(events))
            if seen != tuple(events):
                problems.append(f"index {index} reported as {seen} and as {tuple(events)}")
    for index, events in reported.items():
        truth[index] = list(events)
    for _, done in writes:
        value, index = done.value
        expect = ("put", f"w.{done.key}", str(value))
        if expect not in truth[index]:
            if truth[index] or any(lo <= index < hi for lo, hi in _ranges(polls)):
                problems.append(f"acknowledged write of {value} at index {index} is missing from the watch events")
            truth[index].append(expect)
    last: dict[Any, Op] = {}
    checked = 0
    lags: list[float] = []
    acked_at = {done.value[1]: done.time for _, done in writes}
    for inv, done in polls:
        if done.type is OpType.FAIL and "Compacted" in (done.error or ""):
            last.pop(inv.process, None)
            continue
        if done.type is not OpType.OK:
            continue
        v = done.value
        lo, hi = v["from"], v["next"]
        prev = last.get(inv.process)
        if prev is not None and lo != 0 and lo != prev.value["next"]:
            problems.append(f"p{inv.process}: a poll from {lo} after one that ended at {prev.value['next']}")
        last[inv.process] = done
        got = [e[0] for e in v["events"]]
        if got != sorted(got):
            problems.append(f"p{inv.process}: events out of index order {got[:10]}")
        lo = lo or (got[0] if got else hi)
        want = [i for i in sorted(truth) if lo <= i < hi for _ in truth[i]]
        if got != want:
            missing = sorted(set(want) - set(got))
            dups = sorted({i for i in got if got.count(i) > truth.get(i, []).__len__()})
            problems.append(f"p{inv.process}: poll [{lo}, {hi}) reported {len(got)} events, the log has {len(want)}"
                            f" (missing {missing[:5]}, duplicated {dups[:5]})")
        checked += 1
        lags += [(done.time - acked_at[i]) / 1e9 for i in got if i in acked_at and done.time >= acked_at[i]]
    end = max(acked_at, default=0)
    final_polls = {inv.process for inv, _ in polls if inv.time > acked_at.get(end, 0)}
    behind = sorted(p for p, d in last.items() if p in final_polls and d.value["next"] <= end)
    if behind:
        problems.append(f"watchers {behind} polled after the last acknowledged write (index {end}) "
                        "but never caught up past it")
    lines = [f"{len(writes)} acknowledged writes, {checked} polls checked by {len(last)} watchers, "
             f"{len(truth)} committed indexes seen"]
    if lags:
        q = statistics.quantiles(lags, n=100) if len(lags) > 1 else [lags[0]] * 99
        lines.append(f"watcher lag after the write was acknowledged: median {q[49]:.3f} s, p99 {q[98]:.3f} s, "
                     f"max {max(lags):.3f} s")
    if not checked:
        return Result(valid=UNKNOWN, model="watch", explanation="no successful watch poll: nothing is proven")
    return Result(valid=not problems, model="watch", operations=len(polls), explanation="\n".join(problems[:20] + lines),
                  details={"problems": len(problems), "writes": len(writes), "polls": checked})


def _ranges(polls: list[tuple[Op, Op]]) -> list[tuple[int, int]]:
    return [(d.value["from"], d.value["next"]) for _, d in polls if d.type is OpType.OK and d.value["from"]]


# -- ttl -------------------------------------------------------------------------------------

TTL_FS = frozenset({"ttl-create", "ttl-refresh", "ttl-read"})
"""The ttl workload's ops (also a temp-node owner's in the mixed workload)."""


def check_ttl(history: History, *, ttl_ms: int, bound_s: float, missed_when_healed: bool = False) -> Result:
    """Premature expiry on every read; missed expiry on every read, or with ``missed_when_healed``
    only on reads marked ``healed`` (sent on a healed cluster: under faults a chain of leader
    changes re-arms a TTL again and again, so no bound holds there), counted from the later of the
    owner's last write and the nemesis's last step (a heal or the final restart elects a leader,
    which re-arms every TTL in full)."""
    ttl = ttl_ms * 1_000_000
    bound = int(bound_s * 1e9)
    settled = sorted(op.time for op in history if op.process == NEMESIS and op.type is not OpType.INVOKE) \
        if missed_when_healed else []
    creates: dict[Any, int] = defaultdict(int)
    per_key: dict[str, list[tuple[Op, Op]]] = defaultdict(list)
    for inv, done in _pairs(history, TTL_FS):
        if inv.f == "ttl-create":
            creates[inv.process] += 1
        per_key[f"p{inv.process}_{creates[inv.process]}"].append((inv, done))
    problems: list[str] = []
    delays: list[float] = []
    for key, ops in per_key.items():
        writes = [(i, d) for i, d in ops if i.f != "ttl-read" and d.type is OpType.OK]
        attempts = [(i, d) for i, d in ops if i.f != "ttl-read" and d.type is not OpType.FAIL]
        gone_seen = False
        for inv, done in ops:
            gone = (inv.f == "ttl-read" and done.type is OpType.OK and not done.value["present"]) or (
                inv.f == "ttl-refresh" and done.type is OpType.FAIL and "KeyNotFound" in (done.error or ""))
            before = [w for w in writes if w[1].time < inv.time]
            if gone and before:
                w_inv = max(w[0].time for w in before)
                if done.time < w_inv + ttl:
                    problems.append(f"{key}: found gone {_ms(done.time - w_inv)} after a refresh was sent "
                                    f"(TTL {ttl_ms} ms): premature expiry")
            if gone and not gone_seen and attempts:
                last = max(d.time for _, d in attempts if d.time < inv.time) if any(
                    d.time < inv.time for _, d in attempts) else None
                if last is not None:
                    delays.append((done.time - last - ttl) / 1e9)
                gone_seen = True
            present = inv.f == "ttl-read" and done.type is OpType.OK and done.value["present"]
            judged = not missed_when_healed or (isinstance(inv.value, dict) and inv.value.get("healed"))
            if present and attempts and judged:
                last_attempt = max(d.time for _, d in attempts)
                k = bisect.bisect_right(settled, inv.time)
                since = max(last_attempt, settled[k - 1]) if k else last_attempt
                if last_attempt < inv.time and inv.time > since + ttl + bound:
                    changed = f", {_ms(inv.time - since)} after the nemesis's last step" if since > last_attempt else ""
                    problems.append(f"{key}: still present {_ms(inv.time - last_attempt)} after its owner's last "
                                    f"write{changed} (TTL {ttl_ms} ms + bound {bound_s} s): missed expiry")
    lines = [f"{len(per_key)} temp nodes, TTL {ttl_ms} ms, missed-expiry bound TTL + {bound_s} s"]
    if delays:
        lines.append(f"expiry delay beyond the TTL (first absent read after the owner stopped): "
                     f"min {min(delays):.3f} s, median {statistics.median(delays):.3f} s, max {max(delays):.3f} s "
                     f"over {len(delays)} nodes")
    if not per_key:
        return Result(valid=UNKNOWN, model="ttl", explanation="no temp node was created: nothing is proven")
    return Result(valid=not problems, model="ttl", operations=sum(len(v) for v in per_key.values()),
                  explanation="\n".join(problems[:20] + lines),
                  details={"premature_or_missed": len(problems), "expiry_delays_s": [round(d, 3) for d in delays[:50]]})
