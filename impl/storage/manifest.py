"""The manifest: the durable record of what a data directory must hold.

Without it a lost file is indistinguishable from a node that never wrote it: a deleted last
segment looks like a shorter log, a deleted ``meta`` like a node that never voted. So the
directory keeps ``DIR/manifest`` listing what must exist; ``recovery.py`` refuses a directory
that lacks any of it.

Fields: ``node`` (the member id the directory belongs to; 0 until a node claims it),
``first_index`` (the first log index the segments hold: 1, or the index after a snapshot once
the log is compacted), ``segments`` (the first index of every segment, ascending), ``rejoin``
(the directory was rebuilt empty by ``raftlab node repair --empty``: the node grants no vote
until it has caught up with a leader, so the vote it forgot cannot be given twice).

It changes rarely, and always by whole-file replacement (write ``manifest.tmp``, fsync, rename,
fsync the directory: ``meta.replace_file``): when a segment is created (after the segment file
and its directory entry are durable), before segments are deleted by a truncation or a
compaction, and when a repaired node has caught up. Format: the line ``RLMANIFEST1``, one line
of JSON, one line with the CRC32 of the JSON line in hex. A file failing any of that is refused.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from raftlab.impl.storage.meta import StorageError, replace_file

MAGIC = "RLMANIFEST1"


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
    return f"{MAGIC}\n{body}\n{zlib.crc32(body.encode()):08x}\n".encode()


def decode_manifest(raw: bytes, path: Path | str) -> Manifest:
    lines = raw.decode("utf-8", "replace").split("\n")
    if len(lines) != 4 or lines[0] != MAGIC or lines[3] != "":
        raise StorageError(f"{path}: not a raftlab manifest (expected {MAGIC}, a JSON line and a CRC line)")
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
