"""The HardState file: term, vote and commit, replaced atomically.

Raft needs ``term`` and ``vote`` durable before the node answers a vote or acts in a new term
(Raft Figure 2, "persistent state"); ``commit`` is kept alongside for a faster restart but is
not required for safety (a restarted node re-learns it from the leader). The file is replaced,
never edited: write ``meta.tmp``, fsync it, rename it over ``meta``, fsync the directory. A
crash at any point leaves either the old or the new file, never a mix.

Format (33 bytes): magic ``RLMETA1\\n`` (8), then big-endian u64 term, u64 vote, u64 commit,
then the CRC32 of the preceding 32 bytes (u32) and a trailing ``\\n``. A file with a bad magic,
size or CRC is refused with ``StorageError`` naming the path: it cannot be a torn write.
"""

from __future__ import annotations

import os
import struct
import zlib
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
    return decode_meta(raw, str(path))


def decode_meta(raw: bytes, name: str = "meta") -> HardState:
    """The hard state in a meta file's bytes (pure: the simulator restarts nodes through it too);
    StorageError naming ``name`` for a bad magic, size or CRC."""
    if len(raw) != SIZE or not raw.startswith(MAGIC):
        raise StorageError(f"{name}: not a raftlab meta file ({len(raw)} bytes, expected {SIZE} starting {MAGIC!r})")
    head = raw[: len(MAGIC) + BODY.size]
    (crc,) = struct.unpack_from(">I", raw, len(head))
    if zlib.crc32(head) != crc:
        raise StorageError(f"{name}: checksum mismatch (the file is corrupt)")
    term, vote, commit = BODY.unpack_from(raw, len(MAGIC))
    return HardState(term=term, vote=vote, commit=commit)


def save_meta(path: Path, hs: HardState, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``hs`` (write, fsync, rename, fsync dir when durable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, encode_meta(hs))
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)
