"""The simulator's hostile modes: forged peer messages (``SimConfig.adversary``) and damaged disks
(``SimConfig.storage_faults``), each judged by the node's own code.

Forged messages. Each forgery is invalid *whatever* the target does before it steps it (its
inbox may hold messages that change its progress or term first): indexes are beyond anything
its log holds, stamps far in its future, terms out of range or far ahead, the sender is not the
leader the target follows in that term (a term never changes its leader), entries skip indexes.
So every forgery must be refused or ignored as stale, and the simulator's invariants (election
safety, log matching, leader completeness, state-machine safety) and its linearizability check
must hold with them in the mix. What validation cannot judge locally (a plausible message under
a real member's id) is the job of authentication, and is not forged here.

Damaged disks. On a crash the node keeps what it synced (``MemoryStorage.crash``, the lost
unsynced tail). With ``SimConfig.storage_faults`` the synced state is then written out as the
files a real data directory would hold (``meta``, ``manifest``, segments of ``SEGMENT_ENTRIES``
entries each, byte for byte the WAL's format) and, now and then, damaged: a file lost (``meta``,
``manifest`` or a segment) or one bit flipped. On restart those bytes go through
``scan_segment`` and ``plan_recovery``, the code the node runs: a plan boots the node from what
it kept (a torn tail cut); a refusal is followed by the documented repair, ``raftlab node
repair --empty``: the node boots empty with ``rejoin`` (no vote, no campaign until a leader caught
it up). The invariants and the linearizability check then judge whether anything committed was
lost. Only one member is damaged at a time (repair is one member at a time).

With snapshots the image starts at the storage's first index (the manifest says so) and keeps
its snapshot (not damaged here: tests/impl/test_snapshot_storage.py damages real snapshot files);
a recovered log is put back together with it by ``compaction.plan_snapshot``, as WalStorage does.

Not drawn: a flip in the header of the very last record. It can make that record look cut short,
which no check can tell from a torn write; recovery cuts it, which loses data only if that entry
had been acknowledged (docs/node.md, recovery, states this limit).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftlab.impl.raft import NONE, Entry, Message, MsgType, Role
from raftlab.impl.raft.validate import MAX_VALUE
from raftlab.impl.storage.compaction import plan_snapshot
from raftlab.impl.storage.memory import MemoryStorage
from raftlab.impl.storage.meta import (
    Manifest,
    StorageError,
    decode_manifest,
    encode_manifest,
    encode_meta,
    load_meta_bytes,
)
from raftlab.impl.storage.recovery import (
    MAGIC,
    RECORD,
    encode_record,
    plan_recovery,
    scan_segment,
    segment_name,
)

if TYPE_CHECKING:
    from raftlab.impl.raft import RaftCore

KINDS = ("range", "not-leader", "gap", "never-sent", "future-stamp", "timeout-now")
FAR = 1 << 30


def forge(rng: random.Random, core: RaftCore, ids: tuple[int, ...]) -> tuple[str, Message] | None:
    """A forged message for ``core`` (kind, message), or None when its state offers no such attack."""
    kind = rng.choice(KINDS)
    others = [i for i in ids if i != core.id]
    frm = rng.choice(others)
    last = core.log.last_index()
    if kind == "range":
        mtype = rng.choice(list(MsgType))
        term = rng.choice([(1 << 64) - 1, MAX_VALUE + 1 + rng.randrange(FAR)])
        return kind, Message(type=mtype, to=core.id, from_=frm, term=term, index=rng.randrange(last + 1))
    if kind == "not-leader":
        if core.role is not Role.FOLLOWER or core.lead == NONE:
            return None
        rogues = [i for i in others if i != core.lead]
        if not rogues:
            return None
        entries = (Entry(term=core.term, index=last + 1, data=b"forged"),)
        mtype = rng.choice([MsgType.APP, MsgType.HEARTBEAT])
        return kind, Message(type=mtype, to=core.id, from_=rng.choice(rogues), term=core.term, index=last,
                             log_term=core.log.last_term(), entries=entries if mtype is MsgType.APP else (),
                             commit=last + 1)
    if kind == "gap":
        skip = 2 + rng.randrange(5)
        entries = (Entry(term=core.term, index=last + skip, data=b"forged"),)
        return kind, Message(type=MsgType.APP, to=core.id, from_=core.lead or frm, term=core.term, index=last,
                             log_term=core.log.last_term(), entries=entries, commit=last + skip)
    if kind == "never-sent":
        if core.role is not Role.LEADER:
            return None
        return kind, Message(type=MsgType.APP_RESP, to=core.id, from_=frm, term=core.term,
                             index=last + FAR + rng.randrange(FAR))
    if kind == "future-stamp":
        if core.role is not Role.LEADER:
            return None
        return kind, Message(type=MsgType.HEARTBEAT_RESP, to=core.id, from_=frm, term=core.term,
                             index=core.clock + FAR, reject_hint=0)
    term = core.term + FAR if rng.random() < 0.5 else core.term
    sender = next((i for i in others if i != core.lead), None)
    if sender is None:
        return None
    return kind, Message(type=MsgType.TIMEOUT_NOW, to=core.id, from_=sender, term=term)


# -- damaged disks ----------------------------------------------------------------------------

SEGMENT_ENTRIES = 8
FAULTS = ("lose-meta", "lose-manifest", "lose-segment", "flip-bit")


@dataclass(slots=True)
class DiskImage:
    """A data directory as bytes: name -> content (``wal/<first>.seg`` for segments)."""

    files: dict[str, bytes]
    snapshot: bytes = b""  # the encoded snapshot (snapshot_format.py), kept as it was

    @classmethod
    def of(cls, storage: MemoryStorage) -> DiskImage:
        start = storage.first_index()
        entries = storage.entries(start, storage.last_index() + 1)
        firsts = list(range(start, start + len(entries), SEGMENT_ENTRIES)) or [start]
        files = {"meta": encode_meta(storage.initial_state()),
                 "manifest": encode_manifest(Manifest(node=0, first_index=start, segments=tuple(firsts)))}
        for first in firsts:
            chunk = entries[first - start:first - start + SEGMENT_ENTRIES]
            files[f"wal/{segment_name(first)}"] = MAGIC + b"".join(encode_record(e) for e in chunk)
        return cls(files, storage.snapshot)

    def damage(self, rng: random.Random) -> str:
        """Apply one fault; returns what was done."""
        fault = rng.choice(FAULTS)
        segments = sorted(n for n in self.files if n.startswith("wal/"))
        if fault == "lose-meta":
            del self.files["meta"]
            return "lost meta"
        if fault == "lose-manifest":
            del self.files["manifest"]
            return "lost manifest"
        if fault == "lose-segment":
            name = rng.choice(segments)
            del self.files[name]
            return f"lost {name}"
        name = rng.choice([*segments, "meta", "manifest"])
        raw = bytearray(self.files[name])
        limit = len(raw)
        if name == segments[-1]:
            limit = _last_record_offset(bytes(raw))  # see the module docstring
        if limit == 0:
            return "nothing to flip"
        pos = rng.randrange(limit)
        raw[pos] ^= 1 << rng.randrange(8)
        self.files[name] = bytes(raw)
        return f"flipped a bit of {name} at byte {pos}"

    def recover(self) -> MemoryStorage | StorageError:
        """What the node's recovery makes of these bytes: its storage, or its refusal."""
        try:
            manifest = decode_manifest(self.files["manifest"], "manifest") if "manifest" in self.files else None
            meta = load_meta_bytes(self.files["meta"], "meta") if "meta" in self.files else None
            scans = [scan_segment(n, raw) for n, raw in sorted(self.files.items()) if n.startswith("wal/")]
            plan = plan_recovery(manifest=manifest, manifest_path="manifest", meta=meta, meta_path="meta",
                                 wal_dir="wal", scans=scans, durable=True)
        except StorageError as e:
            return e
        entries = [e for s in plan.segments for e in s.entries]
        snap = MemoryStorage(snapshot=self.snapshot).snapshot_meta()
        first = plan.manifest.first_index
        last = first - 1 + len(entries)
        at_snap = next((e.term for e in entries if e.index == snap.index), 0)
        decision = plan_snapshot(snap.index, snap.term, first, last, at_snap)
        if decision == "refuse":
            return StorageError(f"manifest: the log starts at {first}, the snapshot holds only through {snap.index}")
        if decision == "reset":
            return MemoryStorage((), plan.hard_state, base=(snap.index, snap.term), snapshot=self.snapshot)
        if decision == "drop-first":
            return MemoryStorage(entries[1:], plan.hard_state, base=(first, entries[0].term), snapshot=self.snapshot)
        base_term = snap.term if decision == "base-is-snapshot" else 0
        return MemoryStorage(entries, plan.hard_state, base=(first - 1, base_term), snapshot=self.snapshot)


def _last_record_offset(raw: bytes) -> int:
    """Offset of the header of the last record in a well-formed segment (len(MAGIC) if empty)."""
    off = last = len(MAGIC)
    while off + RECORD.size <= len(raw):
        last = off
        off += RECORD.size + RECORD.unpack_from(raw, off)[0]
    return last
