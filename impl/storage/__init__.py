"""Where the Raft log and hard state live: one small protocol, two implementations.

``wal.WalStorage`` is the durable one (segmented, CRC-framed, fsync'd) used by the node;
``memory.MemoryStorage`` keeps the same contract in memory, split into what was written and what
was synced, so the simulator can crash a node and lose exactly what a real disk would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from raftlab.impl.raft.messages import Entry, HardState, SnapshotMeta


class Storage(Protocol):
    """What the core reads. ``term(first_index() - 1)`` is known (the entry below a compacted
    log, or the snapshot's); ``snapshot_meta`` is the newest durable snapshot (index 0: none)
    and ``snapshot_chunk`` reads its bytes for a follower (None once it is gone)."""

    def initial_state(self) -> HardState: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int: ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]: ...

    def snapshot_meta(self) -> SnapshotMeta: ...

    def snapshot_chunk(self, index: int, offset: int, size: int) -> bytes | None: ...


class WritableStorage(Storage, Protocol):
    """What the shell calls after ``ready()``; the core only reads."""

    def append(self, entries: Sequence[Entry]) -> None: ...

    def set_hard_state(self, hs: HardState) -> None: ...

    def sync(self) -> None: ...
