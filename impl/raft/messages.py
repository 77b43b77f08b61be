"""The values that cross the Raft core's boundary: messages, entries, hard state and Ready.

These are the whole contract between the sans-I/O core (``core.py``) and anything that drives it
(the asyncio node in ``impl/node.py``, the simulator in ``raftlab/sim``, the transcript tests).
They are frozen, slotted, keyword-built values with a one-line ``describe()`` each, so the same
strings appear in logs, transcripts and counterexamples (etcd's ``util.go`` Describe*).

Node ids are positive ints; ``NONE`` (0) means "no node" (no vote, no known leader).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0


class MsgType(enum.IntEnum):
    """Message kinds, after etcd's MsgType. Values are stable: they are on the wire."""

    APP = 1  # leader -> follower: entries after (log_term, index), and the leader's commit
    APP_RESP = 2  # follower -> leader: index = last matching index, or reject + hint
    VOTE = 3  # candidate -> all: (log_term, index) of its last entry
    VOTE_RESP = 4
    PRE_VOTE = 5  # pre-candidate -> all, at term + 1, changing no one's term (thesis 9.6)
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7  # leader -> follower: commit (capped at match), context = read sequence, index = tick stamp
    HEARTBEAT_RESP = 8  # echoes context and index (the stamp starts a lease, core.py)
    READ_INDEX = 9  # follower -> leader: please confirm a read index for context
    READ_INDEX_RESP = 10  # leader -> follower: index to wait for, for context
    TIMEOUT_NOW = 11  # leader -> transferee: campaign now (leader transfer)
    SNAP = 12  # leader -> follower: one chunk of a snapshot (index/log_term name it, offset/data/done carry it)
    SNAP_RESP = 13  # follower -> leader: offset = bytes of snapshot `index` it has on disk (reject: resend from offset)
    TERM_PROBE = 14  # member repaired empty -> voters: what is your term? (context = this boot's nonce)
    TERM_PROBE_RESP = 15  # -> the prober: term = the answerer's current term, context echoed; changes no one


class EntryType(enum.IntEnum):
    NORMAL = 0  # client command (opaque bytes)
    NOOP = 1  # appended by a new leader to commit entries of earlier terms (Raft §5.4.2, §8)
    CONF_CHANGE = 2  # membership change: data is an encoded confchange.ConfChange


