"""ReadIndex bookkeeping (Raft thesis §6.4; etcd's read_only.go after commit 63903dd).

A linearizable read is served at the leader's commit index once a quorum has confirmed that this
node was still the leader after the read arrived. The leader does not trust the caller's bytes
for that: every request gets the next number of a sequence that only rises for the life of this
core, heartbeats carry the newest number, and a follower's answer to a heartbeat carrying ``n``
confirms every request numbered ``n`` or less (that heartbeat left after they were registered).
Two requests with equal caller contexts (two followers that number their reads alike, or one
that restarted) are two requests; an answer from an older term never reaches here (the core
drops messages of a lower term, and a node leads a term at most once), so a number is never
confirmed by an answer to a heartbeat that left before it was handed out.

``lease_holds`` is the lease-read alternative (thesis §6.4.1): no round trip while the leader's
lease, started at the heartbeat stamp a majority echoed, has not run out (core.py says why that
is sound and what it assumes about clocks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .quorum import Quorum


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequest:
    index: int  # the leader's commit index when the read arrived
    context: bytes  # the caller's bytes, handed back with the answer
    origin: int  # the node that asked (the leader itself, or a follower that forwarded it)
    seq: int  # this leader's number for it: what heartbeats carry and followers confirm


class ReadOnly:
    __slots__ = ("_acked", "_pending", "_seq")

    def __init__(self) -> None:
        self._pending: deque[ReadRequest] = deque()
        self._acked: dict[int, int] = {}  # voter -> highest sequence number it confirmed
        self._seq = 0

    def add(self, index: int, context: bytes, origin: int) -> int:
        """Register a read; returns its sequence number (the heartbeat context to send)."""
        self._seq += 1
        self._pending.append(ReadRequest(index=index, context=context, origin=origin, seq=self._seq))
        return self._seq

    def ack(self, from_: int, seq: int) -> None:
        if seq > self._acked.get(from_, 0):
            self._acked[from_] = seq

    def release(self, config: Quorum, self_id: int) -> list[ReadRequest]:
        """Every pending request a quorum has confirmed, in arrival order."""
        acked = {v: (self._seq if v == self_id else self._acked.get(v, 0)) for v in config.voters}
        confirmed = config.committed_index(acked)
        out = []
        pending = self._pending
        while pending and pending[0].seq <= confirmed:
            out.append(pending.popleft())
        return out

    def last_seq(self) -> int:
        """The newest pending request's number (0: nothing to confirm)."""
        return self._pending[-1].seq if self._pending else 0

    def drain(self) -> list[ReadRequest]:
        out = list(self._pending)
        self._pending.clear()
        self._acked.clear()
        return out

    def __len__(self) -> int:
        return len(self._pending)


def encode_seq(seq: int) -> bytes:
    """A heartbeat's context: the sequence number it confirms (empty for none)."""
    return seq.to_bytes(8, "big") if seq else b""


def decode_seq(context: bytes) -> int:
    return int.from_bytes(context[:8], "big") if len(context) == 8 else 0


def lease_holds(config: Quorum, stamps: Mapping[int, int], now: int, lease_ticks: int) -> bool:
    """True while ``now`` is within ``lease_ticks`` of the newest stamp a majority has echoed."""
    return now - config.committed_index(stamps) < lease_ticks
