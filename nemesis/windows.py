"""Risky windows read off status snapshots: when a state-timed fault should fire (pure).

A fault at a random moment rarely lands where Raft implementations break: right after an
election (the new leader has not yet committed in its term), while the leader holds entries a
majority has not acknowledged (a crash now leaves them on a minority: Figure 8 of the Raft
paper), or while a follower is far behind (it must be caught up by whoever leads next). The
timed faults (nemesis/timed.py) poll the system's status and fire when ``Watch.observe`` says
the window is open.

A snapshot is what ``DtkvDB.status()`` returns: per host ``{"role", "term", "commit",
"last_index", "applied", ...}`` (``NodeMachine.status``), or ``{"error": ...}`` for a host that
did not answer. ``Watch`` keeps what it needs between polls (which leaders it has seen, since
when) and takes the time as an argument, so a transcript of snapshots drives it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WINDOWS: dict[str, str] = {
    "just-elected": "a leader elected since the watch began, within its first half second",
    "uncommitted": "the leader holds entries it has not committed yet",
    "lagging": "a follower has applied at least 20 entries fewer than the leader committed",
}
FRESH = 0.5  # seconds a new leader counts as just elected
LAG = 20  # entries a follower must trail the leader's commit index by to count as lagging


class UnknownWindow(ValueError):
    """A window name not in WINDOWS."""


def leader_of(snapshot: Mapping[Any, Mapping[str, Any]]) -> tuple[Any, Mapping[str, Any]] | None:
    """The answering host that leads the highest term, and its status (None: no leader)."""
    leaders = [(st.get("term", 0), str(h), h, st) for h, st in snapshot.items()
               if "error" not in st and st.get("role") == "leader"]
    if not leaders:
        return None
    _, _, host, st = max(leaders, key=lambda t: t[:2])
    return host, st


def lag_of(snapshot: Mapping[Any, Mapping[str, Any]], host: Any, last_applied: int = 0) -> int | None:
    """How many entries the leader has committed that ``host`` has not applied (None: no leader
    answered). ``last_applied`` stands in for a host that did not answer (cut off, its last
    answer is all that is known, and it cannot have applied more since)."""
    found = leader_of(snapshot)
    if found is None:
        return None
    st = snapshot.get(host, {})
    applied = int(st.get("applied", 0)) if "error" not in st and "applied" in st else last_applied
    return int(found[1].get("commit", 0)) - applied


def stale_leader(snapshot: Mapping[Any, Mapping[str, Any]], candidate: Any, last_applied: int, want: int) -> Any | None:
    """The leader to kill for ``stale-candidate``: once the cut-off ``candidate`` has missed at
    least ``want`` of the entries that leader committed (None: not yet, or no other leader)."""
    found = leader_of(snapshot)
    if found is None or found[0] == candidate:
        return None
    lag = lag_of(snapshot, candidate, last_applied)
    return found[0] if lag is not None and lag >= want else None


@dataclass(slots=True)
class Watch:
    """One fault's wait for ``window``: feed it snapshots with their times, it says when to fire."""

    window: str
    _baseline: set[tuple[str, int]] | None = None
    _first_seen: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise UnknownWindow(f"unknown window {self.window!r} (known: {', '.join(WINDOWS)})")

    def observe(self, snapshot: Mapping[Any, Mapping[str, Any]], now: float) -> Any | None:
        """The leader host to hit if the window is open in ``snapshot`` at ``now``, else None."""
        found = leader_of(snapshot)
        seen = {(str(h), int(st.get("term", 0))) for h, st in snapshot.items()
                if "error" not in st and st.get("role") == "leader"}
        if self._baseline is None:
            self._baseline = seen  # leaders already there when the watch began are not new
        for key in seen:
            self._first_seen.setdefault(key, now)
        if found is None:
            return None
        host, st = found
        if self.window == "just-elected":
            key = (str(host), int(st.get("term", 0)))
            fresh = key not in self._baseline and now - self._first_seen[key] <= FRESH
            return host if fresh else None
        if self.window == "uncommitted":
            return host if int(st.get("last_index", 0)) > int(st.get("commit", 0)) else None
        commit = int(st.get("commit", 0))
        behind = [h for h, s in snapshot.items() if h != host and "error" not in s
                  and commit - int(s.get("applied", 0)) >= LAG]
        return host if behind else None
