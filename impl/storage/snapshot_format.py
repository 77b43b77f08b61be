"""The snapshot file format, pure: an image of the DtKV tree at one applied index <-> bytes.

Pure (no file, clock or socket) so the node machine, the in-memory storage of the simulator and
the file store (snapshot.py) share one encoder and one verifier. Format (big-endian)::

    magic  "RLSNAP1\\n"                                  8 bytes
    header u64 index | u64 term | u64 body length | u32 body CRC32
    u32    CRC32 of magic + header
    body   msgpack {"voters": [ids], "values": {key: bytes}, "dirs": [keys], "chain": bytes, "skipped": int,
           "leases": [[key, kind, owner, ttl_ms, index, token, [[owner, ttl_ms], ...]], ...],
                    "learners": [ids], "outgoing": [ids], "outgoing_learners": [ids], "auto_leave": bool}

(the membership keys are written only for a configuration with learners or a change under way;
without them it is the simple configuration of ``voters``).

``leases`` (temp nodes/dirs and locks, impl/dtkv/leases.py) is written only when there are
some (and is absent in snapshots written before it existed); a body without it has no leases.

``decode`` refuses anything short, long, or failing either CRC, or a body that is not of this
shape, with ``SnapshotError`` naming the file (its ``name`` argument): it cannot be mistaken
for a snapshot, so it is never silently used.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from raftlab.impl.dtkv.leases import Lease
from raftlab.impl.raft.messages import SnapshotMeta
from raftlab.impl.storage.meta import StorageError

MAGIC = b"RLSNAP1\n"
HEADER = struct.Struct(">QQQI")  # index, term, body length, body crc
PREFIX = len(MAGIC) + HEADER.size + 4


class SnapshotError(StorageError):
    """A snapshot file that is not a whole, valid snapshot; names the file and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotImage:
    """The replicated state at ``meta.index``: tree values and directories, plus the replica's
    running hash of applied entries (``chain``) and its count of command-less entries, so a
    node restored from it reports the same digest as one that replayed the log."""

    meta: SnapshotMeta
    values: Mapping[str, bytes] = field(default_factory=dict)
    dirs: tuple[str, ...] = ("",)
    chain: bytes = b""
    skipped: int = 0
    leases: tuple[list[Any], ...] = ()


def snapshot_name(index: int) -> str:
    return f"snapshot-{index:020d}.snap"


def encode(image: SnapshotImage) -> bytes:
    m = image.meta
    obj = {"voters": list(m.voters), "values": dict(image.values), "dirs": list(image.dirs),
           "chain": image.chain, "skipped": image.skipped}
    if image.leases:  # like the membership keys: a tree without leases is written as before
        obj["leases"] = list(image.leases)
    if m.learners or m.outgoing or not m.auto_leave:  # a simple configuration is written as before
        obj |= {"learners": list(m.learners), "outgoing": list(m.outgoing),
                "outgoing_learners": list(m.outgoing_learners), "auto_leave": m.auto_leave}
    body = msgpack.packb(obj, use_bin_type=True)
    head = MAGIC + HEADER.pack(m.index, m.term, len(body), zlib.crc32(body))
    return head + struct.pack(">I", zlib.crc32(head)) + body


def read_header(raw: bytes, name: str) -> tuple[int, int, int, int]:
    """(index, term, body length, body crc) of a snapshot's first PREFIX bytes."""
    if len(raw) < PREFIX or not raw.startswith(MAGIC):
        raise SnapshotError(f"{name}: not a raftlab snapshot (bad magic or cut short at {len(raw)} bytes)")
    (crc,) = struct.unpack_from(">I", raw, len(MAGIC) + HEADER.size)
    if zlib.crc32(raw[: len(MAGIC) + HEADER.size]) != crc:
        raise SnapshotError(f"{name}: header checksum mismatch (the file is corrupt)")
    index, term, length, body_crc = HEADER.unpack_from(raw, len(MAGIC))
    return index, term, length, body_crc


def decode(raw: bytes, name: str) -> SnapshotImage:
    index, term, length, body_crc = read_header(raw, name)
    body = raw[PREFIX:]
    if len(body) != length:
        raise SnapshotError(f"{name}: body is {len(body)} bytes, the header says {length} (cut short or extended)")
    if zlib.crc32(body) != body_crc:
        raise SnapshotError(f"{name}: body checksum mismatch (the file is corrupt)")
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
        voters = tuple(int(v) for v in obj["voters"])
        values = obj["values"]
        dirs = tuple(obj["dirs"])
        if not all(type(k) is str and type(v) is bytes for k, v in values.items()):
            raise TypeError("values must map str to bytes")
        for lease in obj.get("leases", ()):
            Lease.from_wire(lease)  # raises on a malformed one
        ids = {k: tuple(int(v) for v in obj.get(k, ())) for k in ("learners", "outgoing", "outgoing_learners")}
        meta = SnapshotMeta(index=index, term=term, voters=voters, size=len(raw), **ids,
                            auto_leave=bool(obj.get("auto_leave", True)))
        image = SnapshotImage(meta=meta,
                              values=values, dirs=dirs, chain=bytes(obj["chain"]), skipped=int(obj["skipped"]),
                              leases=tuple(obj.get("leases", ())))
    except Exception as e:  # a body that passed its CRC but is not ours: written by something else
        raise SnapshotError(f"{name}: body is not a snapshot of this format ({e})") from None
    return image
