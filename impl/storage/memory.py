"""In-memory Storage with a written/synced split, for the simulator and unit tests.

``append`` and ``set_hard_state`` change what was *written*; ``sync`` makes it *synced*.
``crash()`` returns the storage a restarted node would find: only what was synced, exactly the
loss a real disk without fsync would show.

Snapshots follow the same rules as the files of snapshot.py, in memory: ``save_snapshot``
stores an encoded image as durable (the simulator calls it when its simulated background write
completes), ``compact`` drops entries up to a floor, a received stream is assembled chunk by
chunk (a crash loses it, as it loses an unfsynced ``.partial`` file) and ``install`` verifies it
with the same decoder and resets the log after it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace

from raftlab.impl.raft.messages import Entry, HardState, SnapshotChunk, SnapshotMeta
from raftlab.impl.storage.snapshot_format import SnapshotError, SnapshotImage, decode, encode


class MemoryStorage:
    def __init__(self, entries: Sequence[Entry] = (), hard_state: HardState | None = None, *,
                 base: tuple[int, int] = (0, 0), snapshot: bytes = b"") -> None:
        self._base, self._base_term = base  # entries start at _base + 1; _base has term _base_term
        self._entries: list[Entry] = list(entries)
        self._hs = hard_state or HardState()
        self._synced_entries: list[Entry] = list(entries)
        self._synced_base = base
        self._synced_hs = self._hs
        self._dirty_from = self.last_index() + 1  # lowest index written since the last sync
        self.snapshot = snapshot  # the encoded newest snapshot (durable once here)
        self._meta = SnapshotMeta() if not snapshot else decode(snapshot, "memory").meta
        self._partial = bytearray()

    def initial_state(self) -> HardState:
        return self._hs

    def first_index(self) -> int:
        return self._base + 1

    def last_index(self) -> int:
        return self._base + len(self._entries)

    def term(self, index: int) -> int:
        if index == self._base:
            return self._base_term
        if index <= self._base or index > self.last_index():
            return 0
        return self._entries[index - self._base - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        b = self._base + 1
        out = self._entries[max(lo, b) - b:max(hi, b) - b]
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
        if first > self.last_index() + 1 or first <= self._base:
            raise AssertionError(f"gap: appending {first} to the log {self._base + 1}..{self.last_index()}")
        del self._entries[first - self._base - 1:]
        self._entries.extend(entries)
        self._dirty_from = min(self._dirty_from, first)

    def set_hard_state(self, hs: HardState) -> None:
        self._hs = hs

    def sync(self) -> None:
        """Make what was written synced; costs only what changed since the last sync."""
        k = self._dirty_from - self._base - 1
        del self._synced_entries[k:]
        self._synced_entries.extend(self._entries[k:])
        self._dirty_from = self.last_index() + 1
        self._synced_hs = self._hs

    def synced_last_index(self) -> int:
        return self._synced_base[0] + len(self._synced_entries)

    def synced_hard_state(self) -> HardState:
        return self._synced_hs

    def crash(self) -> MemoryStorage:
        """The storage a node finds after a crash: what was synced, nothing else."""
        return MemoryStorage(self._synced_entries, self._synced_hs, base=self._synced_base, snapshot=self.snapshot)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot_meta(self) -> SnapshotMeta:
        return self._meta

    def snapshot_chunk(self, index: int, offset: int, size: int) -> bytes | None:
        if index != self._meta.index or not self.snapshot:
            return None
        return self.snapshot[offset:offset + size]

    def image(self) -> SnapshotImage | None:
        return decode(self.snapshot, "memory") if self.snapshot else None

    def save_snapshot(self, image: SnapshotImage) -> SnapshotMeta:
        """Store ``image`` as the newest snapshot (durable at once: a simulated write that completed)."""
        if image.meta.index <= self._meta.index:
            return self._meta
        self.snapshot = encode(image)
        self._meta = replace(image.meta, size=len(self.snapshot))
        return self._meta

    def compact(self, floor: int) -> None:
        """Forget entries up to ``floor`` (covered by a durable snapshot), written and synced."""
        floor = min(floor, self._meta.index, self.last_index())
        if floor <= self._base:
            return
        term = self.term(floor)
        drop = floor - self._base
        del self._entries[:drop]
        sb = self._synced_base[0]
        del self._synced_entries[:max(0, floor - sb)]
        self._base = floor
        self._base_term = term
        if sb < floor:
            self._synced_base = (floor, term)

    def receive(self, chunk: SnapshotChunk) -> None:
        if chunk.offset == 0:
            self._partial = bytearray()
        if chunk.offset != len(self._partial):
            raise AssertionError(f"chunk at {chunk.offset} but {len(self._partial)} bytes assembled")
        self._partial += chunk.data

    def install(self, meta: SnapshotMeta) -> SnapshotImage | None:
        """Verify the assembled stream; if it holds ``meta``, make it the snapshot and reset the
        log to an empty one after it (durably). None if it does not verify."""
        raw, self._partial = bytes(self._partial), bytearray()
        try:
            image = decode(raw, "received snapshot")
        except SnapshotError:
            return None
        if (image.meta.index, image.meta.term) != (meta.index, meta.term):
            return None
        self.snapshot = raw
        self._meta = image.meta
        self._base, self._base_term = meta.index, meta.term
        self._entries = []
        self._synced_entries = []
        self._synced_base = (meta.index, meta.term)
        self._dirty_from = meta.index + 1
        return image
