"""The durable Raft log: segmented append-only files, every entry framed and checksummed.

Layout of a data directory::

    DIR/meta                        hard state (see meta.py)
    DIR/manifest                    what must exist: first index, every segment (see meta.py)
    DIR/wal/00000000000000000001.seg   segments, named by the index of their first entry

A segment starts with the magic ``RLWAL01\\n`` and holds consecutive entries, each framed as

    u32 data length | u32 CRC32 | u64 term | u64 index | u8 type | data

(big-endian; the CRC covers term, index, type and data). A segment is closed once it passes
``segment_bytes`` and the next batch starts a new one.

Guarantees:

- ``append`` writes a whole Ready's entries with one ``write()`` after truncating any
  conflicting suffix (Raft §5.3); ``sync`` makes everything written so far durable with one
  fdatasync per touched segment (plus a directory fsync when segments were created or removed).
  That is group commit: one fsync per Ready, however many proposals it carries.
- Recovery (in the constructor) reads every file, lets ``recovery.plan_recovery`` judge the
  whole directory, and only then changes anything: a torn tail (the end of the last segment,
  nothing valid after it) is cut with a log line; anything else, including a lost file the
  manifest lists, is refused with ``StorageError`` naming the file and byte offset, every byte
  left as it was (``raftlab node repair`` is the explicit way on; docs/node.md, recovery).
- The manifest is rewritten (atomically, fsynced) when a segment is created, before segments
  are deleted, and on repair; never per append. The log may start above index 1 when the
  manifest's ``first_index`` says so (a compacted log).
- With ``durable=False`` (``--fsync async``) ``sync`` only writes; ``flush`` (called about once a
  second by the node) fsyncs the segments and the meta file (term, vote). The loss window is what was written since the last flush, and only
  on an OS crash or power loss: a killed process loses nothing that reached ``write()``.

Compaction (compaction.py decides, ``drop_through`` carries it out) deletes whole leading
segments once a durable snapshot covers them, rewriting the manifest (its ``first_index`` moves
up) before any file goes; ``first_index() - 1`` is then the entry just below the log, whose term
is still known (``term``). Recovery with a snapshot (``snapshots``) requires the log to start at
or below ``snapshot.index + 1`` (else entries are missing: refused) and, if the log does not
continue the snapshot (it ends before it, or holds another term at its index: a follower that
crashed while installing one), starts the log afresh after it (``compaction.plan_snapshot``).
``reset_to`` is that fresh start, used by an install.

Every entry of the remaining segments is kept in memory, so reads never touch disk.

Repair (``raftlab node repair``), for a directory recovery refused, is two functions here.
Recovery (storage/recovery.py) never guesses: a lost file or corruption in the middle of the log
stops the node with the file and offset. What to do next is a decision with consequences, so it
is a separate command that says what it did:

* ``--rebuild-manifest``: only the manifest is gone (or the directory predates manifests). The
  segments and ``meta`` are listed as they are; the node's next start still checks every record,
  so corruption in them is still refused. It refuses when ``meta`` is missing too.
* ``--empty``: the log or ``meta`` is damaged beyond that. The directory is moved aside, whole
  (``DIR.damaged-<UTC time>``, kept for inspection), and a fresh one is created whose manifest
  says ``rejoin``: the node starts with no log, no term and no vote, grants no vote and never
  campaigns until a leader has brought it up to that leader's commit index, and then counts as
  having voted for that leader in its term. So the vote it forgot cannot elect a second leader,
  and an election that needs it waits for a member that still holds the data (the entries it
  acknowledged may exist only there) instead of electing one that lacks them. Raft needs a
  majority of intact members for this to end: repair one member at a time.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from raftlab.impl.raft.messages import Entry, HardState, SnapshotMeta
from raftlab.impl.storage.compaction import plan_snapshot
from raftlab.impl.storage.meta import (
    Manifest,
    StorageError,
    fsync_dir,
    load_manifest,
    load_meta,
    save_manifest,
    save_meta,
    sync_file,
)
from raftlab.impl.storage.recovery import (
    MAGIC,
    RECORD,
    Plan,
    encode_record,
    plan_recovery,
    scan_segment,
    segment_name,
)
from raftlab.impl.storage.snapshot import SnapshotFiles

SEGMENT_BYTES = 4 * 1024 * 1024  # small enough that compaction frees space in steps
__all__ = ["MAGIC", "RECORD", "SEGMENT_BYTES", "StorageError", "WalStorage", "encode_record", "segment_name"]


class WalStorage:
    """Durable ``Storage`` (impl/storage protocol): reads from memory, writes to segments."""

    def __init__(self, data_dir: str | Path, *, durable: bool = True, segment_bytes: int = SEGMENT_BYTES,
                 logger: Callable[[str], None] | None = None, node_id: int = 0,
                 snapshots: SnapshotFiles | None = None) -> None:
        self.dir = Path(data_dir)
        self.wal_dir = self.dir / "wal"
        self.meta_path = self.dir / "meta"
        self.manifest_path = self.dir / "manifest"
        self.durable = durable
        self.segment_bytes = segment_bytes
        self._log = logger or (lambda _line: None)
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        # the snapshot files (compaction.recover opens them first; None: a log without snapshots)
        self.snapshots = snapshots
        # in-memory log: _entries[i] has index _base + i + 1; _where[i] = (segment number, byte
        # offset), segment number n being _segments[n - _seg0]; _base_term is the term of _base
        self._base = 0
        self._base_term = 0
        self._entries: list[Entry] = []
        self._where: list[tuple[int, int]] = []
        self._segments: list[Path] = []
        self._seg0 = 0
        self._fd = -1  # the active (last) segment, open for append
        self._size = 0  # bytes in the active segment
        self._dirty_fds: set[int] = set()
        self._closed_dirty: list[int] = []  # rolled segments written but not yet fsynced
        self._dir_dirty = False
        self._meta_unsynced = False  # --fsync async: meta replaced without fsync since the last flush
        self._hard = HardState()
        self.manifest = Manifest()
        self._recover(node_id)
        self._saved_hard = self._hard

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self, node_id: int) -> None:
        """Judge the whole directory (recovery.py) before changing a byte, then carry out the plan."""
        for stray in self.wal_dir.glob("*.tmp"):
            stray.unlink()
        paths = sorted(p for p in self.wal_dir.iterdir() if p.suffix == ".seg")
        manifest = load_manifest(self.manifest_path)
        meta = load_meta(self.meta_path) if self.meta_path.exists() else None
        if manifest is not None and node_id and manifest.node not in (0, node_id):
            raise StorageError(f"{self.manifest_path}: this data directory belongs to node {manifest.node}, "
                               f"not {node_id}")
        plan = plan_recovery(manifest=manifest, manifest_path=str(self.manifest_path), meta=meta,
                             meta_path=str(self.meta_path), wal_dir=str(self.wal_dir),
                             scans=[scan_segment(str(p), p.read_bytes()) for p in paths], durable=self.durable)
        snap = self.snapshot_meta()
        first = plan.manifest.first_index
        last = first - 1 + sum(len(s.entries) for s in plan.segments)
        # with snapshot files (the node always has them), the log must continue the newest one;
        # judged before any byte changes
        if self.snapshots is not None and plan_snapshot(snap.index, snap.term, first, last, 0) == "refuse":
            raise StorageError(f"{self.manifest_path}: the log starts at index {first}, but the newest valid "
                               f"snapshot holds only through {snap.index}: entries {snap.index + 1}..{first - 1} "
                               "are lost; refusing to start")
        self._carry_out(plan, manifest, node_id)

    def _carry_out(self, plan: Plan, found: Manifest | None, node_id: int) -> None:
        fresh = found is None
        for line in plan.notes:
            self._log(line)
        if plan.truncate is not None:
            path, offset, problem = plan.truncate
            self._truncate_file(Path(path), offset, problem)
        for path in plan.delete:
            Path(path).unlink()
        self._hard = plan.hard_state
        self._base = plan.manifest.first_index - 1
        for pos, scan in enumerate(plan.segments):
            self._segments.append(Path(scan.path))
            skip = max(0, plan.manifest.first_index - scan.first)  # below a compaction point: unused
            self._entries.extend(scan.entries[skip:])
            self._where.extend((pos, off) for off in scan.offsets[skip:])
        manifest = plan.manifest
        if fresh:
            save_meta(self.meta_path, self._hard)  # before the manifest: its presence vouches for meta
        if node_id and manifest.node != node_id:
            manifest = dataclasses.replace(manifest, node=node_id)
        self.manifest = manifest
        if self.snapshots is not None:
            self._continue_snapshot(self.snapshot_meta())
        if self._segments:
            self._fd = os.open(self._segments[-1], os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
            if self._size < len(MAGIC):  # a header cut short, truncated to nothing above
                self._write(MAGIC)
                self._size = len(MAGIC)
            if manifest != found:
                self._save_manifest(manifest)
        else:
            self._new_segment(self.last_index() + 1)

    def _continue_snapshot(self, snap: SnapshotMeta) -> None:
        """Make the recovered log continue the snapshot (compaction.plan_snapshot decides)."""
        plan = plan_snapshot(snap.index, snap.term, self._base + 1, self.last_index(), self.term(snap.index))
        if plan == "reset":
            self._log(f"wal: the log ({self._base + 1}..{self.last_index()}) does not continue snapshot "
                      f"{snap.term}/{snap.index}; starting it afresh after the snapshot")
            self._save_manifest(dataclasses.replace(self.manifest, first_index=snap.index + 1, segments=()))
            for path in self._segments:
                path.unlink()
            fsync_dir(self.wal_dir)
            self._seg0 += len(self._segments)
            self._segments = []
            self._entries.clear()
            self._where.clear()
            self._base, self._base_term = snap.index, snap.term
        elif plan == "base-is-snapshot":
            self._base_term = snap.term
        elif plan == "drop-first":  # the term below the first entry is unknown: that entry becomes the base
            self._base_term = self._entries[0].term
            self._base += 1
            del self._entries[0]
            del self._where[0]

    def _save_manifest(self, manifest: Manifest) -> None:
        if self._dir_dirty:  # a new segment's directory entry is durable before the manifest names it
            fsync_dir(self.wal_dir)
            self._dir_dirty = False
        save_manifest(self.manifest_path, manifest)
        self.manifest = manifest

    def mark_rejoin(self) -> None:
        """Record that this directory was rebuilt empty (``raftlab node repair --empty``)."""
        self._save_manifest(dataclasses.replace(self.manifest, rejoin=True))

    def clear_rejoin(self) -> None:
        """The repaired node caught up with a leader (and its vote for it is synced)."""
        self._save_manifest(dataclasses.replace(self.manifest, rejoin=False))

    def _truncate_file(self, path: Path, offset: int, problem: str) -> None:
        size = path.stat().st_size
        self._log(f"wal: {path}: torn tail at offset {offset} ({problem}); truncating {size - offset} bytes")
        with open(path, "r+b") as f:
            f.truncate(offset)
            os.fsync(f.fileno())

    # -- Storage reads -----------------------------------------------------------------------

    def initial_state(self) -> HardState:
        return self._hard

    def first_index(self) -> int:
        return self._base + 1

    def last_index(self) -> int:
        return self._base + len(self._entries)

    def term(self, index: int) -> int:
        """Term of the entry at ``index`` (``first_index() - 1`` included); 0 outside the log."""
        k = index - self._base
        if k == 0:
            return self._base_term
        if not 1 <= k <= len(self._entries):
            return 0
        return self._entries[k - 1].term

    def snapshot_meta(self) -> SnapshotMeta:
        return self.snapshots.meta if self.snapshots is not None else SnapshotMeta()

    def snapshot_chunk(self, index: int, offset: int, size: int) -> bytes | None:
        return self.snapshots.read_chunk(index, offset, size) if self.snapshots is not None else None

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi); with max_bytes, the longest prefix within it (at least one entry)."""
        b = self._base
        out = self._entries[max(lo - b, 1) - 1 : max(hi - b, 1) - 1]
        if max_bytes is not None and len(out) > 1:
            total = 0
            for n, e in enumerate(out):
                total += len(e.data) + 32
                if total > max_bytes and n > 0:
                    return out[:n]
        return out

    # -- writes ------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        last = self.last_index()
        if first <= self._base:
            raise ValueError(f"append at index {first} is below the compacted log (first index {self._base + 1})")
        if first > last + 1:
            raise ValueError(f"append at index {first} leaves a gap after {last}")
        if first <= last:
            self._truncate_from(first)
        if self._size >= self.segment_bytes:
            self._roll(first)
        pos = self._seg0 + len(self._segments) - 1
        off = self._size
        where = self._where
        chunks = []
        for e in entries:
            rec = encode_record(e)
            where.append((pos, off))
            off += len(rec)
            chunks.append(rec)
        self._write(b"".join(chunks))
        self._size = off
        self._entries.extend(entries)

    def _write(self, buf: bytes) -> None:
        view = memoryview(buf)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:  # disk full: say which file and what was being done
            raise OSError(e.errno, f"write of {len(view)} bytes to {self._segments[-1]}: {e.strerror}") from e
        self._dirty_fds.add(self._fd)

    def _truncate_from(self, index: int) -> None:
        """Drop entries index.. (a conflicting suffix), on disk and in memory. Segments that go
        are dropped from the manifest first: a crash in between leaves an unlisted trailing
        segment, which recovery adopts (the state before this truncation, never acknowledged past)."""
        k = index - self._base - 1
        pos, off = self._where[k]
        pos -= self._seg0
        if len(self._segments) - 1 > pos:
            self._save_manifest(self.manifest.with_segments(self.manifest.segments[:pos + 1]))
        while len(self._segments) - 1 > pos:
            self._close_active()
            self._segments.pop().unlink()
            self._dir_dirty = True
            self._fd = os.open(self._segments[-1], os.O_WRONLY | os.O_APPEND)
        os.ftruncate(self._fd, off)
        self._size = off
        self._dirty_fds.add(self._fd)
        del self._entries[k:]
        del self._where[k:]

    def _close_active(self) -> None:
        if self._fd in self._dirty_fds:
            self._dirty_fds.discard(self._fd)
            self._closed_dirty.append(self._fd)
        else:
            os.close(self._fd)

    def _roll(self, first_index: int) -> None:
        self._close_active()
        self._new_segment(first_index)

    def _new_segment(self, first_index: int) -> None:
        path = self.wal_dir / segment_name(first_index)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._segments.append(path)
        self._size = 0
        self._write(MAGIC)
        self._size = len(MAGIC)
        self._dir_dirty = True
        self._save_manifest(self.manifest.with_segments((*self.manifest.segments, first_index)))

    def set_hard_state(self, hs: HardState) -> None:
        self._hard = hs

    # -- the compaction seam (compaction.py decides what; these carry it out) -----------------

    def segment_firsts(self) -> list[int]:
        """The first index of every segment, oldest first."""
        return [int(p.stem) for p in self._segments]

    def wal_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._segments[:-1]) + self._size

    def drop_through(self, count: int) -> list[Path]:
        """Delete the ``count`` oldest segments (never the active one) and forget their entries;
        returns the removed paths. The caller made sure a durable snapshot covers them. The
        manifest moves its first index up first: a crash before the files go leaves segments
        wholly below it, which recovery deletes."""
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return []
        new_first = int(self._segments[count].stem)
        kept = tuple(int(p.stem) for p in self._segments[count:])
        self._save_manifest(dataclasses.replace(self.manifest, first_index=new_first, segments=kept))
        self._base_term = self.term(new_first - 1)
        drop = new_first - 1 - self._base
        del self._entries[:drop]
        del self._where[:drop]
        self._base = new_first - 1
        removed, self._segments = self._segments[:count], self._segments[count:]
        self._seg0 += count
        for path in removed:
            path.unlink()
        fsync_dir(self.wal_dir)
        return removed

    def reset_to(self, snap: SnapshotMeta) -> None:
        """Replace the whole log by an empty one that continues ``snap`` (a follower installing a
        snapshot its log does not contain). The snapshot file is durable before this is called;
        the manifest says the log starts after it before the old segments go. Durable on return."""
        self._persist(True)
        os.close(self._fd)
        self._save_manifest(dataclasses.replace(self.manifest, first_index=snap.index + 1, segments=()))
        for path in self._segments:
            path.unlink()
        self._dir_dirty = True
        self._seg0 += len(self._segments)
        self._segments = []
        self._entries.clear()
        self._where.clear()
        self._base, self._base_term = snap.index, snap.term
        self._new_segment(snap.index + 1)
        self._persist(True)

    def sync(self) -> None:
        """Make every append and hard-state change durable (only write them when not durable)."""
        self._persist(self.durable)

    def flush(self) -> None:
        """fsync everything regardless of the mode (the async mode's periodic flush)."""
        self._persist(True)

    def _persist(self, durable: bool) -> None:
        if durable:
            try:
                for fd in self._closed_dirty:
                    os.fdatasync(fd)
                for fd in self._dirty_fds:
                    os.fdatasync(fd)
            except OSError as e:
                raise OSError(e.errno, f"fdatasync of the segments in {self.wal_dir}: {e.strerror}") from e
            self._dirty_fds.clear()
            for fd in self._closed_dirty:
                os.close(fd)
            self._closed_dirty.clear()
            if self._dir_dirty:
                fsync_dir(self.wal_dir)
                self._dir_dirty = False
        hs, saved = self._hard, self._saved_hard
        # term and vote must be durable before acting on them; commit alone rides along later
        if hs.term != saved.term or hs.vote != saved.vote:
            save_meta(self.meta_path, hs, durable=durable)
            self._saved_hard = hs
            self._meta_unsynced = not durable
        elif durable and self._meta_unsynced:
            # the async mode's flush: a meta file replaced without fsync is made durable too
            sync_file(self.meta_path)
            self._meta_unsynced = False

    def close(self) -> None:
        self.flush()
        save_meta(self.meta_path, self._hard)
        os.close(self._fd)
        self._fd = -1


