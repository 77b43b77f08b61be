"""What recovery may do with a data directory: pure decisions over the bytes of its files.

Theory of operation. ``wal.WalStorage`` reads every file and hands the bytes here; nothing in
this module touches the disk, so the simulator and unit tests drive the very same decisions
(``raftlab/sim/hostile.py`` feeds it damaged images). ``plan_recovery`` either returns a
``Plan`` (the entries to serve, at most one torn tail to cut, stale files to delete, the manifest
to write) or raises ``StorageError`` naming the file and offset. Nothing is changed on disk
before the whole directory has been judged, so a refusal leaves every byte as it was.

The rules, and the evidence behind each:

* The **manifest** (``meta.py``) is the durable record of what must exist: the first index
  the log holds (moves up when a snapshot compacts the log) and the first index of every
  segment. A listed segment that is missing, a data directory with segments or ``meta`` but no
  manifest, or a manifest without ``meta``, is refused: a restart that silently forgets its log
  or its vote can lose acknowledged writes.
* A segment not listed is adopted only where a crash can leave one: after the last listed
  segment (created just before the manifest was rewritten), or starting below the first index
  (left by a compaction, or by a snapshot install that replaced the whole log, that rewrote the
  manifest and crashed before deleting it: the manifest's first index is authoritative). Those
  below are deleted; any other unlisted segment is refused.
* A damaged record is a **torn tail** only at the end of the LAST segment, and only when the
  bytes agree: nothing that parses as a valid record of a later index follows it, and it is not
  a complete record (its length reaching exactly the end of the file) with nonzero data but a
  bad checksum, which is a flipped bit, not a write cut short. Everything else is refused.
* Cutting the tail must not cut what ``meta`` says is committed: with ``durable`` (``--fsync
  sync``) that is refused before any byte changes; without it (``--fsync async``, whose loss
  window is documented) the commit index is lowered, with a log line.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

from raftlab.impl.raft.messages import Entry, EntryType, HardState
from raftlab.impl.storage.meta import Manifest, StorageError

MAGIC = b"RLWAL01\n"
RECORD = struct.Struct(">IIQQB")  # length, crc, term, index, type
CRC_PART = struct.Struct(">QQB")
INDEX = struct.Struct(">Q")
MAX_ENTRY_BYTES = 64 * 1024 * 1024
LOOKAHEAD = 64  # later indexes searched for after a damaged record (evidence of more data)
_ENTRY_TYPES = {int(t): t for t in EntryType}
TORN = ("segment header cut short", "record header cut short", "record cut short", "checksum mismatch over zero")


def encode_record(e: Entry) -> bytes:
    part = CRC_PART.pack(e.term, e.index, e.type)
    crc = zlib.crc32(e.data, zlib.crc32(part))
    return struct.pack(">II", len(e.data), crc) + part + e.data


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.seg"


@dataclass(frozen=True, slots=True, kw_only=True)
class Damage:
    offset: int
    problem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentScan:
    """One segment as read: its valid prefix and, if any, the first damaged record."""

    path: str
    first: int  # from the file name
    entries: tuple[Entry, ...]
    offsets: tuple[int, ...]  # byte offset of each entry
    size: int
    damage: Damage | None = None
    trailing_valid: bool = False  # a valid record of a later index follows the damage


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What recovery will do, decided before anything is written."""

    segments: tuple[SegmentScan, ...]  # the segments kept, in order, torn tail already cut
    hard_state: HardState
    manifest: Manifest
    truncate: tuple[str, int, str] | None = None  # (segment path, offset, problem)
    delete: tuple[str, ...] = ()  # paths of stale segments below the first index
    notes: tuple[str, ...] = field(default=())  # log lines about what was decided


def _valid_record_at(raw: bytes, off: int, index: int | None = None) -> tuple[int, Entry] | None:
    """The record at ``off`` (its end and entry) if it is whole and its checksum holds."""
    if len(raw) - off < RECORD.size:
        return None
    length, crc, term, idx, etype = RECORD.unpack_from(raw, off)
    end = off + RECORD.size + length
    if length > MAX_ENTRY_BYTES or end > len(raw) or (index is not None and idx != index):
        return None
    data = raw[off + RECORD.size:end]
    if zlib.crc32(data, zlib.crc32(raw[off + 8:off + RECORD.size])) != crc or etype not in _ENTRY_TYPES:
        return None
    return end, Entry(term=term, index=idx, type=_ENTRY_TYPES[etype], data=bytes(data))


def _valid_record_after(raw: bytes, off: int, expected: int) -> bool:
    """Whether a valid record of index expected+1 .. expected+LOOKAHEAD starts after ``off``."""
    for k in range(1, LOOKAHEAD + 1):
        needle = INDEX.pack(expected + k)
        pos = raw.find(needle, off + 1)
        while pos != -1:
            start = pos - 16  # the index field sits 16 bytes into a record header
            if start > off and _valid_record_at(raw, start, expected + k) is not None:
                return True
            pos = raw.find(needle, pos + 1)
    return False


