"""ReadIndex bookkeeping (Raft thesis §6.4; etcd's read_only.go).

A linearizable read is served at the leader's commit index once a quorum has confirmed, by
answering a heartbeat carrying the read's context, that this node was still the leader when the
read arrived. Requests are released in arrival order: a quorum for a later context confirms every
earlier one too.

``lease_holds`` is the lease-read alternative (thesis §6.4.1): no round trip while the leader's
lease, started at the heartbeat stamp a majority echoed, has not run out (core.py says why that
is sound and what it assumes about clocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .quorum import MajorityConfig


@dataclass(slots=True)
class ReadRequest:
    index: int
    context: bytes
    origin: int  # the node that asked (the leader itself, or a follower that forwarded it)
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    __slots__ = ("_order", "_pending")

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadRequest] = {}
        self._order: list[bytes] = []

    def add(self, index: int, context: bytes, origin: int, self_id: int) -> None:
        if context in self._pending:
            return
        self._pending[context] = ReadRequest(index=index, context=context, origin=origin, acks={self_id})
        self._order.append(context)

    def ack(self, from_: int, context: bytes) -> set[int] | None:
        req = self._pending.get(context)
        if req is None:
            return None
        req.acks.add(from_)
        return req.acks

    def release(self, context: bytes) -> list[ReadRequest]:
        """Every request up to and including ``context``, in order."""
        if context not in self._pending:
            return []
        k = self._order.index(context) + 1
        done, self._order = self._order[:k], self._order[k:]
        return [self._pending.pop(c) for c in done]

    def last_context(self) -> bytes:
        return self._order[-1] if self._order else b""

    def drain(self) -> list[ReadRequest]:
        out = [self._pending[c] for c in self._order]
        self._pending.clear()
        self._order.clear()
        return out

    def __len__(self) -> int:
        return len(self._order)


def lease_holds(config: MajorityConfig, stamps: Mapping[int, int], now: int, lease_ticks: int) -> bool:
    """True while ``now`` is within ``lease_ticks`` of the newest stamp a majority has echoed."""
    return now - config.committed_index(stamps) < lease_ticks
