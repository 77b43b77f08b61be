"""SimNetwork: in-flight messages with seeded loss, duplication, reordering and partitions.

Messages wait in one pool; ``next_message`` picks the oldest, or with probability ``reorder`` a
random one, so delay and reordering come from the same choice. With probability
``late_duplicate`` a sent message is also delivered once more much later (after 200 to 2,000
further sends: a retransmission that lost its way), which is how stale snapshots, appends and
votes reach a node long after it moved on. A partition is a set of cut
(from, to) links, checked at delivery: a message sent before the cut but delivered after it is
dropped, as a real dropped packet would be.
"""

from __future__ import annotations

import bisect
import random

from raftlab.impl.raft import Message


class SimNetwork:
    def __init__(self, rng: random.Random, *, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, late_duplicate: float = 0.0) -> None:
        self.rng = rng
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.late_duplicate = late_duplicate
        self.pool: list[Message] = []
        self.sent = 0  # the clock of late duplicates: messages sent so far
        self.late: list[tuple[int, Message]] = []  # (send count it is due at, message), sorted
        self.cut: set[tuple[int, int]] = set()

    def send(self, m: Message) -> None:
        self.sent += 1
        if self.rng.random() < self.loss:
            return
        self.pool.append(m)
        if self.rng.random() < self.duplicate:
            self.pool.append(m)
        if self.late_duplicate and self.rng.random() < self.late_duplicate:
            bisect.insort(self.late, (self.sent + self.rng.randrange(200, 2000), m), key=lambda item: item[0])

    def next_message(self) -> Message | None:
        if self.late and self.late[0][0] <= self.sent:
            return self.late.pop(0)[1]
        if not self.pool:
            return None
        if len(self.pool) > 1 and self.rng.random() < self.reorder:
            return self.pool.pop(self.rng.randrange(len(self.pool)))
        return self.pool.pop(0)

    def connected(self, a: int, b: int) -> bool:
        return (a, b) not in self.cut

    def partition(self, side: set[int], other: set[int]) -> None:
        self.cut = {(a, b) for a in side for b in other} | {(b, a) for a in side for b in other}

    def partitioned(self) -> bool:
        return bool(self.cut)

    def heal(self) -> None:
        self.cut = set()

    def drop_for(self, node: int) -> None:
        """A crashed node's in-flight messages (to or from it) vanish with its connections."""
        self.pool = [m for m in self.pool if m.to != node and m.from_ != node]
        self.late = [(due, m) for due, m in self.late if m.to != node and m.from_ != node]
