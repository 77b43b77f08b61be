"""Coverage of risky situations: what a simulation or a campaign actually exercised.

"Nothing failed" means little if the run never reached the moments where Raft implementations
break. This module names those moments and records which ones a run reached, so a user sees
what was exercised and not only that nothing failed.

``SIM_SITUATIONS`` are read off the simulator's view of each node (its Ready, the messages it
is handed, its storage before and after a crash) by ``SimCoverage``, fed by four hook calls in
raftlab/sim/cluster.py; it never changes what the simulation does. ``CAMPAIGN_SITUATIONS`` are
read off a campaign's history and its collected node logs by ``campaign`` (pure over what the
run stored). Both report ``{"reached": [...], "missed": [...], "counts": {...}}`` and a one-line
``describe``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from raftlab.history import NEMESIS, History, OpType
from raftlab.impl.raft import MsgType, Role

SIM_SITUATIONS: dict[str, str] = {
    "older-term-entry-committed": "an entry of an older term committed by a newer leader (Raft Figure 8)",
    "conflicting-suffix-truncated": "a follower's conflicting log suffix truncated by a new leader (§5.3)",
    "vote-refused-stale-log": "a vote request refused because the candidate's log was stale (§5.4.1)",
    "read-before-term-commit": "a ReadIndex asked of a new leader before it committed an entry of its term (§6.4)",
    "read-while-stale-leader": "a ReadIndex confirmed while a deposed leader of an older term still led",
    "read-at-deposed-leader": "a ReadIndex confirmed by a leader after a newer-term leader was elected",
    "two-leaders": "two nodes leading at once (in different terms)",
    "leader-with-shorter-log": "a new leader whose log is shorter than some follower's",
    "crash-lost-unsynced": "a crash that lost entries written but not synced (a crash while a sync stalls)",
    "leader-stepped-down": "a leader that stepped down without a crash",
}

CAMPAIGN_SITUATIONS: dict[str, str] = {
    "leader-killed": "the leader was killed",
    "leader-paused": "the leader was paused",
    "leader-isolated": "the leader was cut off by a partition",
    "majority-down": "a majority was killed at once",
    "elections": "leadership changed during the run",
    "check-quorum-step-down": "a leader stepped down for lack of a quorum",
    "indeterminate-write": "a write ended indeterminate (info)",
    "cas-absent-ok": "a cas on an absent key succeeded",
    "cas-absent-refused": "a cas on an absent key was refused (the key existed)",
    "read-during-fault": "a read succeeded while a fault was in effect",
    "fault-in-window": "a state-timed fault hit the leader inside its window (just elected, uncommitted, lagging)",
    "stale-candidate": "a follower that missed committed entries rejoined as its leader was killed",
}


def summary(names: Mapping[str, str], counts: Mapping[str, int]) -> dict[str, Any]:
    return {"reached": [n for n in names if counts.get(n)], "missed": [n for n in names if not counts.get(n)],
            "counts": {n: counts.get(n, 0) for n in names}}


def describe(cov: Mapping[str, Any]) -> str:
    reached, missed = cov.get("reached", []), cov.get("missed", [])
    total = len(reached) + len(missed)
    return (f"coverage: {len(reached)}/{total} risky situations reached"
            + (f"; not reached: {', '.join(missed)}" if missed else ""))


class SimCoverage:
    """Counts of SIM_SITUATIONS seen in one simulated run; the hooks only look."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._read_terms: dict[bytes, int] = {}
        self._leaders: set[int] = set()

    def on_ready(self, node: Any, rd: Any, nodes: Mapping[int, Any]) -> None:
        """Before the shell handles ``rd`` of ``node`` (its storage not yet appended to)."""
        core = node.core
        if rd.entries:
            first = rd.entries[0]
            had = node.storage.term(first.index) if first.index <= node.storage.last_index() else 0
            if had and had != first.term:
                self.counts["conflicting-suffix-truncated"] += 1
        if core.role is Role.LEADER and any(e.term < core.term and e.data for e in rd.committed):
            self.counts["older-term-entry-committed"] += 1
        for rs in rd.read_states:
            if self._read_terms.pop(rs.context, None) is None:
                continue
            other_terms = [n.core.term for n in nodes.values()
                           if n.up and n.id != node.id and n.core.role is Role.LEADER]
            if any(t < core.term for t in other_terms):
                self.counts["read-while-stale-leader"] += 1
            if core.role is Role.LEADER and any(t > core.term for t in other_terms):
                self.counts["read-at-deposed-leader"] += 1
        forwarded = any(m.type is MsgType.READ_INDEX_RESP and not m.reject for m in rd.send_now)
        if core.role is Role.LEADER and forwarded and any(
                n.up and n.core.role is Role.LEADER and n.core.term > core.term for n in nodes.values()):
            self.counts["read-at-deposed-leader"] += 1  # a forwarded read, confirmed for a follower
        if rd.soft_state is not None:
            was_leader = node.id in self._leaders
            if rd.soft_state.role is Role.LEADER:
                self._leaders.add(node.id)
                last = core.log.last_index()
                if any(n.up and n.id != node.id and n.core.log.last_index() > last for n in nodes.values()):
                    self.counts["leader-with-shorter-log"] += 1
            elif was_leader:
                self._leaders.discard(node.id)
                self.counts["leader-stepped-down"] += 1
        if sum(1 for n in nodes.values() if n.up and n.core.role is Role.LEADER) > 1:
            self.counts["two-leaders"] += 1

    def on_deliver(self, node: Any, msg: Any) -> None:
        if msg.type is MsgType.VOTE and msg.term >= node.core.term and not node.core.log.is_up_to_date(
                msg.index, msg.log_term):
            self.counts["vote-refused-stale-log"] += 1

    def on_read(self, node: Any, context: bytes) -> None:
        """Before ``node`` is asked for a ReadIndex with ``context``."""
        core = node.core
        self._read_terms[context] = core.term
        if core.role is Role.LEADER and core.log.term(core.log.committed) != core.term:
            self.counts["read-before-term-commit"] += 1

    def on_crash(self, node_id: int, before: int, after: int) -> None:
        self._leaders.discard(node_id)
        if after < before:
            self.counts["crash-lost-unsynced"] += 1

    def to_dict(self) -> dict[str, Any]:
        return summary(SIM_SITUATIONS, self.counts)


