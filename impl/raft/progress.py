"""What a leader knows about each follower, and the flow control that bounds what it sends.

Invariant: 0 <= match < next. In PROBE the leader sends one MsgApp and waits (``probe_sent``)
until the follower answers, then moves ``next`` back by the follower's hint until the logs
match; in REPLICATE it pipelines MsgApps optimistically (``next`` jumps ahead when sent), bounded
by ``Inflights`` in both count and bytes, so a slow follower cannot make the leader buffer the
whole log (etcd's tracker/progress.go, design.md). In SNAPSHOT the follower needs entries the
leader compacted: appends pause while the snapshot ``pending_snapshot`` streams in chunks
(``snap_sent`` bytes sent, ``snap_acked`` confirmed on the follower's disk, at most a window of
chunks beyond it), until the follower reports the snapshot installed (its match reaches it)
and probing resumes from there (etcd's StateSnapshot / PendingSnapshot).
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    __slots__ = ("_items", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self._items: deque[tuple[int, int]] = deque()  # (last index of a MsgApp, its bytes)
        self.bytes = 0
        self.max_count = max_count
        self.max_bytes = max_bytes

    def add(self, index: int, size: int) -> None:
        self._items.append((index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        items = self._items
        while items and items[0][0] <= index:
            self.bytes -= items.popleft()[1]

    def full(self) -> bool:
        return len(self._items) >= self.max_count or self.bytes >= self.max_bytes

    def reset(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class Progress:
    __slots__ = ("inflights", "lease_stamp", "match", "match_at_heartbeat", "match_stamp", "next", "pending_snapshot",
                 "probe_sent", "recent_active", "sent", "snap_acked", "snap_acked_at_heartbeat", "snap_sent",
                 "snap_size", "snap_term", "stall_stamp", "stalls", "state")

    def __init__(self, next_index: int, inflights: Inflights) -> None:
        self.match = 0
        self.next = next_index
        self.match_stamp = -1  # leader's clock when match last grew (heartbeat answers older than it are stale)
        self.sent = 0  # the highest index any MsgApp to this follower reached this term (validate.py)
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.recent_active = False
        self.inflights = inflights
        self.match_at_heartbeat = 0
        self.stalls = 0
        self.stall_stamp = -1  # the heartbeat round (leader tick stamp) stalled() last counted
        self.lease_stamp = -(1 << 62)  # leader's clock at the latest heartbeat this follower echoed (lease reads)
        self.pending_snapshot = 0  # SNAPSHOT: the index of the snapshot being sent
        self.snap_term = 0
        self.snap_size = 0
        self.snap_sent = 0  # bytes of it sent (snap_acked <= snap_sent <= snap_size)
        self.snap_acked = 0  # bytes the follower reported on its disk
        self.snap_acked_at_heartbeat = -1

    def new_heartbeat_round(self, stamp: int) -> bool:
        """True for the first answer to a heartbeat stamped ``stamp`` (the leader's tick). The
        extra heartbeats a leader sends within a tick to confirm reads are the same round: they
        are no more evidence of a stall, and no reason to send appends again."""
        if stamp <= self.stall_stamp:
            return False
        self.stall_stamp = stamp
        return True

    def stalled(self) -> bool:
        """Pipelined MsgApps in flight but no progress over two heartbeat rounds: some were lost
        (a reconnect dropped them), so the window will never drain by itself; probe again."""
        if self.state is not ProgressState.REPLICATE or not len(self.inflights) or self.match != self.match_at_heartbeat:
            self.match_at_heartbeat = self.match
            self.stalls = 0
            return False
        self.stalls += 1
        return self.stalls >= 2

    def become_probe(self) -> None:
        # after a snapshot, probing starts just past it (etcd: max(match + 1, pending + 1))
        self.next = max(self.match + 1, self.pending_snapshot + 1) if self.state is ProgressState.SNAPSHOT \
            else self.match + 1
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, index: int, term: int, size: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snap_term = term
        self.snap_size = size
        self.snap_sent = self.snap_acked = 0
        self.snap_acked_at_heartbeat = -1
        self.probe_sent = False
        self.inflights.reset()

    def snapshot_stalled(self) -> bool:
        """Chunks in flight but nothing acknowledged over two heartbeat rounds: some were lost
        (a reconnect, a restart of the follower); resend from the acknowledged offset."""
        if self.snap_sent == self.snap_acked or self.snap_acked != self.snap_acked_at_heartbeat:
            self.snap_acked_at_heartbeat = self.snap_acked
            self.stalls = 0
            return False
        self.stalls += 1
        return self.stalls >= 2

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement of ``index``; False if it was stale."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the MsgApp at ``rejected``; False if it was stale."""
        if self.state is ProgressState.SNAPSHOT:
            return False  # no MsgApp is outstanding: a rejection is from before the snapshot
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.SNAPSHOT:
            return True
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        return self.inflights.full()

    def describe(self) -> str:
        if self.state is ProgressState.SNAPSHOT:
            return (f"snapshot match={self.match} next={self.next} pending={self.pending_snapshot} "
                    f"sent={self.snap_sent}/{self.snap_size} acked={self.snap_acked}")
        return f"{self.state.value} match={self.match} next={self.next} inflight={len(self.inflights)}"