class Role(enum.StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def describe(self) -> str:
        kind = "" if self.type is EntryType.NORMAL else f" {self.type.name}"
        body = f" {self.data[:24]!r}" if self.data else ""
        return f"{self.term}/{self.index}{kind}{body}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What must be durable before any message that depends on it leaves (Raft Figure 2)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def describe(self) -> str:
        return f"Term:{self.term} Vote:{self.vote} Commit:{self.commit}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftState:
    """Volatile status, for logs and ``status``; never persisted."""

    leader: int = NONE
    role: Role = Role.FOLLOWER

    def describe(self) -> str:
        return f"Lead:{self.leader} State:{self.role.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    type: MsgType
    to: int
    from_: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APP_RESP reject: follower's suggested match index (fast back-tracking); HEARTBEAT_RESP: its last index
    hint_term: int = 0  # APP_RESP reject: term of the follower's entry at reject_hint
    context: bytes = b""  # READ_INDEX*: the caller's read id; HEARTBEAT*: the leader's read sequence number
    offset: int = 0  # SNAP: where ``data`` starts in the snapshot file; SNAP_RESP: bytes the follower holds
    data: bytes = b""  # SNAP: one chunk of the snapshot file
    done: bool = False  # SNAP: ``data`` is the last chunk

    def describe(self) -> str:
        parts = [f"{self.from_}->{self.to} {self.type.name} Term:{self.term}"]
        if self.type in (MsgType.APP, MsgType.VOTE, MsgType.PRE_VOTE, MsgType.APP_RESP,
                         MsgType.READ_INDEX_RESP):
            parts.append(f"Log:{self.log_term}/{self.index}")
        if self.type in (MsgType.HEARTBEAT, MsgType.HEARTBEAT_RESP) and self.index:
            parts.append(f"Stamp:{self.index}")
        if self.commit:
            parts.append(f"Commit:{self.commit}")
        if self.reject:
            parts.append(f"Rejected (Hint: {self.hint_term}/{self.reject_hint})")
        if self.context:
            parts.append(f"Ctx:{self.context.hex()}")
        if self.type in (MsgType.SNAP, MsgType.SNAP_RESP):
            parts.append(f"Snap:{self.log_term}/{self.index} Offset:{self.offset}")
            if self.data or self.done:
                parts.append(f"Bytes:{len(self.data)}" + (" Done" if self.done else ""))
        if self.entries:
            parts.append("Entries:[" + ", ".join(e.describe() for e in self.entries) + "]")
        return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """Which state a snapshot holds: everything applied through ``index`` (whose entry has
    ``term``), for the membership in force there (``voters``, ``learners`` and, while a change
    is under way, the ``outgoing`` configuration: confchange.py); ``size`` is its encoded length
    in bytes (0: none)."""

    index: int = 0
    term: int = 0
    voters: tuple[int, ...] = ()
    size: int = 0
    learners: tuple[int, ...] = ()
    outgoing: tuple[int, ...] = ()
    outgoing_learners: tuple[int, ...] = ()
    auto_leave: bool = True

    def describe(self) -> str:
        return f"snapshot {self.term}/{self.index} ({self.size} bytes)"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotChunk:
    """Bytes ``[offset, offset + len(data))`` of the snapshot ``term``/``index`` a follower is
    receiving; the shell writes it to the partial file (``offset`` 0 starts a new one)."""

    index: int
    term: int
    offset: int
    data: bytes
    done: bool

    def describe(self) -> str:
        return f"chunk of {self.term}/{self.index} at {self.offset} ({len(self.data)} bytes{', done' if self.done else ''})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """A confirmed read: safe to serve once the applied index reaches ``index``."""

    index: int
    context: bytes

    def describe(self) -> str:
        return f"ReadState(index={self.index}, ctx={self.context.hex()})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DroppedRead:
    """A ReadIndex request of this node that will never be confirmed, and why (retry it)."""

    context: bytes
    reason: str

    def describe(self) -> str:
        return f"{self.context.hex()} ({self.reason})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work for the shell, consumed in this order (the durability contract):

    1. send ``send_now`` (these depend on nothing unpersisted, e.g. a leader's MsgApp);
    2. append ``entries`` (truncating any conflicting suffix first) and write ``hard_state`` if
       set; fsync if ``must_sync``;
    3. only then send ``send_after_persist`` (append, vote and pre-vote responses);
    4. apply ``committed`` in order; serve ``read_states`` once applied >= their index;
    5. call ``core.advance(ready)``.

    A follower receiving a snapshot gets ``snapshot_chunks`` to write (with the entries, step 2);
    when ``install`` is set the last chunk is among them: the shell verifies the assembled file,
    makes it the node's snapshot, resets the log to start after it, restores the state machine
    from it (after step 4's entries, which are older) and tells the core with ``advance``.
    """

    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None
    must_sync: bool = False
    send_now: tuple[Message, ...] = ()
    send_after_persist: tuple[Message, ...] = ()
    committed: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    soft_state: SoftState | None = None
    dropped_reads: tuple[DroppedRead, ...] = field(default=())  # each of our reads answered at most once
    snapshot_chunks: tuple[SnapshotChunk, ...] = ()
    install: SnapshotMeta | None = None

    def describe(self) -> str:
        lines = ["Ready MustSync=" + str(self.must_sync).lower() + ":"]
        if self.soft_state is not None:
            lines.append(self.soft_state.describe())
        if self.hard_state is not None:
            lines.append("HardState " + self.hard_state.describe())
        if self.entries:
            lines.append("Entries:")
            lines.extend(e.describe() for e in self.entries)
        if self.committed:
            lines.append("CommittedEntries:")
            lines.extend(e.describe() for e in self.committed)
        if self.send_now:
            lines.append("Messages:")
            lines.extend(m.describe() for m in self.send_now)
        if self.send_after_persist:
            lines.append("OnSync:")
            lines.extend(m.describe() for m in self.send_after_persist)
        if self.read_states:
            lines.append("ReadStates:")
            lines.extend(r.describe() for r in self.read_states)
        if self.dropped_reads:
            lines.append("DroppedReads: " + ", ".join(d.describe() for d in self.dropped_reads))
        if self.snapshot_chunks:
            lines.append("SnapshotChunks: " + ", ".join(c.describe() for c in self.snapshot_chunks))
        if self.install is not None:
            lines.append("Install " + self.install.describe())
        return "\n".join(lines)
