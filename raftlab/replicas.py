"""Judging the replicas, not only the clients: end-of-run digests and node-log patterns.

A linearizable client history does not prove the replicas agree: a follower that kept a
divergent log, or a state machine that applied a command differently, stays hidden until a
client happens to read from it after the next election. And a node that logs a recovery error at
every restart, or never comes back, changes no client's view while a majority serves. So at the
end of every campaign, after the final reads:

* ``collect`` asks a system that offers ``HasReplicaDigests`` for every host's fingerprint
  (applied index, a running hash of the applied log, a digest of the state machine), polling for
  a few seconds until every host answers and all reach the same applied index (a healed, idle
  cluster converges within heartbeats), and stores what it saw in ``replicas.json`` in the run;
* ``digests`` (pure) judges that file: hosts at the same applied index with different log
  chains or state digests are a violation (state-machine safety, Raft §5.4.3); a host that
  never answered, or never caught up with the others' applied index, is a finding (it never
  recovered: a healed, idle cluster converges within heartbeats);
* ``logs`` scans the collected node logs for error patterns (Jepsen's ``log-file-pattern``
  checker: tracebacks, "panic", storage errors, a node that could not start, a peer message
  that broke the protocol);
* ``elections`` (raftlab/elections.py) reads the same logs for election safety: one leader per
  term, one vote per node per term, votes that survive restarts.

The runner calls ``collect`` once and adds ``checks(run_dir)`` to its checkers; a system without
the capability or without log files gets a ``True`` with the reason "not offered".
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftlab import elections
from raftlab.protocols import HasReplicaDigests, Host

REPLICAS_FILE = "replicas.json"
NODES_DIR = "nodes"
CONVERGE_SECONDS = 15.0

# (name, pattern): each is a line no healthy node writes (checked against the reference node's logs)
LOG_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("traceback", re.compile(r"Traceback \(most recent call last\)")),
    ("panic", re.compile(r"\bpanic\b", re.IGNORECASE)),
    ("storage error", re.compile(r"StorageError|refusing to start|corrupt entry")),
    ("could not start", re.compile(r"cannot start")),
    ("assertion", re.compile(r"AssertionError")),
    ("unhandled task error", re.compile(r"Task exception was never retrieved|Exception in callback")),
    # a peer message no correct member sends (impl/raft/validate.py): a campaign's peers are the
    # cluster's own nodes, so one means a member broke the protocol (a stale TIMEOUT_NOW and a
    # message from outside the cluster, ``foreign``, are left out: reordering and a stray
    # process make those without any member being wrong)
    ("protocol violation", re.compile(
        r" refuses .*: (?:not-leader: (?:APP|HEARTBEAT|SNAP) |never-sent: |conflict: |malformed: |range: )")),
)

Finding = tuple[bool | str, str, dict[str, Any]]


async def collect(db: object, hosts: Sequence[Host], run_dir: Path, *, timeout: float = CONVERGE_SECONDS) -> None:
    """Poll the system's digests until all hosts answer at one applied index (or ``timeout``); store them."""
    if not isinstance(db, HasReplicaDigests):
        return
    deadline = time.monotonic() + timeout
    rounds = 0
    seen: dict[Host, dict[str, Any]] = {}
    while True:
        rounds += 1
        try:
            seen = await db.digests()
        except Exception as e:  # the capability itself failed: recorded, judged unknown
            seen = {h: {"error": f"digests failed: {type(e).__name__}: {e}"} for h in hosts}
        if converged(seen) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    (run_dir / REPLICAS_FILE).write_text(json.dumps({"rounds": rounds, "hosts": seen}, indent=1) + "\n",
                                         encoding="utf-8")


def converged(seen: dict[Host, dict[str, Any]]) -> bool:
    return bool(seen) and all("error" not in d for d in seen.values()) and len(
        {d.get("applied") for d in seen.values()}) == 1


