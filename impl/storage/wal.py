"""The durable Raft log: segmented append-only files, every entry framed and checksummed.

Layout of a data directory::

    DIR/meta                        hard state (see meta.py)
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
- Recovery (in the constructor) reads every segment. A damaged record at the end of the LAST
  segment (cut short, or failing its CRC with nothing but zeros after it) is a torn write from a
  crash: it and everything after it are truncated away, and the log says so. Any other damage
  (a bad record followed by more data, a gap in indexes, a damaged earlier segment) is refused
  with ``StorageError`` naming the file and byte offset: silently dropping entries there could
  lose acknowledged writes.
- With ``durable=False`` (``--fsync async``) ``sync`` only writes; ``flush`` (called about once a
  second by the node) fsyncs the segments and the meta file (term, vote). The loss window is what was written since the last flush, and only
  on an OS crash or power loss: a killed process loses nothing that reached ``write()``.

Compaction (compaction.py decides, ``drop_through`` carries it out) deletes whole leading
segments once a durable snapshot covers them; the log then starts above index 1, and
``first_index() - 1`` is the entry just below it, whose term is still known (``term``). With a
snapshot, recovery accepts a first segment at or below ``snapshot.index + 1`` and, if the log
does not continue the snapshot (it ends before it, or holds another term at its index: a
follower that crashed while installing one), starts the log afresh after it
(``compaction.plan_recovery``). ``reset_to`` is that fresh start, used by an install.

Every entry of the remaining segments is kept in memory, so reads never touch disk.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from raftlab.impl.raft.messages import Entry, EntryType, HardState, SnapshotMeta
from raftlab.impl.storage.compaction import plan_recovery
from raftlab.impl.storage.meta import StorageError, fsync_dir, load_meta, save_meta, sync_file
from raftlab.impl.storage.snapshot import SnapshotFiles

MAGIC = b"RLWAL01\n"
RECORD = struct.Struct(">IIQQB")  # length, crc, term, index, type
CRC_PART = struct.Struct(">QQB")
SEGMENT_BYTES = 4 * 1024 * 1024  # small enough that compaction frees space in steps
MAX_ENTRY_BYTES = 64 * 1024 * 1024
_ENTRY_TYPES = {int(t): t for t in EntryType}


def encode_record(e: Entry) -> bytes:
    part = CRC_PART.pack(e.term, e.index, e.type)
    crc = zlib.crc32(e.data, zlib.crc32(part))
    return struct.pack(">II", len(e.data), crc) + part + e.data


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.seg"


class WalStorage:
    """Durable ``Storage`` (impl/storage protocol): reads from memory, writes to segments."""

    def __init__(self, data_dir: str | Path, *, durable: bool = True, segment_bytes: int = SEGMENT_BYTES,
                 logger: Callable[[str], None] | None = None, snapshots: SnapshotFiles | None = None) -> None:
        self.dir = Path(data_dir)
        self.wal_dir = self.dir / "wal"
        self.meta_path = self.dir / "meta"
        self.durable = durable
        self.segment_bytes = segment_bytes
        self._log = logger or (lambda _line: None)
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        self._hard = load_meta(self.meta_path)
        self._saved_hard = self._hard
        # the snapshot files (compaction.recover opens them first; None: a log without snapshots)
        self.snapshots = snapshots
        self._snapshot = snapshots.meta if snapshots is not None else SnapshotMeta()
        # in-memory log: _entries[i] has index _base + 1 + i; _where[i] = (segment number, byte
        # offset) where segment number n is _segments[n - _seg0]; _base_term is the term of _base
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
        self._recover()

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self) -> None:
        paths = sorted(p for p in self.wal_dir.iterdir() if p.suffix == ".seg")
        for stray in self.wal_dir.glob("*.tmp"):
            stray.unlink()
        snap = self._snapshot
        expected = 1
        for pos, path in enumerate(paths):
            last = pos == len(paths) - 1
            try:
                first = int(path.stem)
            except ValueError:
                raise StorageError(f"{path}: segment name is not a first index") from None
            if pos == 0 and 1 < first <= snap.index + 1:  # compacted: the snapshot holds what came before
                expected = first
                self._base = first - 1
                self._base_term = snap.term if first - 1 == snap.index else 0
            if first != expected:
                raise StorageError(f"{path}: segment starts at index {first}, expected {expected} (a segment is missing"
                                   + (f"; the newest snapshot holds only through {snap.index})" if pos == 0 else ")"))
            self._segments.append(path)
            expected = self._read_segment(pos, path, expected, last)
        if snap.index:
            self._continue_snapshot(snap)
        if self._hard.commit > self.last_index():
            if not self.durable:  # --fsync async: the documented loss window after an OS crash
                self._log(f"wal: commit {self._hard.commit} beyond the log's last entry {self.last_index()} "
                          "(unflushed writes lost); lowering it")
                self._hard = HardState(term=self._hard.term, vote=self._hard.vote, commit=self.last_index())
                return self._open_active()
            last = f" ({self._segments[-1]} ends there)" if self._segments else ""
            raise StorageError(
                f"{self.meta_path}: commit index {self._hard.commit} is beyond the last log entry "
                f"{self.last_index()}{last}: log files were lost or damaged; refusing to start")
        self._open_active()

    def _continue_snapshot(self, snap: SnapshotMeta) -> None:
        """Make the recovered log continue the snapshot (see compaction.plan_recovery)."""
        plan = plan_recovery(snap.index, snap.term, self._base + 1, self.last_index(), self.term(snap.index))
        if plan == "reset":
            self._log(f"wal: the log ({self._base + 1}..{self.last_index()}) does not continue snapshot "
                      f"{snap.term}/{snap.index}; starting it afresh after the snapshot")
            for path in self._segments:
                path.unlink()
            self._segments.clear()
            self._entries.clear()
            self._where.clear()
            fsync_dir(self.wal_dir)
            self._base, self._base_term = snap.index, snap.term
        elif plan == "drop-first":  # the term below the first kept entry is unknown: keep that entry as the base
            self._base_term = self._entries[0].term
            self._base += 1
            del self._entries[0]
            del self._where[0]

    def _open_active(self) -> None:
        if not self._segments:
            self._new_segment(self._base + 1)
        else:
            self._fd = os.open(self._segments[-1], os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size

    def _read_segment(self, pos: int, path: Path, expected: int, last: bool) -> int:
        raw = path.read_bytes()
        if not raw.startswith(MAGIC):
            if last and len(raw) < len(MAGIC) and MAGIC.startswith(raw):
                self._truncate_file(path, 0, "segment header cut short")
                path.write_bytes(MAGIC)
                return expected
            raise StorageError(f"{path}: offset 0: not a raftlab WAL segment (bad magic)")
        off = len(MAGIC)
        end = len(raw)
        entries = self._entries
        where = self._where
        while off < end:
            problem = None
            if end - off < RECORD.size:
                problem = "record header cut short"
            else:
                length, crc, term, index, etype = RECORD.unpack_from(raw, off)
                rec_end = off + RECORD.size + length
                if length > MAX_ENTRY_BYTES or rec_end > end:
                    problem = "record cut short"
                else:
                    data = raw[off + RECORD.size : rec_end]
                    if zlib.crc32(data, zlib.crc32(raw[off + 8 : off + RECORD.size])) != crc:
                        problem = "checksum mismatch"
                        if raw.count(0, rec_end) != end - rec_end:
                            raise StorageError(f"{path}: offset {off}: corrupt entry in the middle of the log "
                                               f"({problem}, {end - rec_end} bytes of data follow it); "
                                               "refusing to start")
                    elif index != expected:
                        raise StorageError(f"{path}: offset {off}: entry has index {index}, expected {expected}")
                    elif etype not in _ENTRY_TYPES:
                        raise StorageError(f"{path}: offset {off}: unknown entry type {etype}")
            if problem is not None:
                if not last:
                    raise StorageError(f"{path}: offset {off}: corrupt entry in a closed segment ({problem}); "
                                       "refusing to start")
                self._truncate_file(path, off, problem)
                break
            entries.append(Entry(term=term, index=index, type=_ENTRY_TYPES[etype], data=data))
            where.append((self._seg0 + pos, off))
            expected += 1
            off = rec_end
        return expected

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
        if index == self._base:
            return self._base_term
        if not self._base < index <= self._base + len(self._entries):
            return 0
        return self._entries[index - self._base - 1].term

    def snapshot_meta(self) -> SnapshotMeta:
        return self.snapshots.meta if self.snapshots is not None else SnapshotMeta()

    def snapshot_chunk(self, index: int, offset: int, size: int) -> bytes | None:
        return self.snapshots.read_chunk(index, offset, size) if self.snapshots is not None else None

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi); with max_bytes, the longest prefix within it (at least one entry)."""
        base = self._base + 1
        out = self._entries[max(lo, base) - base : max(hi, base) - base]
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
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._dirty_fds.add(self._fd)

    def _truncate_from(self, index: int) -> None:
        """Drop entries index.. (a conflicting suffix), on disk and in memory."""
        pos, off = self._where[index - self._base - 1]
        while self._seg0 + len(self._segments) - 1 > pos:
            self._close_active()
            self._segments.pop().unlink()
            self._dir_dirty = True
            self._fd = os.open(self._segments[-1], os.O_WRONLY | os.O_APPEND)
        os.ftruncate(self._fd, off)
        self._size = off
        self._dirty_fds.add(self._fd)
        del self._entries[index - self._base - 1 :]
        del self._where[index - self._base - 1 :]

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
        returns the removed paths. The caller made sure a durable snapshot covers them."""
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return []
        new_first = int(self._segments[count].stem)
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
        snapshot its log does not contain). Durable on return."""
        self._persist(True)
        os.close(self._fd)
        for path in self._segments:
            path.unlink()
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
            for fd in self._closed_dirty:
                os.fdatasync(fd)
            for fd in self._dirty_fds:
                os.fdatasync(fd)
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
