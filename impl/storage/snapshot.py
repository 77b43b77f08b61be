"""Snapshot files: the whole DtKV tree at one applied index, written atomically, verified on read.

A snapshot lets the log be compacted (compaction.py) and lets a leader bring back a follower
whose missing entries are gone (InstallSnapshot, impl/raft/snapshots.py). Files live in the data
directory, named for the index they hold, so faults and operators can find them with one glob::

    DIR/snapshot-00000000000000012345.snap     a complete, fsynced snapshot (glob ``snapshot-*.snap``)
    DIR/snapshot-00000000000000012345.snap.tmp being written by this node (removed on start)
    DIR/snapshot-00000000000000012345.snap.partial  being received from a leader (removed on start)
    DIR/snapshot-00000000000000012345.snap.corrupt  refused at start, kept for inspection

The format is in snapshot_format.py (pure). ``SnapshotFiles`` does the I/O: a snapshot is written to
``.tmp``, fsynced, renamed into place and the directory fsynced, and only then are older ones
removed (the newest ``KEEP`` stay, so a corrupt newest one can fall back to the one before when
the log still covers the gap: compaction.recover decides). A chunk stream from a leader is
assembled in ``.partial`` and becomes a snapshot the same way, after it decodes cleanly.

The image is taken in the event loop by ``Tree.image()``: a shallow copy of the key -> bytes map
(values are immutable, so the copy is a consistent, frozen view at the applied index); encoding,
CRC and disk writes happen afterwards, off the loop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from raftlab.impl.raft.messages import SnapshotChunk, SnapshotMeta
from raftlab.impl.storage.meta import StorageError, fsync_dir
from raftlab.impl.storage.snapshot_format import SnapshotError, SnapshotImage, decode, encode, snapshot_name

KEEP = 2  # complete snapshots kept: the newest, and one to fall back to
GLOB = "snapshot-*.snap"
_NAME = re.compile(r"^snapshot-(\d{20})\.snap$")


class SnapshotFiles:
    """The snapshot files of one data directory (see the module docstring for names and rules)."""

    def __init__(self, data_dir: str | Path, *, durable: bool = True,
                 logger: Callable[[str], None] | None = None) -> None:
        self.dir = Path(data_dir)
        self.durable = durable
        self._log = logger or (lambda _line: None)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stray in [*self.dir.glob(GLOB + ".tmp"), *self.dir.glob(GLOB + ".partial")]:
            self._log(f"snapshot: removing {stray.name} (a write or an install cut short)")
            stray.unlink()
        self.meta = SnapshotMeta()  # the newest complete snapshot (index 0: none yet)
        self._receiving: tuple[int, int] | None = None  # (index, term) being assembled in .partial

    def indexes(self) -> list[int]:
        """Indexes of the complete snapshot files, newest first."""
        found = (_NAME.match(p.name) for p in self.dir.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def path(self, index: int) -> Path:
        return self.dir / snapshot_name(index)

    def load(self, index: int) -> SnapshotImage:
        path = self.path(index)
        image = decode(path.read_bytes(), str(path))
        if image.meta.index != index:
            raise SnapshotError(f"{path}: holds index {image.meta.index}, its name says {index}")
        return image

    def set_current(self, meta: SnapshotMeta) -> None:
        self.meta = meta

    def quarantine(self, index: int) -> Path:
        """Move a refused snapshot out of the way (kept as ``.corrupt`` for inspection)."""
        path = self.path(index)
        target = path.with_name(path.name + ".corrupt")
        os.replace(path, target)
        return target

    # -- writing our own ---------------------------------------------------------------------

    def write(self, image: SnapshotImage) -> SnapshotMeta:
        """Encode and durably store ``image``; then remove older snapshots. Runs off the loop."""
        raw = encode(image)
        path = self.path(image.meta.index)
        self._write_atomically(path, raw)
        return replace(image.meta, size=len(raw))

    def _write_atomically(self, path: Path, raw: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(self.dir)  # the rename is durable before anything relies on it (compaction)

    def prune(self, keep_from: int) -> list[int]:
        """Remove complete snapshots older than the ``KEEP`` newest, never ``keep_from`` or newer."""
        removed = []
        for index in self.indexes()[KEEP:]:
            if index < keep_from:
                self.path(index).unlink()
                removed.append(index)
        if removed:
            fsync_dir(self.dir)
        return removed

    # -- serving a follower ------------------------------------------------------------------

    def read_chunk(self, index: int, offset: int, size: int) -> bytes | None:
        """Bytes of snapshot ``index`` from ``offset``; None once that snapshot is gone."""
        try:
            fd = os.open(self.path(index), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    # -- receiving from a leader -------------------------------------------------------------

    def receive(self, chunk: SnapshotChunk) -> None:
        """Write one chunk to the partial file (offset 0 starts it afresh). The core only hands
        out chunks in order, so the file is always the stream's prefix."""
        partial = self.path(chunk.index).with_name(snapshot_name(chunk.index) + ".partial")
        if chunk.offset == 0:
            for old in self.dir.glob(GLOB + ".partial"):
                old.unlink()
            self._receiving = (chunk.index, chunk.term)
        elif self._receiving != (chunk.index, chunk.term):
            raise StorageError(f"{partial}: chunk at offset {chunk.offset} for a stream that was not started")
        with open(partial, "ab") as f:
            if f.tell() != chunk.offset:
                raise StorageError(f"{partial}: chunk at offset {chunk.offset} but the file has {f.tell()} bytes")
            f.write(chunk.data)
            if chunk.done and self.durable:
                os.fsync(f.fileno())

    def finish(self, meta: SnapshotMeta) -> SnapshotImage | None:
        """Verify the assembled stream and make it a complete snapshot; None (and the partial
        file removed) if it does not decode as ``meta`` promised."""
        partial = self.path(meta.index).with_name(snapshot_name(meta.index) + ".partial")
        self._receiving = None
        try:
            image = decode(partial.read_bytes(), str(partial))
            if (image.meta.index, image.meta.term) != (meta.index, meta.term):
                raise SnapshotError(f"{partial}: holds {image.meta.term}/{image.meta.index}, "
                                    f"the leader announced {meta.term}/{meta.index}")
        except (OSError, SnapshotError) as e:
            self._log(f"snapshot: refusing the received snapshot: {e}")
            partial.unlink(missing_ok=True)
            return None
        os.replace(partial, self.path(meta.index))
        fsync_dir(self.dir)
        return image
