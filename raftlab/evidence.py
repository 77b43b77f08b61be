"""Does a campaign's history prove anything? The checks that stop an empty run from passing.

A linearizability checker says "valid" for a history in which every operation failed; Jepsen
users have shipped such runs as passes (scalar-labs/scalar-jepsen#222). These pure functions of a
history turn a run that proves nothing into ``unknown`` with the reason, and a cluster that did
not come back after healing into a finding:

* ``stats``: ok/fail/info counts per f; unknown when fewer than ``min_ok`` ops succeeded, or an f
  the workload used never once succeeded;
* ``faults``: per fault, how often it was injected and took effect; unknown when faults were asked
  for and none took effect (a fault whose completion carries an ``error`` did not apply);
* ``final``: unknown when the workload has final reads and none succeeded after healing;
* ``recovery``: invalid when the ``wait-healthy`` step found the cluster unhealthy at its timeout.

Each returns ``(valid, explanation, data)``; the runner wraps them as checkers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from raftlab.history import NEMESIS, History, Op, OpType

WAIT_HEALTHY = "wait-healthy"
"""The harness's own nemesis-thread step between healing and the final reads."""

RESTART_ALL = "restart-all"
"""The harness's final restart (``--restart-check``): every node SIGKILLed at once and started
again, then the health gate again, before the final reads."""

Verdict = bool | str
Finding = tuple[Verdict, str, dict[str, Any]]


def _final_start(history: History) -> int | None:
    """Position just after the wait-healthy completion (the final phase begins there)."""
    for op in history:
        if op.process == NEMESIS and op.f == WAIT_HEALTHY and op.type is not OpType.INVOKE:
            return op.index + 1
    return None


def counts(history: Iterable[Op]) -> dict[str, dict[str, int]]:
    """Completions per client f and type: ``{"read": {"ok": 10, "fail": 2, "info": 1}}``."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for op in history:
        if op.is_client and op.type is not OpType.INVOKE:
            table[op.f][op.type.value] += 1
    return {f: {t: c[t] for t in ("ok", "fail", "info")} for f, c in sorted(table.items())}


def stats(history: History, *, min_ok: int) -> Finding:
    start = _final_start(history)
    main = [op for op in history if start is None or op.index < start]
    table = counts(main)
    total_ok = sum(c["ok"] for c in table.values())
    data = {"by_f": table, "ok": total_ok, "min_ok": min_ok}
    if total_ok < min_ok:
        return "unknown", (f"only {total_ok} operations succeeded while faults ran (need {min_ok}): "
                           "the run proves nothing"), data
    never = [f for f, c in table.items() if c["ok"] == 0]
    if never:
        return "unknown", f"no {', '.join(never)} ever succeeded: those operations were not tested", data
    return True, "", data


def _took_effect(done: Op) -> bool:
    if done.error:
        return False
    return not (isinstance(done.value, dict) and done.value.get("applied") is False)


def refused_to_start(history: History) -> list[str]:
    """``host: reason`` for every node a fault left refusing to start (the file faults say so in
    their completions): an answer the node gave, reported as such and never as a silent loss."""
    out = []
    for op in history:
        if op.process == NEMESIS and op.type is OpType.INFO and isinstance(op.value, dict) \
                and isinstance(op.value.get("refused"), dict):
            out += [f"{h}: {why}" for h, why in sorted(op.value["refused"].items())]
    return out


def faults(history: History, perf: Sequence[dict[str, Any]]) -> Finding:
    """``perf``: the nemesis package's report hints (``name``, ``start`` fs, ``stop`` fs).

    Faults may share a start f (``kill`` and ``kill-leader`` both start with ``kill``): an op is
    counted for the fault its ``fault`` field names (the schedule sets it), and only an op without
    one (a hand-written history) falls back to the fault that owns its f.
    """
    by_name: dict[str, dict[str, Any]] = {}
    start_of = {f: p["name"] for p in perf for f in p.get("start", ())}
    for p in perf:
        by_name[p["name"]] = {"injected": 0, "took_effect": 0, "errors": []}
    for op in history:
        if op.process != NEMESIS or op.type is OpType.INVOKE or op.f not in start_of:
            continue
        named = (op.extra or {}).get("fault")
        entry = by_name[named if named in by_name else start_of[op.f]]
        entry["injected"] += 1
        if _took_effect(op):
            entry["took_effect"] += 1
        elif op.error and len(entry["errors"]) < 5:
            entry["errors"].append(op.error)
    refused = refused_to_start(history)
    data: dict[str, Any] = {"by_fault": by_name}
    if refused:
        data["refused_to_start"] = refused
    if not by_name:
        return True, "", data
    if not any(e["took_effect"] for e in by_name.values()):
        tried = sum(e["injected"] for e in by_name.values())
        why = "none was injected (is the time limit shorter than the interval?)" if tried == 0 else \
            f"all {tried} attempts failed: " + "; ".join(e for v in by_name.values() for e in v["errors"][:1])
        return "unknown", f"faults were asked for but none took effect: {why}", data
    idle = [n for n, e in by_name.items() if not e["took_effect"]]
    if idle:
        data["never_took_effect"] = idle
    return True, "", data


def final(history: History, final_fs: frozenset[str]) -> Finding:
    start = _final_start(history)
    if not final_fs:
        return True, "", {}
    if start is None:
        return "unknown", "the final phase never ran (the run ended before healing finished)", {}
    oks = [op for op in history if op.index >= start and op.is_client and op.type is OpType.OK and op.f in final_fs]
    data = {"final_ok": len(oks)}
    if not oks:
        return "unknown", (f"no final {'/'.join(sorted(final_fs))} succeeded after healing: "
                           "nothing shows what the cluster kept"), data
    return True, "", data


def restart(history: History) -> Finding:
    """Whether every node came back from the final restart (``--restart-check``) and the cluster
    served again: a node that cannot recover from its own files is a finding, never noise."""
    excused = {r.split(":", 1)[0] for r in refused_to_start(history)}  # a file fault's refusal, said as such
    for op in history:
        if op.process == NEMESIS and op.f == RESTART_ALL and op.type is not OpType.INVOKE:
            value = op.value if isinstance(op.value, dict) else {}
            failed = value.get("failed") or {}
            problems = [f"{h} did not come back: {why}" for h, why in sorted(failed.items()) if h not in excused]
            if not value.get("healthy"):
                problems.append(f"the cluster did not serve again: {value.get('last_problem', op.error)}")
            if not problems:
                return True, "", value
            return False, f"after the final restart (every node SIGKILLed and started again): {'; '.join(problems)}", value
    return True, "", {}


def recovery(history: History) -> Finding:
    for op in history:
        if op.process == NEMESIS and op.f == WAIT_HEALTHY and op.type is not OpType.INVOKE:
            value = op.value if isinstance(op.value, dict) else {}
            if value.get("healthy"):
                return True, "", value
            return False, (f"the cluster did not recover within {value.get('timeout', '?')} s after every fault "
                           f"was healed: {op.error or value.get('last_problem', 'no leader or no successful read')}"), value
    return "unknown", "the cluster's recovery was never measured (the run stopped before healing)", {}
