"""Leases: the TTL of temporary nodes/dirs and of locks, and the leader-only timer that expires them.

Theory of operation (Dongting's TtlManager, etcd's lessor). A lease is replicated state: the
owner, the TTL in milliseconds and the raft index of the command that last set it (create,
refresh, or a lock hand-off). It holds no time at all, so applying it reads no clock and every
replica holds the same leases. Time lives only in ``LeaseTimers``, which the node machine runs
while it is leader: a lease applied at local monotonic time ``t`` is due at ``t + ttl``, and a
due lease becomes an ``Expire(key, index)`` proposal through Raft. The tree applies it only if
the lease's index is still ``index``: a refresh committed before the expiry makes it a no-op, so
a stale decision (a paused or deposed leader's) never removes a refreshed node.

A new leader re-arms every lease from the replicated state with its full TTL from the moment it
took over (it cannot know how long ago the old leader last saw a refresh; etcd's Promote does
the same). So expiry is never earlier than TTL after the owner's last committed refresh as seen
by any leader's clock, and is at most about TTL + election time + commit latency late per
leader change. Clocks are only compared with themselves (monotonic, one node), never across
nodes; a node whose clock runs fast can expire early (documented in docs/node.md).

``Lease.to_wire``/``from_wire`` are its snapshot form (impl/storage/snapshot_format.py).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

TEMP = "temp"
LOCK = "lock"
RETRY_SECONDS = 1.0  # an expiry proposal that did not apply (lost leadership, dropped) is retried


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """``owner`` holds ``key`` (a temp node/dir, or a lock) for ``ttl_ms`` from raft ``index``;
    a lock's ``token`` is the index that granted the current hold and ``waiters`` its queue."""

    kind: str
    owner: str
    ttl_ms: int
    index: int
    token: int = 0
    waiters: tuple[tuple[str, int], ...] = ()

    def to_wire(self, key: str) -> list[Any]:
        return [key, self.kind, self.owner, self.ttl_ms, self.index, self.token, [list(w) for w in self.waiters]]

    @staticmethod
    def from_wire(obj: Any) -> tuple[str, Lease]:
        key, kind, owner, ttl_ms, index, token, waiters = obj
        if kind not in (TEMP, LOCK) or type(key) is not str or type(owner) is not str:
            raise TypeError(f"not a lease: {obj!r:.80}")
        return key, Lease(kind=kind, owner=owner, ttl_ms=int(ttl_ms), index=int(index), token=int(token),
                          waiters=tuple((str(o), int(t)) for o, t in waiters))


class LeaseTimers:
    """The leader's expiry clock: which lease (key, index) is due when, in local monotonic
    seconds. Pure: the machine feeds it applied leases and the time, and proposes what is due."""

    def __init__(self) -> None:
        self._deadline: dict[str, tuple[float, int]] = {}  # key -> (due at, lease index)
        self._heap: list[tuple[float, str, int]] = []

    def __len__(self) -> int:
        return len(self._deadline)

    def __contains__(self, key: str) -> bool:
        return key in self._deadline

    def arm(self, key: str, index: int, ttl_ms: int, now: float) -> None:
        """The lease on ``key`` was (re)set at ``index``: due ``ttl_ms`` after ``now``."""
        due = now + ttl_ms / 1000
        self._deadline[key] = (due, index)
        heapq.heappush(self._heap, (due, key, index))

    def disarm(self, key: str) -> None:
        self._deadline.pop(key, None)

    def clear(self) -> None:
        self._deadline.clear()
        self._heap.clear()

    def due(self, now: float) -> list[tuple[str, int]]:
        """The (key, index) whose deadline passed; each is retried after RETRY_SECONDS unless
        re-armed or disarmed by then (the expiry itself disarms it when it applies)."""
        out: list[tuple[str, int]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, key, index = heapq.heappop(heap)
            if self._deadline.get(key) != (due, index):
                continue  # superseded by a later arm (its own heap entry is still queued)
            out.append((key, index))
            self._deadline[key] = (now + RETRY_SECONDS, index)
            heapq.heappush(heap, (now + RETRY_SECONDS, key, index))
        return out

    def next_due(self) -> float | None:
        while self._heap and self._deadline.get(self._heap[0][1], (0.0, -1)) != self._heap[0][::2]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None