def scan_segment(path: str, raw: bytes) -> SegmentScan:
    """Parse one segment; stops at the first damaged record and gathers the evidence about it."""
    try:
        first = int(os.path.basename(path).removesuffix(".seg"))
    except ValueError:
        raise StorageError(f"{path}: segment name is not a first index") from None
    if not raw.startswith(MAGIC):
        if len(raw) < len(MAGIC) and MAGIC.startswith(raw):
            return SegmentScan(path=path, first=first, entries=(), offsets=(), size=len(raw),
                               damage=Damage(offset=0, problem="segment header cut short"))
        raise StorageError(f"{path}: offset 0: not a raftlab WAL segment (bad magic)")
    entries: list[Entry] = []
    offsets: list[int] = []
    off, end, expected = len(MAGIC), len(raw), first
    while off < end:
        found = _valid_record_at(raw, off)
        if found is not None and found[1].index == expected:
            offsets.append(off)
            entries.append(found[1])
            off = found[0]
            expected += 1
            continue
        if found is not None:
            raise StorageError(f"{path}: offset {off}: entry has index {found[1].index}, expected {expected}")
        problem = _problem(raw, off)
        return SegmentScan(path=path, first=first, entries=tuple(entries), offsets=tuple(offsets), size=end,
                           damage=Damage(offset=off, problem=problem),
                           trailing_valid=_valid_record_after(raw, off, expected - 1))
    return SegmentScan(path=path, first=first, entries=tuple(entries), offsets=tuple(offsets), size=end)


def _problem(raw: bytes, off: int) -> str:
    """Why the record at ``off`` failed: cut short, or whole but corrupt (a flipped bit)."""
    end = len(raw)
    if end - off < RECORD.size:
        return "record header cut short"
    length, _crc, _term, _index, etype = RECORD.unpack_from(raw, off)
    rec_end = off + RECORD.size + length
    if length > MAX_ENTRY_BYTES or rec_end > end:
        return "record cut short"
    if raw.count(0, off + RECORD.size, rec_end) == length and raw.count(0, rec_end) == end - rec_end:
        return "checksum mismatch over zero-filled data"
    if etype not in _ENTRY_TYPES:
        return f"unknown entry type {etype}"
    return "checksum mismatch"


def plan_recovery(*, manifest: Manifest | None, manifest_path: str, meta: HardState | None, meta_path: str,
                  wal_dir: str, scans: list[SegmentScan], durable: bool) -> Plan:
    """Judge the whole directory; raise StorageError or return what to do."""
    if manifest is None:
        if scans or meta is not None:
            raise StorageError(f"{manifest_path}: missing, but the data directory holds "
                               f"{len(scans)} segments{' and meta' if meta is not None else ''}: a file was lost "
                               "or the directory predates manifests (see `raftlab node repair`)")
        return Plan(segments=(), hard_state=HardState(), manifest=Manifest())
    if meta is None:
        raise StorageError(f"{meta_path}: missing (term and vote lost) while {manifest_path} says this node "
                           "has run; refusing an amnesiac restart (see `raftlab node repair`)")
    by_first = {s.first: s for s in scans}
    missing = [f for f in manifest.segments if f not in by_first]
    if missing:
        raise StorageError(f"{os.path.join(wal_dir, segment_name(missing[0]))}: missing ({len(missing)} of the {len(manifest.segments)} "
                           f"segments listed in {manifest_path} are gone): refusing to start")
    listed = set(manifest.segments)
    last_listed = manifest.segments[-1] if manifest.segments else 0
    delete, kept, notes = [], [], []
    for s in scans:
        if s.first in listed:
            kept.append(s)
        elif s.first < manifest.first_index:
            # the manifest moved its first index up before the files went: a compaction (a
            # segment wholly below) or a snapshot install that replaced the whole log
            delete.append(s.path)
            notes.append(f"wal: {s.path}: below the first index {manifest.first_index} (left by a compaction or "
                         "a snapshot install); deleting it")
        elif s.first > last_listed:
            kept.append(s)
            notes.append(f"wal: {s.path}: not yet in {manifest_path} (a crash while rolling); adopting it")
        else:
            raise StorageError(f"{s.path}: a segment that {manifest_path} does not list: refusing to start")
    first = manifest.first_index
    if kept and kept[0].first <= first <= kept[0].first + len(kept[0].entries):
        expected = kept[0].first  # a compaction point inside the first segment: its older entries go unused
    else:
        expected = first
    for pos, s in enumerate(kept):
        last = pos == len(kept) - 1
        if s.first != expected:
            raise StorageError(f"{s.path}: starts at index {s.first}, expected {expected} (a segment is missing)")
        if s.damage is not None and (not last or s.trailing_valid):
            where = "in a closed segment" if not last else "in the middle of the log (valid entries follow it)"
            raise StorageError(f"{s.path}: offset {s.damage.offset}: corrupt entry {where} ({s.damage.problem}); "
                               "refusing to start")
        if s.damage is not None and not s.damage.problem.startswith(TORN):
            raise StorageError(f"{s.path}: offset {s.damage.offset}: a whole record fails its check "
                               f"({s.damage.problem}): a flipped bit, not a torn write; refusing to start")
        expected = s.first + len(s.entries)
    last_index = expected - 1
    hard = meta
    truncate = None
    tail = kept[-1] if kept else None
    if tail is not None and tail.damage is not None:
        truncate = (tail.path, tail.damage.offset, tail.damage.problem)
    if hard.commit > last_index:
        cause = f"the torn tail of {truncate[0]} at offset {truncate[1]}" if truncate else "the log"
        if durable:
            raise StorageError(f"{meta_path}: commit index {hard.commit} is beyond the last entry {last_index} "
                               f"left by {cause} (committed entries were lost); refusing to start")
        notes.append(f"wal: commit {hard.commit} beyond the log's {last_index} entries (unflushed writes lost); "
                     "lowering it")
        hard = HardState(term=hard.term, vote=hard.vote, commit=last_index)
    segs = tuple(s.first for s in kept)
    new_manifest = manifest if segs == manifest.segments else manifest.with_segments(segs)
    return Plan(segments=tuple(kept), hard_state=hard, manifest=new_manifest, truncate=truncate,
                delete=tuple(delete), notes=tuple(notes))
