"""The core's read path, as a mixin of ``RaftCore``: ReadIndex, lease reads, forwarding.

Theory of operation. ReadIndex (thesis §6.4): a read is confirmed by a heartbeat quorum, only
once the leader has committed an entry of its term (before that its commit index is unknown);
the leader numbers reads itself (``readonly.py``) and heartbeats carry the number, so a caller's
bytes never decide which read a follower's answer confirms. A follower forwards its read to the
leader (READ_INDEX) and waits at most ``read_deadline_ticks()`` for the index (READ_INDEX_RESP).

Lease reads (``read_only="lease"``, thesis §6.4.1): heartbeats carry the leader's clock in
``index`` and followers echo it; the lease starts at the stamp a quorum has echoed (the *send*
time, so message delay only shortens it) and lasts ``lease_ticks()``. It is sound because a
follower that heard a leader within election_tick ticks grants no vote (the check-quorum lease,
core.py), and a freshly booted node in lease mode does the same, so no new leader can exist
before then. Assumption: no follower's clock runs faster than the leader's by more than
``lease_drift_bound()``. ``clock`` is elapsed time, not ticks handled: a shell that stalled moves
it (``advance_clock``) before stepping what waited. Without a valid lease (or during a leader
transfer) a read falls back to ReadIndex.

Every read of this node is answered once: a ReadState, or a DroppedRead with its reason
(leadership lost, term changed, refused by the leader, or a forwarded read's deadline passed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import NONE, DroppedRead, Message, MsgType, ReadState, Role
from .readonly import lease_holds

if TYPE_CHECKING:
    from .config import RaftConfig
    from .log import RaftLog
    from .progress import Progress
    from .quorum import Quorum
    from .readonly import ReadOnly


class NotLeader(Exception):
    """A definite refusal: this node is not the leader (``leader_hint`` is NONE when unknown)."""

    def __init__(self, leader_hint: int = NONE) -> None:
        super().__init__(f"not the leader (leader hint: {leader_hint or 'unknown'})")
        self.leader_hint = leader_hint


class ReadPath:
    """Read handling of ``RaftCore``; the attributes below are the core's."""

    if TYPE_CHECKING:
        id: int
        term: int
        lead: int
        role: Role
        clock: int
        config: RaftConfig
        voters: tuple[int, ...]
        quorum: Quorum
        log: RaftLog
        prs: dict[int, Progress]
        read_only: ReadOnly
        reads_waiting_commit: list[tuple[bytes, int]]
        forwarded_reads: dict[bytes, int]
        lease_void: bool
        lead_transferee: int
        _read_states: list[ReadState]
        _dropped_reads: list[DroppedRead]

        def _send(self, m: Message) -> None: ...

        def _bcast_heartbeat(self, seq: int) -> None: ...

    def read_index(self, context: bytes) -> None:
        if self.role is Role.LEADER:
            self._leader_read(context, self.id)
        elif self.lead != NONE:
            self.forwarded_reads[context] = self.clock + self.read_deadline_ticks()
            self._send(Message(type=MsgType.READ_INDEX, to=self.lead, from_=self.id, term=self.term,
                               context=context))
        else:
            raise NotLeader(NONE)

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _leader_read(self, context: bytes, origin: int) -> None:
        if not self._committed_in_term():
            # thesis §6.4 step 1: the commit index is only known once an entry of this term commits
            self.reads_waiting_commit.append((context, origin))
            return
        # alone only if we are the one voter: a leader removed from the voters (handing over)
        # still leads a one-voter configuration of someone else and must ask it
        if self.voters == (self.id,) or (self.config.read_only == "lease" and self._in_lease()):
            self._answer_read(context, origin, self.log.committed)
            return
        self._bcast_heartbeat(self.read_only.add(self.log.committed, context, origin))

    def lease_ticks(self) -> int:
        """How long a lease lasts after the stamp a quorum echoed: the election timeout minus two
        ticks of clock granularity (the leader's clock and a follower's each read whole ticks)
        minus a margin of e // 5 for clock drift; at least one tick. ``lease_drift_bound`` is
        what that buys."""
        e = self.config.election_tick
        return max(1, e - 2 - e // 5)

    def lease_drift_bound(self) -> float:
        """How much faster than the leader's clock a follower's may run with lease reads still
        linearizable: the leader trusts the lease for less than ``lease_ticks + 1`` of its ticks
        after sending a stamp, a follower refuses votes for more than ``election_tick - 1`` of
        its own after receiving it (1.29 for election_tick 10, 1.25 for 6)."""
        return (self.config.election_tick - 1) / (self.lease_ticks() + 1)

    def read_deadline_ticks(self) -> int:
        """How long a follower waits for the leader to answer a forwarded read: two election
        timeouts (by then the leader answered, stepped down or was replaced)."""
        return 2 * self.config.election_tick

    def _in_lease(self) -> bool:
        if self.lease_void or self.lead_transferee != NONE:
            return False
        stamps = {v: (self.clock if v == self.id else pr.lease_stamp) for v, pr in self.prs.items()}
        return lease_holds(self.quorum, stamps, self.clock, self.lease_ticks())

    def _release_reads_waiting_commit(self) -> None:
        if self.reads_waiting_commit and self._committed_in_term():
            waiting, self.reads_waiting_commit = self.reads_waiting_commit, []
            for context, origin in waiting:
                self._leader_read(context, origin)

    def _answer_read(self, context: bytes, origin: int, index: int) -> None:
        if origin == self.id:
            self._read_states.append(ReadState(index=index, context=context))
        else:
            self._send(Message(type=MsgType.READ_INDEX_RESP, to=origin, from_=self.id, term=self.term,
                               index=index, context=context))

    def _take_forwarded(self, context: bytes) -> bool:
        """True once for a context we forwarded and still wait for (duplicates and late answers: False)."""
        return self.forwarded_reads.pop(context, None) is not None

    def _expire_forwarded_reads(self) -> None:
        expired = [c for c, deadline in self.forwarded_reads.items() if deadline <= self.clock]
        for context in expired:
            del self.forwarded_reads[context]
            self._dropped_reads.append(DroppedRead(context=context, reason="timed out waiting for the leader"))

    def _drop_pending_reads(self) -> None:
        """No longer the leader of this term, or a new term: reads that cannot be confirmed any
        more are answered now, each once (a follower's with a refusal it can pass on)."""
        unconfirmed = [(r.context, r.origin) for r in self.read_only.drain()] + self.reads_waiting_commit
        self.reads_waiting_commit = []
        for context, origin in unconfirmed:
            if origin == self.id:
                self._dropped_reads.append(DroppedRead(context=context, reason="leadership lost"))
            else:
                self._send(Message(type=MsgType.READ_INDEX_RESP, to=origin, from_=self.id, term=self.term,
                                   context=context, reject=True))
        # a term change: the leader we forwarded to is gone or deposed; its answer, if any, is ignored
        self._dropped_reads.extend(DroppedRead(context=c, reason="term changed") for c in self.forwarded_reads)
        self.forwarded_reads = {}