# -- repair (`raftlab node repair`) -----------------------------------------------------------


def repair_rebuild_manifest(data_dir: Path, node_id: int) -> str:
    """List the segments as found; then open the directory as a node would (every record checked)."""
    meta = data_dir / "meta"
    if not meta.exists():
        raise StorageError(f"{meta}: missing as well: term and vote are lost; use --empty")
    paths = sorted(p for p in (data_dir / "wal").glob("*.seg"))
    scans = [scan_segment(str(p), p.read_bytes()) for p in paths]
    first = scans[0].first if scans else 1
    save_manifest(data_dir / "manifest", Manifest(node=node_id, first_index=first,
                                                  segments=tuple(s.first for s in scans)))
    storage = WalStorage(data_dir, node_id=node_id)
    try:
        return (f"{data_dir / 'manifest'}: rebuilt: {len(scans)} segments, entries "
                f"{storage.first_index()}..{storage.last_index()}, {storage.initial_state().describe()}")
    finally:
        storage.close()


def repair_empty(data_dir: Path, node_id: int, *, now: float | None = None, keep: tuple[str, ...] = ()) -> str:
    """Move the directory aside and create an empty one that rejoins (no vote until caught up).
    The entries named in ``keep`` (the other Raft groups' ``groups`` directory, impl/groups.py)
    are not this log's: they move back into the new directory untouched."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = data_dir.with_name(f"{data_dir.name}.damaged-{stamp}")
    moved = data_dir.exists()
    if moved:
        if aside.exists():
            raise StorageError(f"{aside}: exists already; move it away first")
        data_dir.rename(aside)
    storage = WalStorage(data_dir, node_id=node_id)
    storage.mark_rejoin()
    storage.close()
    for name in keep if moved else ():
        if (aside / name).exists():
            (aside / name).rename(data_dir / name)
    kept = f"the damaged directory is kept as {aside}; " if moved else ""
    return (f"{data_dir}: recreated empty for node {node_id}; {kept}it rejoins with no vote until a leader "
            "has caught it up")
