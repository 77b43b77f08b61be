"""The asyncio shell around the sans-I/O Raft core: one process, one Raft member, one DtKV tree.

The shell owns every piece of I/O and nothing of Raft's logic. One task (the Ready loop) is
the only code that touches the core; everything else (peer readers, client connections, the
tick timer) only queues inputs and wakes it. The loop, per ``impl/raft/messages.py``:

1. drain the inbox: due ticks, peer messages, proposals, and ONE ReadIndex for all reads that
   arrived since the last round;
2. for each Ready: send ``send_now``; append entries and the hard state to the WAL and fsync in
   a worker thread (``asyncio.to_thread``) so sockets keep being read meanwhile; then send
   ``send_after_persist``; apply ``committed`` to the tree and answer the clients whose
   proposals they are; serve reads whose ReadIndex has been applied; ``advance``.

Everything that arrived during an fsync lands in the next Ready, so one fsync covers a whole
batch of proposals (group commit). A client write is answered only after its entry is applied;
a proposal whose slot was committed with another term is answered ``dropped`` (definitely not
applied). Reads are answered only after ReadIndex (or the lease, ``--read-mode lease``)
confirmed leadership and the tree caught up with the read index.

Two deliberately broken switches exist so the checker can be shown to catch them:
``unsafe_local_reads`` answers reads from the local tree at once on any member, and
``unsafe_ack_before_fsync`` sends acknowledgements and votes before the WAL write and fsync.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftlab.impl.dtkv.commands import Command, ErrorKind, Result
from raftlab.impl.dtkv.tree import Tree
from raftlab.impl.net.codec import Request, WireError, decode_command, encode_command, result_body
from raftlab.impl.net.peers import PeerLink, serve_peer_connection
from raftlab.impl.raft import NotLeader, RaftConfig, RaftCore
from raftlab.impl.raft.messages import NONE, EntryType, Message, Ready, Role
from raftlab.impl.server import ClientConnection, serve_client_connection
from raftlab.impl.storage.wal import WalStorage

ASYNC_FLUSH_SECONDS = 1.0  # --fsync async: the loss window on an OS crash


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    id: int
    data_dir: Path
    peers: tuple[tuple[int, str, int], ...]  # (id, host, port); our own entry is our listen address
    client_port: int
    client_host: str = "127.0.0.1"
    fsync: str = "sync"  # "sync" | "async"
    read_mode: str = "index"  # "index" | "lease"
    tick_ms: int = 50
    election_ticks: int = 10
    seed: int = 0
    unsafe_local_reads: bool = False
    unsafe_ack_before_fsync: bool = False

    def __post_init__(self) -> None:
        ids = [p[0] for p in self.peers]
        if self.id not in ids:
            raise ValueError(f"--peers must include this node's own id {self.id} (its peer listen address)")
        if len(set(ids)) != len(ids):
            raise ValueError("--peers lists an id twice")
        if self.fsync not in ("sync", "async"):
            raise ValueError(f"--fsync must be sync or async, not {self.fsync!r}")
        if self.read_mode not in ("index", "lease"):
            raise ValueError(f"--read-mode must be index or lease, not {self.read_mode!r}")
        if self.tick_ms <= 0 or self.election_ticks < 3:
            raise ValueError("--tick-ms must be > 0 and --election-ticks >= 3")

    def peer_address(self, peer_id: int) -> tuple[str, int]:
        for pid, host, port in self.peers:
            if pid == peer_id:
                return host, port
        raise KeyError(peer_id)


@dataclass(slots=True)
class _Inbox:
    ticks: int = 0
    messages: list[Message] = field(default_factory=list)
    proposals: list[tuple[Command, ClientConnection, int]] = field(default_factory=list)
    reads: list[tuple[Request, ClientConnection]] = field(default_factory=list)


class Node:
    def __init__(self, config: NodeConfig, logger: Callable[[str], None]) -> None:
        self.config = config
        self.log = logger
        self.tree = Tree()
        self.leader = NONE
        self.role = Role.FOLLOWER
        self._inbox = _Inbox()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._links: dict[int, PeerLink] = {
            pid: PeerLink(pid, host, port, logger=logger) for pid, host, port in config.peers if pid != config.id}
        # index -> [(term, command, connection, request id)] of proposals waiting for that slot;
        # the command is kept so the leader need not decode its own entries again when applying
        self._waiting: dict[int, list[tuple[int, Command, ClientConnection, int]]] = {}
        self._read_contexts: dict[bytes, list[tuple[Request, ClientConnection]]] = {}
        self._confirmed_reads: list[tuple[int, int, list[tuple[Request, ClientConnection]]]] = []
        self._read_seq = 0
        # a running hash of every applied entry (term, index, data): equal on two replicas at the
        # same applied index iff they applied the same log (the harness compares it at the end)
        self.chain = b""
        self.storage: WalStorage | None = None
        self.core: RaftCore | None = None
        self.ready_event = asyncio.Event()  # set once both ports listen

    # -- inputs (called from connection handlers; never touch the core) ----------------------

    def deliver(self, msg: Message) -> None:
        if msg.to != self.config.id:
            self.log(f"dropping a message for node {msg.to}: {msg.describe()}")
            return
        self._inbox.messages.append(msg)
        self._wake.set()

    def submit(self, request: Request, conn: ClientConnection) -> None:
        if request.error is not None:
            conn.reply(request.id, request.error.kind, {"message": request.error.message})
        elif request.op == "hello":
            conn.reply(request.id, None, {"id": self.config.id, "leader": self.leader})
        elif request.op == "status":
            conn.reply(request.id, None, {"status": self.status()})
        elif request.command is None:
            conn.reply(request.id, ErrorKind.VALIDATION, {"message": f"unknown operation {request.op!r}"})
        elif request.command.write:
            self._inbox.proposals.append((request.command, conn, request.id))
            self._wake.set()
        elif self.config.unsafe_local_reads:
            self._answer(self.tree.read(request.command), conn, request.id)
        else:
            self._inbox.reads.append((request, conn))
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.config.id, "role": str(self.role), "leader": self.leader,
                               "applied": self.tree.applied,
                               "digest": {"applied": self.tree.applied, "chain": self.chain.hex()[:32],
                                          "tree": self.tree.digest()}}
        if self.core is not None:
            st = self.core.status()
            out["term"] = st.term
            out["commit"] = st.commit
            out["last_index"] = st.last_index
            out["role"] = str(st.role)
            out["leader"] = st.leader
        return out

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        self.storage = await asyncio.to_thread(
            WalStorage, cfg.data_dir, durable=cfg.fsync == "sync", logger=self.log)
        hs = self.storage.initial_state()
        self.log(f"node {cfg.id}: recovered {self.storage.last_index()} log entries, {hs.describe()}; "
                 f"seed {cfg.seed}")
        raft_cfg = RaftConfig(id=cfg.id, voters=tuple(sorted(p[0] for p in cfg.peers)),
                              election_tick=cfg.election_ticks, heartbeat_tick=1,
                              read_only="lease" if cfg.read_mode == "lease" else "safe", applied=0)
        self.core = RaftCore(raft_cfg, self.storage, rng=random.Random(cfg.seed), logger=self.log)
        host, port = cfg.peer_address(cfg.id)
        peer_server = await asyncio.start_server(
            lambda r, w: serve_peer_connection(r, w, self.deliver, self.log), host, port)
        client_server = await asyncio.start_server(
            lambda r, w: serve_client_connection(r, w, self, self.log), cfg.client_host, cfg.client_port)
        self.log(f"node {cfg.id}: peers on {host}:{port}, clients on {cfg.client_host}:{cfg.client_port}")
        self.ready_event.set()
        try:
            async with asyncio.TaskGroup() as tg:
                helpers = [tg.create_task(link.run()) for link in self._links.values()]
                helpers.append(tg.create_task(self._ticker()))
                await self._ready_loop()  # returns once stop() was called, between two Readys
                self.log(f"node {cfg.id}: stopping")
                for task in helpers:
                    task.cancel()
        finally:
            peer_server.close()
            client_server.close()
            self.storage.close()

    async def _ticker(self) -> None:
        period = self.config.tick_ms / 1000
        next_at = time.monotonic()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self._inbox.ticks += 1
            self._wake.set()

    # -- the Ready loop ----------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        core = self.core
        assert core is not None and self.storage is not None
        last_flush = time.monotonic()
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            self._drain()
            while core.has_ready():
                await self._handle(core.ready())
                self._drain()
            if self.config.fsync == "async" and time.monotonic() - last_flush > ASYNC_FLUSH_SECONDS:
                await asyncio.to_thread(self.storage.flush)
                last_flush = time.monotonic()

    def _drain(self) -> None:
        core = self.core
        assert core is not None
        inbox, self._inbox = self._inbox, _Inbox()
        for _ in range(inbox.ticks):
            core.tick()
        for msg in inbox.messages:
            core.step(msg)
        for command, conn, request_id in inbox.proposals:
            try:
                term, index = core.propose(encode_command(command))
            except NotLeader as e:
                conn.reply(request_id, ErrorKind.NOT_LEADER, {"leader": e.leader_hint})
            else:
                self._waiting.setdefault(index, []).append((term, command, conn, request_id))
        if inbox.reads:
            self._read_seq += 1
            context = self._read_seq.to_bytes(8, "big")
            try:
                core.read_index(context)
            except NotLeader as e:
                for request, conn in inbox.reads:
                    conn.reply(request.id, ErrorKind.NOT_LEADER, {"leader": e.leader_hint})
            else:
                self._read_contexts[context] = inbox.reads

    async def _handle(self, rd: Ready) -> None:
        core, storage = self.core, self.storage
        assert core is not None and storage is not None
        if rd.soft_state is not None:
            self._on_soft_state(rd)
        send = self._send
        send(rd.send_now)
        unsafe = self.config.unsafe_ack_before_fsync
        if unsafe:
            send(rd.send_after_persist)
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        if rd.must_sync or rd.entries:
            if storage.durable:
                await asyncio.to_thread(storage.sync)
            else:
                storage.sync()
        if not unsafe:
            send(rd.send_after_persist)
        if rd.committed:
            self._apply(rd)
        for rs in rd.read_states:
            batch = self._read_contexts.pop(rs.context, None)
            if batch is not None:
                bisect.insort(self._confirmed_reads, (rs.index, int.from_bytes(rs.context, "big"), batch),
                              key=lambda item: item[:2])
        for context in rd.dropped_reads:
            for request, conn in self._read_contexts.pop(context, ()):
                conn.reply(request.id, ErrorKind.DROPPED, {"message": "read could not be confirmed; retry",
                                                           "leader": self.leader})
        self._serve_reads()
        core.advance(rd)

    def _send(self, messages: tuple[Message, ...]) -> None:
        links = self._links
        for msg in messages:
            link = links.get(msg.to)
            if link is not None:
                link.send(msg)

    def _on_soft_state(self, rd: Ready) -> None:
        assert rd.soft_state is not None
        ss = rd.soft_state
        if ss.leader != self.leader or ss.role != self.role:
            self.log(f"node {self.config.id}: {ss.describe()}")
        if ss.leader != self.leader:
            # a ReadIndex in flight under the old leader may never be answered; reads are
            # idempotent, so tell the clients to retry rather than leave them to time out
            for batch in self._read_contexts.values():
                for request, conn in batch:
                    conn.reply(request.id, ErrorKind.DROPPED, {"message": "leader changed; retry",
                                                               "leader": ss.leader})
            self._read_contexts.clear()
        self.leader = ss.leader
        self.role = ss.role

    def _apply(self, rd: Ready) -> None:
        tree = self.tree
        waiting = self._waiting
        for entry in rd.committed:
            self.chain = hashlib.sha256(b"%s%d:%d:%s" % (self.chain, entry.term, entry.index, entry.data)).digest()
            proposals = waiting.pop(entry.index, ())
            result: Result | None = None
            if entry.type is EntryType.NORMAL and entry.data:
                command = next((c for term, c, _, _ in proposals if term == entry.term), None)
                if command is None:
                    try:
                        command = decode_command(entry.data)
                    except WireError as e:
                        self.log(f"node {self.config.id}: entry {entry.index} holds no valid command ({e}); "
                                 "skipped")
                if command is not None:
                    result = tree.apply(entry.index, command)
            if result is None:
                tree.skip(entry.index)
            for term, _, conn, request_id in proposals:
                if term == entry.term and result is not None:
                    self._answer(result, conn, request_id)
                else:
                    conn.reply(request_id, ErrorKind.DROPPED,
                               {"message": f"log slot {entry.index} was taken by term {entry.term}",
                                "leader": self.leader})

    def _serve_reads(self) -> None:
        confirmed = self._confirmed_reads
        applied = self.tree.applied
        while confirmed and confirmed[0][0] <= applied:
            _, _, batch = confirmed.pop(0)
            for request, conn in batch:
                assert request.command is not None
                self._answer(self.tree.read(request.command), conn, request.id)

    @staticmethod
    def _answer(result: Result, conn: ClientConnection, request_id: int) -> None:
        conn.reply(request_id, result.error, result_body(result))


async def run_node(config: NodeConfig, logger: Callable[[str], None]) -> None:
    """Run a node until SIGTERM/SIGINT."""
    node = Node(config, logger)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, node.stop)
    await node.run()
