"""In-memory Storage with a written/synced split, for the simulator and unit tests.

``append`` and ``set_hard_state`` change what was *written*; ``sync`` makes it *synced*.
``crash()`` returns the storage a restarted node would find: only what was synced, exactly the
loss a real disk without fsync would show.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from raftlab.impl.raft.messages import Entry, HardState


class MemoryStorage:
    def __init__(self, entries: Sequence[Entry] = (), hard_state: HardState | None = None) -> None:
        self._entries: list[Entry] = list(entries)
        self._hs = hard_state or HardState()
        self._synced_entries: list[Entry] = list(entries)
        self._synced_hs = self._hs
        self._dirty_from = len(self._entries) + 1  # lowest index written since the last sync

    def initial_state(self) -> HardState:
        return self._hs

    def first_index(self) -> int:
        return 1

    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else 0

    def term(self, index: int) -> int:
        if index <= 0 or index > len(self._entries):
            return 0
        return self._entries[index - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        out = self._entries[max(lo, 1) - 1:max(hi, 1) - 1]
        if max_bytes is None or len(out) <= 1:
            return out
        sizes = [0]
        for e in out:
            sizes.append(sizes[-1] + len(e.data) + 16)
        k = max(1, bisect.bisect_right(sizes, max_bytes) - 1)
        return out[:k]

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first > len(self._entries) + 1:
            raise AssertionError(f"gap: appending {first} after {len(self._entries)}")
        del self._entries[first - 1:]
        self._entries.extend(entries)
        self._dirty_from = min(self._dirty_from, first)

    def set_hard_state(self, hs: HardState) -> None:
        self._hs = hs

    def sync(self) -> None:
        """Make what was written synced; costs only what changed since the last sync."""
        k = self._dirty_from - 1
        del self._synced_entries[k:]
        self._synced_entries.extend(self._entries[k:])
        self._dirty_from = len(self._entries) + 1
        self._synced_hs = self._hs

    def synced_last_index(self) -> int:
        return self._synced_entries[-1].index if self._synced_entries else 0

    def synced_hard_state(self) -> HardState:
        return self._synced_hs

    def crash(self) -> MemoryStorage:
        """The storage a node finds after a crash: what was synced, nothing else."""
        return MemoryStorage(self._synced_entries, self._synced_hs)