def merge(runs: Iterable[Mapping[str, Any]], names: Mapping[str, str] = SIM_SITUATIONS) -> dict[str, Any]:
    """Coverage over many runs (a hunt): the counts added up."""
    total: Counter[str] = Counter()
    for cov in runs:
        total.update(cov.get("counts", {}))
    return summary(names, total)


READ_FS = frozenset({"read", "get", "batch-get", "list"})
TIMED = {"timed-kill": "kill", "timed-partition": "start-partition"}


def _cas_expected_absent(f: str, value: Any) -> bool:
    """A cas on an absent key: register ``cas [null, new]`` or tree ``cas-key [name, null, new]``."""
    if not isinstance(value, list | tuple):
        return False
    return (f == "cas" and len(value) == 2 and value[0] is None) or (
        f == "cas-key" and len(value) == 3 and value[1] is None)


_ELECTED = re.compile(r"became leader at term")
_STEPPED_DOWN = re.compile(r"stepped down .*check-quorum")


def campaign(history: History, nodes_dir: Path) -> dict[str, Any]:
    """CAMPAIGN_SITUATIONS reached by one stored campaign (its history and node logs)."""
    counts: Counter[str] = Counter()
    asked: dict[str, Any] = {}
    active = 0
    for op in history:
        if op.process == NEMESIS:
            if op.f == "timed-stale":  # a stale candidate made, then its leader killed (nemesis/timed.py)
                if op.type is OpType.INFO and not op.error:
                    counts["stale-candidate"] += 1
                    counts["leader-killed"] += 1
                    active += 1
                continue
            f = TIMED.get(op.f, op.f)  # a state-timed fault (nemesis/timed.py) always hits the leader
            if op.type is OpType.INVOKE:
                asked[f] = "leader" if f != op.f else op.value
                continue
            done = isinstance(op.value, dict) and op.value.get("done") and not op.error
            target = asked.get(f)
            if f in ("kill", "pause", "start-partition") and (done or (f == "start-partition" and not op.error)):
                active += 1
                if target == "leader":
                    counts["leader-killed" if f == "kill" else "leader-paused" if f == "pause"
                           else "leader-isolated"] += 1
                elif target == "leader-minority":
                    counts["leader-isolated"] += 1
                elif target == "majority" and f == "kill":
                    counts["majority-down"] += 1
                if f != op.f:
                    counts["fault-in-window"] += 1
            elif f in ("start", "resume", "stop-partition"):
                active = max(0, active - 1)
            continue
        if op.type is OpType.INFO and op.f not in READ_FS:
            counts["indeterminate-write"] += 1
        if _cas_expected_absent(op.f, op.value):
            if op.type is OpType.OK:
                counts["cas-absent-ok"] += 1
            elif op.type is OpType.FAIL and "mismatch" in (op.error or ""):
                counts["cas-absent-refused"] += 1
        if op.f in READ_FS and op.type is OpType.OK and active:
            counts["read-during-fault"] += 1
    elected = 0
    if nodes_dir.is_dir():
        for path in sorted(nodes_dir.rglob("*.log")):
            text = path.read_text(encoding="utf-8", errors="replace")
            elected += len(_ELECTED.findall(text))
            counts["check-quorum-step-down"] += len(_STEPPED_DOWN.findall(text))
    if elected > 1:
        counts["elections"] = elected - 1
    return summary(CAMPAIGN_SITUATIONS, counts)
