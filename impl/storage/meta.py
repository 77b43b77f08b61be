"""The two small files of a data directory, each replaced atomically: ``meta`` (the HardState:
term, vote and commit) and ``manifest`` (what the directory must hold).

``meta``. Raft needs ``term`` and ``vote`` durable before the node answers a vote or acts in a new term
(Raft Figure 2, "persistent state"); ``commit`` is kept alongside for a faster restart but is
not required for safety (a restarted node re-learns it from the leader). The file is replaced,
never edited: write ``meta.tmp``, fsync it, rename it over ``meta``, fsync the directory. A
crash at any point leaves either the old or the new file, never a mix.

Format (33 bytes): magic ``RLMETA1\\n`` (8), then big-endian u64 term, u64 vote, u64 commit,
then the CRC32 of the preceding 32 bytes (u32) and a trailing ``\\n``. A file with a bad magic,
size or CRC is refused with ``StorageError`` naming the path: it cannot be a torn write.

``manifest``. Without it a lost file is indistinguishable from a node that never wrote it: a deleted last
segment looks like a shorter log, a deleted ``meta`` like a node that never voted. So the
directory keeps ``DIR/manifest`` listing what must exist; ``recovery.py`` refuses a directory
that lacks any of it.

Fields: ``node`` (the member id the directory belongs to; 0 until a node claims it),
``first_index`` (the first log index the segments hold: 1, or the index after a snapshot once
the log is compacted), ``segments`` (the first index of every segment, ascending), ``rejoin``
(the directory was rebuilt empty by ``raftlab node repair --empty``: the node grants no vote
until it has caught up with a leader, so the vote it forgot cannot be given twice).

It changes rarely, and always by whole-file replacement (write ``manifest.tmp``, fsync, rename,
fsync the directory: ``replace_file``): when a segment is created (after the segment file
and its directory entry are durable), before segments are deleted by a truncation or a
compaction, and when a repaired node has caught up. Format: the line ``RLMANIFEST1``, one line
of JSON, one line with the CRC32 of the JSON line in hex. A file failing any of that is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from raftlab.impl.raft.messages import HardState

MAGIC = b"RLMETA1\n"
BODY = struct.Struct(">QQQ")
SIZE = len(MAGIC) + BODY.size + 4 + 1


class StorageError(Exception):
    """The data directory is unusable as it stands (corrupt file, wrong layout); names the file."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    """fsync a file and its directory (a rename done without fsync becomes durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def encode_meta(hs: HardState) -> bytes:
    head = MAGIC + BODY.pack(hs.term, hs.vote, hs.commit)
    return head + struct.pack(">I", zlib.crc32(head)) + b"\n"


def load_meta(path: Path) -> HardState:
    """The stored hard state; an empty HardState if the file does not exist yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return HardState()
    return load_meta_bytes(raw, path)


def load_meta_bytes(raw: bytes, path: Path | str) -> HardState:
    """Decode a meta file's bytes; StorageError naming ``path`` if they are not a valid one."""
    if len(raw) != SIZE or not raw.startswith(MAGIC):
        raise StorageError(f"{path}: not a raftlab meta file ({len(raw)} bytes, expected {SIZE} starting {MAGIC!r})")
    head = raw[: len(MAGIC) + BODY.size]
    (crc,) = struct.unpack_from(">I", raw, len(head))
    if zlib.crc32(head) != crc:
        raise StorageError(f"{path}: checksum mismatch (the file is corrupt)")
    term, vote, commit = BODY.unpack_from(raw, len(MAGIC))
    return HardState(term=term, vote=vote, commit=commit)


def save_meta(path: Path, hs: HardState, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``hs`` (write, fsync, rename, fsync dir when durable)."""
    replace_file(path, encode_meta(hs), durable=durable)


def replace_file(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``data``: write ``path.tmp``, fsync, rename, fsync the
    directory (the fsyncs only when durable). An OSError (disk full) names the file and step."""
    tmp = path.with_name(path.name + ".tmp")
    step = "open"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            step = "write"
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                step = "fsync"
                os.fsync(fd)
        finally:
            os.close(fd)
        step = "rename"
        os.replace(tmp, path)
        if durable:
            step = "fsync of the directory"
            fsync_dir(path.parent)
    except OSError as e:
        raise OSError(e.errno, f"{step} of {tmp if step != 'fsync of the directory' else path.parent}: "
                               f"{e.strerror}") from e


# -- the manifest ------------------------------------------------------------------------------

MANIFEST_MAGIC = "RLMANIFEST1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    node: int = 0
    first_index: int = 1
    segments: tuple[int, ...] = ()
    rejoin: bool = False

    def with_segments(self, segments: tuple[int, ...]) -> Manifest:
        return dataclasses.replace(self, segments=segments)


def encode_manifest(m: Manifest) -> bytes:
    body = json.dumps({"node": m.node, "first_index": m.first_index, "segments": list(m.segments),
                       "rejoin": m.rejoin}, separators=(",", ":"))
    return f"{MANIFEST_MAGIC}\n{body}\n{zlib.crc32(body.encode()):08x}\n".encode()


def decode_manifest(raw: bytes, path: Path | str) -> Manifest:
    lines = raw.decode("utf-8", "replace").split("\n")
    if len(lines) != 4 or lines[0] != MANIFEST_MAGIC or lines[3] != "":
        raise StorageError(f"{path}: not a raftlab manifest (expected {MANIFEST_MAGIC}, a JSON line and a CRC line)")
    if f"{zlib.crc32(lines[1].encode()):08x}" != lines[2]:
        raise StorageError(f"{path}: checksum mismatch (the file is corrupt)")
    try:
        obj = json.loads(lines[1])
        m = Manifest(node=int(obj["node"]), first_index=int(obj["first_index"]),
                     segments=tuple(int(s) for s in obj["segments"]), rejoin=bool(obj["rejoin"]))
    except (ValueError, KeyError, TypeError) as e:
        raise StorageError(f"{path}: malformed manifest ({e})") from None
    if m.first_index < 1 or list(m.segments) != sorted(set(m.segments)):
        raise StorageError(f"{path}: malformed manifest (first index {m.first_index}, segments {m.segments})")
    return m


def load_manifest(path: Path) -> Manifest | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_manifest(raw, path)


def save_manifest(path: Path, m: Manifest) -> None:
    """Atomically replace the manifest (always durable: it changes rarely and guards everything)."""
    replace_file(path, encode_manifest(m), durable=True)