def digests(seen: dict[Host, dict[str, Any]]) -> Finding:
    """Replicas at the same applied index must have the same log chain and state digest."""
    silent = sorted(h for h, d in seen.items() if "error" in d)
    by_index: dict[Any, dict[Host, dict[str, Any]]] = {}
    for h, d in seen.items():
        if "error" not in d:
            by_index.setdefault(d.get("applied"), {})[h] = d
    data: dict[str, Any] = {"applied": {h: d.get("applied") for h, d in seen.items() if "error" not in d},
                            "silent": silent}
    for index, group in sorted(by_index.items(), key=lambda kv: str(kv[0])):
        for part in ("chain", "tree"):
            values = {d.get(part) for d in group.values()}
            if len(values) > 1:
                detail = ", ".join(f"{h}={d.get(part)}" for h, d in sorted(group.items()))
                what = "applied logs" if part == "chain" else "state machines"
                return False, f"replicas diverged: {what} differ at applied index {index} ({detail})", data
    if silent:
        reasons = "; ".join(f"{h}: {seen[h]['error']}" for h in silent)
        return False, f"{len(silent)} replica(s) never answered after healing (never recovered?): {reasons}", data
    if len(by_index) > 1:
        top = max(by_index, key=lambda i: (i is not None, i or 0))
        behind = sorted(h for h, d in seen.items() if "error" not in d and d.get("applied") != top)
        return (False, f"replica(s) {', '.join(behind)} never caught up: applied "
                f"{', '.join(str(seen[h].get('applied')) for h in behind)} while the others reached {top}, "
                f"{CONVERGE_SECONDS:g}s after healing (stuck replication?)", data)
    return True, "", data


def scan_text(text: str) -> list[tuple[str, str]]:
    """(pattern name, line) for every line of ``text`` that matches an error pattern."""
    hits = []
    for line in text.splitlines():
        for name, pattern in LOG_PATTERNS:
            if pattern.search(line):
                hits.append((name, line.strip()[:300]))
                break
    return hits


def _expected(line: str, refusals: Sequence[str]) -> bool:
    """Whether ``line`` is a node's refusal that a fault already reported (its text, timestamp aside)."""
    message = line.split(" ", 1)[-1][:120]
    return any(message in r for r in refusals)


def logs(nodes_dir: Path, refusals: Sequence[str] = ()) -> Finding:
    """Invalid when any collected node log contains an error pattern (names host, file and line).

    ``refusals`` are the reasons of nodes a file fault left refusing to start (their own last
    output): those lines are the node answering correctly, counted under ``expected``."""
    hits: list[dict[str, str]] = []
    expected = 0
    files = sorted(p for p in nodes_dir.rglob("*") if p.is_file()) if nodes_dir.is_dir() else []
    for path in files:
        for name, line in scan_text(path.read_text(encoding="utf-8", errors="replace")):
            if _expected(line, refusals):
                expected += 1
                continue
            hits.append({"file": str(path.relative_to(nodes_dir)), "pattern": name, "line": line})
    data = {"files": len(files), "hits": hits[:20], "total": len(hits), "expected": expected}
    if not files:
        return True, "", data
    if hits:
        first = hits[0]
        return False, f"{len(hits)} error line(s) in node logs; first in {first['file']}: {first['line']}", data
    return True, "", data


def checks(run_dir: Path, refusals: Sequence[str] = ()) -> dict[str, Finding]:
    """The runner's replica checkers for one stored run: ``replicas`` (when collected), ``logs`` and
    ``elections``."""
    out: dict[str, Finding] = {"logs": logs(run_dir / NODES_DIR, refusals),
                               "elections": elections.judge_dir(run_dir / NODES_DIR)}
    stored = run_dir / REPLICAS_FILE
    if stored.exists():
        try:
            seen = json.loads(stored.read_text(encoding="utf-8"))["hosts"]
        except (ValueError, KeyError) as e:
            out["replicas"] = ("unknown", f"{stored} cannot be read: {e}", {})
        else:
            out["replicas"] = digests(seen)
    return out
