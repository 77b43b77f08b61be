"""NodeMachine: one Raft member and its DtKV tree as a sans-I/O state machine (h11's Connection,
etcd's RawNode around raft). Every decision a node makes between the sockets and the Raft core
is here; the asyncio node (``impl/node.py``), the simulator (``raftlab/sim/cluster.py``) and the
transcript harness (``raftlab/sim/interaction.py``) drive this very class.

Inputs (any order, any time): ``submit(request, handle)`` a client request with an opaque reply
handle; ``receive(message)`` a peer message; ``tick(now)`` the monotonic time in seconds;
``persisted(persist)`` "the writes of this Persist are on disk". Outputs: ``ready()`` returns the
next ``Persist`` (entries, hard state, must_sync) or None; ``take_messages()`` what to send now,
``take_replies()`` the answers for clients, ``next_tick_at()`` when time next matters.

Theory of operation.

* Inputs are queued and applied by ``process_inputs`` (``ready`` calls it): the core's clock
  moves to the elapsed time first, then the peer messages are stepped, then the timeouts of the
  elapsed ticks run, then proposals, then ONE ReadIndex for every read that arrived since the
  last one (read batching). Timeouts run after the messages so a node that stalled neither
  times out a leader whose heartbeats already wait in its inbox nor steps down as a leader whose
  followers' answers do; the clock moves before them so a read (forwarded ones included) is
  never judged by a lease that expired during the stall. While a Persist is out (between
  ``ready`` and ``persisted``) nothing reaches the core: everything that arrives during an fsync
  lands in the next Ready, so one fsync covers a batch of proposals (group commit).
* Time: the core's clock is the number of whole ticks since the machine was built, computed
  from ``now``; a stall of N ticks reaches the core as one ``tick(N)``, before any read queued
  with it, so the lease (``read_mode="lease"``) is judged by elapsed time, never by how many
  timer callbacks happened to run.
* Writes: a proposal's reply waits for its entry to be applied; a proposal whose slot was
  committed with another term is answered ``dropped`` (definitely not applied).
* Reads: a ReadIndex context is ``(node id, incarnation, sequence)``: unique across nodes,
  restarts (the shell passes a new incarnation per start) and terms. The core confirms it (or
  drops it with a reason, exactly once; a forwarded read times out after
  ``RaftCore.read_deadline_ticks``); a confirmed read is served once the tree has applied its
  index. A leader change alone drops nothing: only the core knows which reads cannot be served.
* ``status()`` is one dict built in one place, so fields are easy to add; its ``digest``
  (applied index, a running hash of the applied entries, ``Tree.digest()``) lets the harness
  compare replicas at the end of a run (``raftlab/replicas.py``).

* Snapshots: with ``snapshot_entries`` N, once N entries were applied since the last snapshot
  the machine freezes an image of the tree (``Tree.image``: a shallow copy, cheap, in the loop)
  and hands it out once through ``take_snapshot()``; the shell writes it off the loop and calls
  ``snapshot_saved(meta)`` (then compacts the log). ``request_snapshot`` (the ``snapshot`` admin
  request, or the shell's WAL-size trigger) takes one at the next chance. A follower's
  ``Persist`` may carry snapshot chunks to write and an install: the shell passes the verified
  image to ``persisted(persist, installed)`` (None: it did not verify) and the tree is restored
  from it. A machine built with ``snapshot=`` starts from that image (a restart).

* Leases (temp nodes, locks; ``dtkv/leases.py``): while leader, the machine runs ``LeaseTimers``
  on its own monotonic clock: every lease is armed when its entry is applied (a new leader arms
  all of them, each with its full TTL, when it takes over), and a due one is proposed as
  ``Expire(key, index)``, with no client waiting. Followers run no timer; ``expire`` from a
  client is refused.
* Watches (``impl/dtkv/watches.py``): every applied entry's changes become events; a ``watch`` poll
  is answered by the leader (others answer not-leader, so a watcher follows failovers) once it
  has events at or after its index, or empty after a short wait; a node that stops leading
  answers its parked polls not-leader.

Deliberately broken switches let the checkers be shown to catch them: ``unsafe_local_reads``
answers reads from the local tree at once, ``unsafe_ack_before_fsync`` sends acknowledgements
and votes before the writes they promise are persisted, ``unsafe_expiry`` keeps each lease's
first deadline through refreshes and expires it with the lease's current index (so a refreshed
node or lock is taken away early), ``unsafe_watch_skip`` starts each watch answer one index late.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from raftlab.impl.dtkv.commands import Command, ErrorKind, Expire, Result, Watch
from raftlab.impl.dtkv.leases import LeaseTimers
from raftlab.impl.dtkv.tree import Tree
from raftlab.impl.dtkv.watches import Watches
from raftlab.impl.net.codec import Request, WireError, decode_command, encode_command, result_body
from raftlab.impl.raft import NotLeader, RaftConfig, RaftCore
from raftlab.impl.raft.confchange import ConfChange
from raftlab.impl.raft.messages import (
    Entry,
    EntryType,
    HardState,
    Message,
    Ready,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)
from raftlab.impl.raft.validate import Refused
from raftlab.impl.storage import Storage
from raftlab.impl.storage.snapshot_format import SnapshotImage

if TYPE_CHECKING:
    import random  # injected; never the global one

H = TypeVar("H")  # the shell's reply handle (a connection, a simulated client): opaque here
_CONTEXT = struct.Struct(">IQQ")  # node id, incarnation, sequence


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineConfig:
    raft: RaftConfig
    tick_seconds: float = 0.05
    incarnation: int = 0  # differs on every start of this node (read contexts never repeat)
    unsafe_local_reads: bool = False
    unsafe_ack_before_fsync: bool = False
    unsafe_expiry: bool = False
    unsafe_watch_skip: bool = False
    snapshot_entries: int = 0  # take a snapshot every N applied entries (0: only when asked)
    group: int = 0  # the Raft group this machine is (impl/groups.py); only reported, never decided on

    def __post_init__(self) -> None:
        if self.tick_seconds <= 0:
            raise ValueError("tick_seconds must be > 0")
        if self.snapshot_entries < 0:
            raise ValueError("snapshot_entries must be >= 0")
        if not 0 <= self.incarnation < 1 << 64:
            raise ValueError("incarnation must fit in 64 bits")


class Reply(NamedTuple, Generic[H]):
    """One answer for a client (a NamedTuple: immutable, and cheap enough for one per request)."""

    handle: H
    request_id: int
    error: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """What must be durable before ``persisted(self)``: append ``entries`` (truncating any
    conflicting suffix), write ``hard_state`` if set, write ``snapshot_chunks`` to the partial
    snapshot, fsync if ``must_sync``; if ``install`` is set, verify the assembled snapshot, make it
    the node's and start the log afresh after it, and pass its image to ``persisted``. ``ready``
    is the core's Ready it came from, for observers (invariants, transcripts)."""

    entries: tuple[Entry, ...]
    hard_state: HardState | None
    must_sync: bool
    ready: Ready
    snapshot_chunks: tuple[SnapshotChunk, ...] = ()
    install: SnapshotMeta | None = None


@dataclass(slots=True)
class _Inbox(Generic[H]):
    messages: list[Message] = field(default_factory=list)
    proposals: list[tuple[Command, H, int]] = field(default_factory=list)
    reads: list[tuple[Command, H, int]] = field(default_factory=list)
    admin: list[tuple[dict[str, Any], H, int]] = field(default_factory=list)


class NodeMachine(Generic[H]):
    def __init__(self, config: MachineConfig, storage: Storage, *, now: float, rng: random.Random,
                 logger: Callable[[str], None] | None = None, core_type: type[RaftCore] = RaftCore,
                 snapshot: SnapshotImage | None = None) -> None:
        self.config = config
        self.id = config.raft.id
        self.log = logger or (lambda _line: None)
        self.tree = Tree()
        self.skipped = 0  # committed entries that carry no command (never proposed by a machine)
        # a running hash of every applied entry (term, index, data): equal on two replicas at the
        # same applied index iff they applied the same log (the harness compares it at the end)
        self.chain = b""
        self.snapshot_index = 0  # the newest snapshot this node holds
        self._applied_term = 0
        self._snapshot_out: SnapshotImage | None = None  # frozen, not yet taken by the shell
        self._snapshot_writing = False  # taken, not yet saved
        self._snapshot_asked = False
        self._snapshot_waiters: list[tuple[H, int]] = []
        self.timers = LeaseTimers()
        self._timing = False  # the timers run (this node leads)
        self.watches: Watches[H] = Watches(unsafe_skip=config.unsafe_watch_skip)
        raft = config.raft
        if snapshot is not None:
            self._restore(snapshot)
            raft = replace(raft, applied=snapshot.meta.index)
        self.core = core_type(raft, storage, rng=rng, logger=self.log)  # tests pass broken cores
        # the term and vote last made durable: each change is logged once it is (the harness's
        # election check, raftlab/elections.py, holds every restart to the last such line)
        self._durable_vote = (self.core.term, self.core.vote)
        self._epoch = now
        self._now = now
        self._ticks = 0
        self._inbox: _Inbox[H] = _Inbox()
        self._persisting: Persist | None = None
        self._messages: list[Message] = []
        self._replies: list[Reply[H]] = []
        # index -> [(term, command, handle, request id)] of proposals waiting for that slot
        self._waiting: dict[int, list[tuple[int, Command, H, int]]] = {}
        self._conf_waiting: dict[int, tuple[int, H, int]] = {}  # index -> (term, handle, request id) of admin changes
        self._read_seq = 0
        self.read_context = b""  # the last ReadIndex context asked of the core (for observers: sim coverage)
        self._read_batches: dict[bytes, list[tuple[Command, H, int]]] = {}
        self._confirmed: list[tuple[int, int, list[tuple[Command, H, int]]]] = []  # (index, seq, batch)

    # -- inputs ------------------------------------------------------------------------------

    def submit(self, request: Request, handle: H) -> None:
        if request.error is not None:
            self._reply(handle, request.id, request.error.kind, {"message": request.error.message})
        elif request.op == "hello":
            self._reply(handle, request.id, None, {"id": self.id, "leader": self.core.lead})
        elif request.op == "status":
            self._reply(handle, request.id, None, {"status": self.status()})
        elif request.op == "snapshot":
            if self.tree.applied == 0:
                self._reply(handle, request.id, ErrorKind.VALIDATION, {"message": "nothing applied yet to snapshot"})
            else:
                self._snapshot_waiters.append((handle, request.id))
                self.request_snapshot()
        elif request.op == "admin":
            self._inbox.admin.append((request.args or {}, handle, request.id))
        elif request.command is None:
            self._reply(handle, request.id, ErrorKind.VALIDATION, {"message": f"unknown operation {request.op!r}"})
        elif isinstance(request.command, Expire):
            self._reply(handle, request.id, ErrorKind.VALIDATION,
                        {"message": "expire is proposed by the leader's lease timers only"})
        elif isinstance(request.command, Watch):
            self._watch(request.command, handle, request.id)
        elif request.command.write:
            self._inbox.proposals.append((request.command, handle, request.id))
        elif self.config.unsafe_local_reads:
            self._answer(self.tree.read(request.command), handle, request.id)
        else:
            self._inbox.reads.append((request.command, handle, request.id))

    def receive(self, msg: Message) -> None:
        if msg.to != self.id:
            self.core.refuse(Refused("foreign", f"a message for node {msg.to}"), msg)
            return
        self._inbox.messages.append(msg)

    def tick(self, now: float) -> None:
        """The monotonic time (seconds, the same clock as ``now`` at construction)."""
        if now > self._now:
            self._now = now

    def next_tick_at(self) -> float:
        return self._epoch + (self._ticks + 1) * self.config.tick_seconds

    def has_output(self) -> bool:
        """Messages or replies wait in ``take_messages``/``take_replies``."""
        return bool(self._messages or self._replies)

    def due_ticks(self) -> int:
        """Whole ticks the time given to ``tick`` is worth that the core has not seen yet."""
        return max(0, int((self._now - self._epoch) / self.config.tick_seconds) - self._ticks)

    def process_inputs(self) -> None:
        """Apply queued inputs to the core (a no-op while a Persist is out)."""
        if self._persisting is not None:
            return
        core = self.core
        inbox, self._inbox = self._inbox, _Inbox()
        due = self.due_ticks()
        self._ticks += due
        core.advance_clock(due)  # messages that waited through a stall are judged at the real time
        for msg in inbox.messages:
            core.step(msg)
        if due:
            core.run_timeouts(due)  # after the messages: a stall must not time out a live leader
        self._run_leases()
        for a in self.watches.ready(self._now):
            self._reply(a.handle, a.request_id, a.error, a.body)
        for command, handle, request_id in inbox.proposals:
            try:
                term, index = core.propose(encode_command(command))
            except NotLeader as e:
                self._reply(handle, request_id, ErrorKind.NOT_LEADER, {"leader": e.leader_hint})
            else:
                self._waiting.setdefault(index, []).append((term, command, handle, request_id))
        for args, handle, request_id in inbox.admin:
            self._admin(args, handle, request_id)
        if inbox.reads:
            self._read_seq += 1
            context = self.read_context = _CONTEXT.pack(self.id, self.config.incarnation, self._read_seq)
            try:
                core.read_index(context)
            except NotLeader as e:
                for _, handle, request_id in inbox.reads:
                    self._reply(handle, request_id, ErrorKind.NOT_LEADER, {"leader": e.leader_hint})
            else:
                self._read_batches[context] = inbox.reads

    def _admin(self, args: dict[str, Any], handle: H, request_id: int) -> None:
        """An operator's request (impl/admin.py): show the configuration, change it (answered
        once the change is applied), or start a leadership transfer (answered at once)."""
        core = self.core
        action = args.get("action")
        try:
            if action == "membership":
                self._reply(handle, request_id, None, {"id": self.id, "group": self.config.group,
                                                       "leader": core.lead, "role": str(core.role),
                                                       "membership": core.membership.to_dict(),
                                                       "applied": self.tree.applied})
            elif action == "transfer":
                to = int(args.get("to", 0))
                if core.role is not Role.LEADER:
                    raise NotLeader(core.lead)
                if to not in core.voters:
                    raise ValueError(f"node {to} is not a voter ({core.membership.describe()})")
                core.transfer_leader(to)
                self._reply(handle, request_id, None, {"transferring": to, "leader": core.lead})
            elif action in ("change", "leave", "abort"):
                change = ConfChange(op="enter" if action == "change" else str(action),
                                    voters=tuple(int(v) for v in args.get("voters", ())),
                                    learners=tuple(int(v) for v in args.get("learners", ())),
                                    auto_leave=bool(args.get("auto_leave", True)))
                term, index = core.propose_conf_change(change)
                self._conf_waiting[index] = (term, handle, request_id)
            else:
                raise ValueError(f"unknown admin action {action!r}")
        except NotLeader as e:
            self._reply(handle, request_id, ErrorKind.NOT_LEADER, {"leader": e.leader_hint})
        except (ValueError, TypeError) as e:  # ConfChangeError is a ValueError
            self._reply(handle, request_id, ErrorKind.VALIDATION, {"message": str(e)})

    # -- outputs -----------------------------------------------------------------------------

    def ready(self) -> Persist | None:
        """The next batch of writes to persist, or None. Its ``send now`` messages are already in
        ``take_messages()``; call ``persisted`` once the writes are durable."""
        if self._persisting is not None:
            return self._persisting
        self.process_inputs()
        if not self.core.has_ready():
            return None
        rd = self.core.ready()
        self._messages.extend(rd.send_now)
        if self.config.unsafe_ack_before_fsync:
            self._messages.extend(rd.send_after_persist)
        self._persisting = Persist(entries=rd.entries, hard_state=rd.hard_state,
                                   must_sync=rd.must_sync or bool(rd.entries), ready=rd,
                                   snapshot_chunks=rd.snapshot_chunks, install=rd.install)
        return self._persisting

    def persisted(self, persist: Persist, installed: SnapshotImage | None = None) -> None:
        """The writes of ``persist`` are durable; ``installed`` is the verified image of its
        ``install`` (None when it has none, or when the assembled snapshot did not verify)."""
        if persist is not self._persisting:
            raise ValueError("persisted() for a Persist that is not the outstanding one")
        rd = persist.ready
        hs = persist.hard_state
        if hs is not None and (hs.term, hs.vote) != self._durable_vote:
            self._durable_vote = (hs.term, hs.vote)
            self.log(f"node {self.id}: hard state Term:{hs.term} Vote:{hs.vote} is durable")
        if not self.config.unsafe_ack_before_fsync:
            self._messages.extend(rd.send_after_persist)
        if rd.committed:
            self._apply(rd.committed)
        if rd.install is not None:
            if installed is None or (installed.meta.index, installed.meta.term) != (rd.install.index, rd.install.term):
                self.core.reject_snapshot(rd.install)
            else:
                self._install(installed)
        self._maybe_snapshot()
        for rs in rd.read_states:
            batch = self._read_batches.pop(rs.context, None)
            if batch is not None:
                seq = _CONTEXT.unpack(rs.context)[2]
                bisect.insort(self._confirmed, (rs.index, seq, batch), key=lambda item: item[:2])
        for dropped in rd.dropped_reads:
            for _, handle, request_id in self._read_batches.pop(dropped.context, ()):
                self._reply(handle, request_id, ErrorKind.DROPPED,
                            {"message": f"read not confirmed ({dropped.reason}); retry", "leader": self.core.lead})
        self._serve_reads()
        self.core.advance(rd)
        self._persisting = None

    # -- leases and watches --------------------------------------------------------------------

    def _run_leases(self) -> None:
        """Start, stop or run the leader's lease timers; propose what is due."""
        leading = self.core.role is Role.LEADER
        if leading != self._timing:
            self._timing = leading
            self.timers.clear()
            if leading:  # re-arm every lease from replicated state, each with its full TTL
                for key, lease in self.tree.leases.items():
                    self.timers.arm(key, lease.index, lease.ttl_ms, self._now)
            else:
                for a in self.watches.drop_all(ErrorKind.NOT_LEADER, {"leader": self.core.lead}):
                    self._reply(a.handle, a.request_id, a.error, a.body)
        if not leading:
            return
        for key, index in self.timers.due(self._now):
            if self.config.unsafe_expiry and key in self.tree.leases:
                index = self.tree.leases[key].index  # BROKEN ON PURPOSE: the current lease, an old deadline
            try:
                self.core.propose(encode_command(Expire(key=key, index=index)))
            except NotLeader:
                return

    def _leases_changed(self, keys: list[str]) -> None:
        if not self._timing:
            return
        for key in keys:
            lease = self.tree.leases.get(key)
            if lease is None:
                self.timers.disarm(key)
            elif not (self.config.unsafe_expiry and key in self.timers):
                self.timers.arm(key, lease.index, lease.ttl_ms, self._now)

    def _watch(self, cmd: Watch, handle: H, request_id: int) -> None:
        if self.core.role is not Role.LEADER:
            self._reply(handle, request_id, ErrorKind.NOT_LEADER, {"leader": self.core.lead})
            return
        self.watches.trim(self.core.log.first_index())
        a = self.watches.poll(cmd.key, cmd.from_index, handle, request_id, self._now)
        if a is not None:
            self._reply(a.handle, a.request_id, a.error, a.body)

    # -- snapshots ---------------------------------------------------------------------------

    def request_snapshot(self) -> None:
        """Take a snapshot at the next chance (once anything new was applied)."""
        self._snapshot_asked = True
        self._maybe_snapshot()

    def take_snapshot(self) -> SnapshotImage | None:
        """A frozen image to write (once); call ``snapshot_saved`` when it is durable."""
        out, self._snapshot_out = self._snapshot_out, None
        if out is not None:
            self._snapshot_writing = True
        return out

    def snapshot_saved(self, meta: SnapshotMeta | None) -> None:
        """The image from ``take_snapshot`` is durable as ``meta`` (None: writing it failed)."""
        self._snapshot_writing = False
        if meta is not None:
            self.snapshot_index = max(self.snapshot_index, meta.index)
            self.log(f"node {self.id}: {meta.describe()} is durable")
        body = {"index": self.snapshot_index, "bytes": meta.size if meta else 0}
        for handle, request_id in self._snapshot_waiters:
            self._reply(handle, request_id, None if meta else ErrorKind.VALIDATION,
                        body if meta else {"message": "writing the snapshot failed (see the node log)"})
        self._snapshot_waiters.clear()
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        if self._snapshot_out is not None or self._snapshot_writing:
            return
        applied = self.tree.applied
        n = self.config.snapshot_entries
        if applied > self.snapshot_index and (self._snapshot_asked or (n and applied - self.snapshot_index >= n)):
            self._snapshot_asked = False
            self._snapshot_out = self.image()
        elif self._snapshot_asked and applied <= self.snapshot_index and self._snapshot_waiters:
            self._snapshot_asked = False  # nothing new since the last one: that one answers
            self.snapshot_saved(SnapshotMeta(index=self.snapshot_index, size=0))

    def image(self) -> SnapshotImage:
        """The replicated state at the applied index, frozen (values are immutable bytes)."""
        values, dirs = self.tree.image()
        m = self.core.membership_at(self.tree.applied)
        meta = SnapshotMeta(index=self.tree.applied, term=self._applied_term, voters=m.voters, learners=m.learners,
                            outgoing=m.outgoing, outgoing_learners=m.outgoing_learners, auto_leave=m.auto_leave)
        return SnapshotImage(meta=meta,
                             values=values, dirs=dirs, chain=self.chain, skipped=self.skipped,
                             leases=self.tree.lease_image())

    def _restore(self, image: SnapshotImage) -> None:
        self.tree.restore_image(image.meta.index, image.values, image.dirs, image.leases)
        self.chain = image.chain
        self.skipped = image.skipped
        self._applied_term = image.meta.term
        self.snapshot_index = max(self.snapshot_index, image.meta.index)
        self.watches.reset(image.meta.index)
        if self._timing:  # the whole state changed: re-arm from it
            self.timers.clear()
            for key, lease in self.tree.leases.items():
                self.timers.arm(key, lease.index, lease.ttl_ms, self._now)

    def _install(self, image: SnapshotImage) -> None:
        self._restore(image)
        # proposals waiting for slots the snapshot covers get no answer here (their outcome is
        # unknown to this node): the client's deadline makes them indeterminate
        for index in [i for i in self._waiting if i <= image.meta.index]:
            del self._waiting[index]
        for index in [i for i in self._conf_waiting if i <= image.meta.index]:
            del self._conf_waiting[index]
        self.log(f"node {self.id}: installed {image.meta.describe()}")
        self._serve_reads()

    def take_messages(self) -> list[Message]:
        out, self._messages = self._messages, []
        return out

    def take_replies(self) -> list[Reply[H]]:
        out, self._replies = self._replies, []
        return out

    def status(self) -> dict[str, Any]:
        st = self.core.status()
        return {"id": self.id, "group": self.config.group, "role": str(st.role), "leader": st.leader,
                "term": st.term, "commit": st.commit, "last_index": st.last_index, "applied": self.tree.applied, "skipped": self.skipped,
                "pending_reads": sum(len(b) for b in self._read_batches.values()),
                "pending_writes": sum(len(w) for w in self._waiting.values()),
                "snapshot": self.snapshot_index, "first_index": self.core.log.first_index(),
                "refused": dict(self.core.refusals.counts),
                "digest": {"applied": self.tree.applied, "chain": self.chain.hex()[:32], "tree": self.tree.digest()}}

    @property
    def leader(self) -> int:
        return self.core.lead

    @property
    def role(self) -> Role:
        return self.core.role

    # -- applying and answering ----------------------------------------------------------------

    def _apply(self, committed: tuple[Entry, ...]) -> None:
        tree = self.tree
        waiting = self._waiting
        for entry in committed:
            self._applied_term = entry.term
            self.chain = hashlib.sha256(b"%s%d:%d:%s" % (self.chain, entry.term, entry.index, entry.data)).digest()
            proposals = waiting.pop(entry.index, ())
            conf = self._conf_waiting.pop(entry.index, None)
            if conf is not None:
                self._answer_conf(entry, *conf)
            result: Result | None = None
            if entry.type is EntryType.NORMAL and entry.data:
                # our own proposal's command is at hand; anything else is decoded
                command = next((c for term, c, _, _ in proposals if term == entry.term), None)
                if command is None:
                    try:
                        command = decode_command(entry.data)
                    except WireError:
                        self.skipped += 1
                if command is not None:
                    result = tree.apply(entry.index, command)
                    if tree.touched:
                        self._leases_changed(tree.touched)
            if result is None:
                tree.skip(entry.index)
            self.watches.record(entry.index, tree.changes if result is not None else [])
            for term, _, handle, request_id in proposals:
                if term == entry.term and result is not None:
                    self._answer(result, handle, request_id)
                else:
                    self._reply(handle, request_id, ErrorKind.DROPPED,
                                {"message": f"log slot {entry.index} was taken by term {entry.term}",
                                 "leader": self.core.lead})

    def _answer_conf(self, entry: Entry, term: int, handle: H, request_id: int) -> None:
        if term == entry.term and entry.type is EntryType.CONF_CHANGE:
            self._reply(handle, request_id, None, {"index": entry.index,
                                                   "membership": self.core.membership_at(entry.index).to_dict()})
        else:
            self._reply(handle, request_id, ErrorKind.DROPPED,
                        {"message": f"log slot {entry.index} was taken by term {entry.term}", "leader": self.core.lead})

    def _serve_reads(self) -> None:
        confirmed = self._confirmed
        applied = self.tree.applied
        while confirmed and confirmed[0][0] <= applied:
            _, _, batch = confirmed.pop(0)
            for command, handle, request_id in batch:
                self._answer(self.tree.read(command), handle, request_id)

    def _answer(self, result: Result, handle: H, request_id: int) -> None:
        self._reply(handle, request_id, result.error, result_body(result))

    def _reply(self, handle: H, request_id: int, error: str | None, body: dict[str, Any]) -> None:
        self._replies.append(Reply(handle, request_id, error, body))
