"""The asyncio shell around the node machines: it moves bytes and time, and decides nothing.

The process (``Node``) owns the two ports and the peer links and routes every inbound frame by
its group id (impl/groups.py) to one ``GroupShell`` per Raft group (``--groups N``; one by
default). Each group shell is what follows: its own machine, WAL, snapshots, timer and Ready
loop, so one group's fsync or snapshot never holds another's loop.

``impl/machine.py`` holds every decision (Raft, proposal waiters, read batching, apply and
replies). This shell feeds it peer messages, client requests and the monotonic time, and carries
out what it asks: one task (the Ready loop) takes the next ``Persist``, sends the messages the
machine released, writes and fsyncs the entries and hard state **in a worker thread** (so a
stalled disk never stops the sockets being read or heartbeats being received; it can only delay
our acknowledgements), tells the machine ``persisted``, and sends what that released (replies,
acknowledgements). Everything that arrives meanwhile waits in the machine for the next Ready
(group commit). A timer wakes the loop at ``machine.next_tick_at()``; the machine turns the
elapsed time into ticks, so a stalled process catches up in one step.

Snapshots: the machine hands out a frozen tree image (``take_snapshot``); a background task
writes it (encode, CRC, fsync, rename: snapshot.py) in a worker thread while the loop keeps
serving, and once it is durable the loop (between two Readys, so no WAL write is in flight)
tells the machine and compacts the log (compaction.py). The WAL-size trigger is checked here.
A follower's Persist may carry snapshot chunks (written to the partial file) and an install
(verified, made current, the WAL reset after it), all in the same worker-thread step.

With ``--fsync async`` writes are not fsynced per Ready; about every ``ASYNC_FLUSH_SECONDS`` the
WAL segments and the meta file (term, vote) are fsynced, so that is the loss window on an OS crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raftlab.impl.dtkv.commands import ErrorKind
from raftlab.impl.groups import Router, UnknownGroup, group_dir, group_ids, group_logger, group_seed
from raftlab.impl.machine import MachineConfig, NodeMachine, Persist
from raftlab.impl.net.auth import Key
from raftlab.impl.net.codec import Request
from raftlab.impl.net.peers import PeerLink, serve_peer_connection
from raftlab.impl.net.streams import ConnectionGate, shell_log
from raftlab.impl.raft import RaftConfig
from raftlab.impl.raft.messages import Message, SnapshotMeta
from raftlab.impl.server import MAX_CLIENTS, ClientConnection, serve_client_connection
from raftlab.impl.storage.compaction import SnapshotPolicy, compact, recover, should_snapshot
from raftlab.impl.storage.snapshot import SnapshotFiles
from raftlab.impl.storage.snapshot_format import SnapshotImage
from raftlab.impl.storage.wal import SEGMENT_BYTES, WalStorage

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
    unsafe_expiry: bool = False
    unsafe_watch_skip: bool = False
    snapshots: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    wal_segment_bytes: int = SEGMENT_BYTES
    key: Key | None = None  # the cluster key (--secret-file): both ports authenticate; None: open ports
    voters: tuple[int, ...] = ()  # the bootstrap voters (--voters); empty: every peer. Others start as non-members
    groups: int = 1  # --groups N: Raft groups 0..N-1 (impl/groups.py), each with its own log, tree and leader

    def __post_init__(self) -> None:
        ids = [p[0] for p in self.peers]
        if self.id not in ids:
            raise ValueError(f"--peers must include this node's own id {self.id} (its peer listen address)")
        if len(set(ids)) != len(ids):
            raise ValueError("--peers lists an id twice")
        if not set(self.voters) <= set(ids):
            raise ValueError(f"--voters {sorted(set(self.voters) - set(ids))} are not in --peers")
        if self.fsync not in ("sync", "async"):
            raise ValueError(f"--fsync must be sync or async, not {self.fsync!r}")
        if self.read_mode not in ("index", "lease"):
            raise ValueError(f"--read-mode must be index or lease, not {self.read_mode!r}")
        if self.tick_ms <= 0 or self.election_ticks < 3:
            raise ValueError("--tick-ms must be > 0 and --election-ticks >= 3")
        group_ids(self.groups)  # ValueError naming --groups

    def peer_address(self, peer_id: int) -> tuple[str, int]:
        for pid, host, port in self.peers:
            if pid == peer_id:
                return host, port
        raise KeyError(peer_id)


class GroupShell:
    """One Raft group's share of the process: its machine, WAL and snapshot files, its timer and
    its Ready loop. Messages leave through the process's shared peer links, tagged with the group."""

    def __init__(self, node: Node, group: int) -> None:
        self.node = node
        self.group = group
        self.config = node.config
        self.data_dir = group_dir(node.config.data_dir, group)
        self.log = group_logger(node.log, group)
        self._wake = asyncio.Event()
        self.storage: WalStorage | None = None
        self.snapshots: SnapshotFiles | None = None
        self._saved: list[SnapshotMeta | None] = []  # written by the background task, not yet compacted
        self._writer: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None  # the node's task group, which owns the snapshot writer
        self._wal_checked = 0.0  # monotonic time of the last WAL-size check
        self.machine: NodeMachine[ClientConnection] | None = None

    # -- inputs (from the node's router): hand them to the machine and wake the loop -----------

    def deliver(self, msg: Message) -> None:
        assert self.machine is not None
        self.machine.receive(msg)
        self._wake.set()

    def submit(self, request: Request, conn: ClientConnection) -> None:
        assert self.machine is not None
        self.machine.submit(request, conn)
        if self.machine.has_output():
            self._flush()  # status, hello and refusals are answered at once
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def recover(self, incarnation: int) -> None:
        """Open this group's directory (recovery.py decides what survived) and build its machine."""
        cfg = self.config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        recovered = await asyncio.to_thread(recover, self.data_dir, durable=cfg.fsync == "sync", logger=self.log,
                                            segment_bytes=cfg.wal_segment_bytes, node_id=cfg.id)
        self.storage = storage = recovered.storage
        self.snapshots = recovered.snapshots
        snap = recovered.image.meta.describe() if recovered.image else "no snapshot"
        self.log(f"node {cfg.id}: recovered {snap} and log entries {storage.first_index()}..{storage.last_index()}, "
                 f"{storage.initial_state().describe()}; seed {cfg.seed}, incarnation {incarnation}")
        everyone = tuple(sorted(p[0] for p in cfg.peers))
        raft = RaftConfig(id=cfg.id, voters=tuple(sorted(cfg.voters)) or everyone, peers=everyone,
                          election_tick=cfg.election_ticks, heartbeat_tick=1,
                          read_only="lease" if cfg.read_mode == "lease" else "safe", applied=0,
                          rejoin=storage.manifest.rejoin)
        if storage.manifest.rejoin:
            self.log(f"node {cfg.id}: rejoining after `raftlab node repair --empty`: no vote until caught up")
        self.machine = NodeMachine(
            MachineConfig(raft=raft, tick_seconds=cfg.tick_ms / 1000, incarnation=incarnation,
                          unsafe_local_reads=cfg.unsafe_local_reads,
                          unsafe_ack_before_fsync=cfg.unsafe_ack_before_fsync,
                          unsafe_expiry=cfg.unsafe_expiry, unsafe_watch_skip=cfg.unsafe_watch_skip,
                          snapshot_entries=cfg.snapshots.entries, group=self.group),
            storage, now=time.monotonic(), rng=random.Random(group_seed(cfg.seed, self.group)), logger=self.log,
            snapshot=recovered.image)

    async def run(self, tg: asyncio.TaskGroup) -> None:
        """The timer and the Ready loop until the node stops (between two Readys); a snapshot
        being written is finished, not torn."""
        self._tg = tg
        ticker = tg.create_task(self._ticker())
        try:
            await self._ready_loop()
        finally:
            ticker.cancel()
        if self._writer is not None:
            await self._writer

    async def close(self) -> None:
        if self.storage is None:
            return
        try:
            await asyncio.to_thread(self.storage.close)
        except OSError as e:
            self.log(f"node {self.config.id}: closing the WAL failed too: {e}")

    async def _ticker(self) -> None:
        machine = self.machine
        assert machine is not None
        while True:
            await asyncio.sleep(max(0.0, machine.next_tick_at() - time.monotonic()))
            self._wake.set()

    # -- the Ready loop ----------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        machine, storage, stopped = self.machine, self.storage, self.node.stopped
        assert machine is not None and storage is not None
        last_flush = time.monotonic()
        while not stopped.is_set():
            await self._wake.wait()
            self._wake.clear()
            self._after_snapshots()
            machine.tick(time.monotonic())
            if machine.due_ticks() > 1:  # we stalled: let peer readers woken with us deliver first
                await asyncio.sleep(0)
            while True:
                machine.tick(time.monotonic())
                persist = machine.ready()
                self._flush()  # messages that depend on nothing unpersisted leave first
                if persist is None:
                    break
                if persist.ready.soft_state is not None:
                    self.log(f"node {self.config.id}: {persist.ready.soft_state.describe()}")
                if persist.must_sync:
                    installed = await asyncio.to_thread(self._write, persist)
                else:
                    installed = self._write(persist)  # only the commit index changed: no I/O
                machine.persisted(persist, installed)
                self._flush()
                self._after_snapshots()  # under steady load this loop may not return to the top for long
                if storage.manifest.rejoin and not machine.core.rejoining:  # caught up; its vote is on disk
                    await asyncio.to_thread(storage.clear_rejoin)
            if self.config.fsync == "async" and time.monotonic() - last_flush > ASYNC_FLUSH_SECONDS:
                await asyncio.to_thread(storage.flush)  # WAL segments and the meta file (term, vote)
                last_flush = time.monotonic()

    def _write(self, persist: Persist) -> SnapshotImage | None:
        storage, snapshots = self.storage, self.snapshots
        assert storage is not None and snapshots is not None
        if persist.entries:
            storage.append(persist.entries)
        if persist.hard_state is not None:
            storage.set_hard_state(persist.hard_state)
        for chunk in persist.snapshot_chunks:
            snapshots.receive(chunk)
        installed = None
        if persist.install is not None:
            installed = snapshots.finish(persist.install)
            if installed is not None:
                storage.reset_to(installed.meta)  # the snapshot file is durable first
                snapshots.set_current(installed.meta)
                snapshots.prune(installed.meta.index)
        if persist.must_sync:
            storage.sync()
        return installed

    # -- snapshots in the background ---------------------------------------------------------

    def _start_snapshot_write(self) -> None:
        machine = self.machine
        assert machine is not None
        if self._writer is not None:
            return
        image = machine.take_snapshot()
        if image is not None:
            assert self._tg is not None
            self._writer = self._tg.create_task(self._write_snapshot(image))

    async def _write_snapshot(self, image: SnapshotImage) -> None:
        snapshots = self.snapshots
        assert snapshots is not None
        meta: SnapshotMeta | None = None
        try:
            meta = await asyncio.to_thread(snapshots.write, image)
        except OSError as e:  # a full disk: keep serving from the log, try again later
            self.log(f"node {self.config.id}: writing snapshot {image.meta.index} failed: {e}")
        self._saved.append(meta)
        self._writer = None
        self._wake.set()

    def _after_snapshots(self) -> None:
        """Between two Readys (no WAL write in flight): report written snapshots and compact the
        log after them; about once a second, the WAL-size trigger; start the next write."""
        machine, storage, snapshots = self.machine, self.storage, self.snapshots
        assert machine is not None and storage is not None and snapshots is not None
        now = time.monotonic()
        if now - self._wal_checked > 1.0:
            self._wal_checked = now
            if should_snapshot(self.config.snapshots, machine.tree.applied, machine.snapshot_index,
                               storage.wal_bytes()):
                machine.request_snapshot()
        while self._saved:
            meta = self._saved.pop(0)
            machine.snapshot_saved(meta)
            if meta is not None:
                compact(storage, snapshots, meta, self.config.snapshots.margin, self.log)
            self._flush()
        self._start_snapshot_write()

    def _flush(self) -> None:
        machine = self.machine
        assert machine is not None
        links, group = self.node.links, self.group
        for msg in machine.take_messages():
            link = links.get(msg.to)
            if link is not None:
                link.send(msg, group)
        for r in machine.take_replies():
            r.handle.reply(r.request_id, r.error, r.body)


class Node:
    """The process: the peer and client ports, the peer links, and one ``GroupShell`` per Raft
    group, reached through the router (impl/groups.py) by the group id every frame carries."""

    def __init__(self, config: NodeConfig, logger: Callable[[str], None]) -> None:
        self.config = config
        self.log = logger
        self.stopped = asyncio.Event()
        self.links: dict[int, PeerLink] = {
            pid: PeerLink(pid, host, port, logger=logger, key=config.key, my_id=config.id)
            for pid, host, port in config.peers if pid != config.id}
        self._note = shell_log(logger)  # connection problems and unknown groups, rate-limited
        self.groups: Router[GroupShell] = Router({g: GroupShell(self, g) for g in group_ids(config.groups)})
        self.ready_event = asyncio.Event()  # set once both ports listen

    # -- inputs (from connection handlers): route by group id --------------------------------

    def deliver(self, group: int, msg: Message) -> None:
        try:
            shell = self.groups.route(group)
        except UnknownGroup as e:  # dropped and counted; the link stays up for the other groups
            self._note("unknown-group", f"node {self.config.id}: refused a message from {msg.from_}: {e}")
            return
        shell.deliver(msg)

    def submit(self, request: Request, conn: ClientConnection) -> None:
        if request.op == "groups":
            conn.reply(request.id, None, {"id": self.config.id, "groups": list(self.groups.ids)})
            return
        try:
            shell = self.groups.route(request.group)
        except UnknownGroup as e:
            conn.reply(request.id, ErrorKind.VALIDATION, {"message": str(e)})
            return
        shell.submit(request, conn)

    def stop(self) -> None:
        self.stopped.set()
        for _, shell in self.groups.items():
            shell.wake()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        incarnation = time.time_ns()  # differs on every start: read ids of a past run never match
        shells = [shell for _, shell in self.groups.items()]
        try:
            for shell in shells:  # one after another: a damaged group refuses the start, naming its file
                await shell.recover(incarnation)
            await self._serve(shells)
        finally:
            for shell in shells:
                await shell.close()

    async def _serve(self, shells: list[GroupShell]) -> None:
        cfg = self.config
        host, port = cfg.peer_address(cfg.id)
        members = tuple(p[0] for p in cfg.peers)
        peer_gate, client_gate = ConnectionGate(4 * len(members) + 8), ConnectionGate(MAX_CLIENTS)
        peer_server = await asyncio.start_server(
            lambda r, w: serve_peer_connection(r, w, self.deliver, self._note, key=cfg.key, my_id=cfg.id,
                                               members=members, gate=peer_gate), host, port)
        client_server = await asyncio.start_server(
            lambda r, w: serve_client_connection(r, w, self, self._note, key=cfg.key, my_id=cfg.id,
                                                 gate=client_gate), cfg.client_host, cfg.client_port)
        groups = f"; groups {self.groups.describe()}" if len(self.groups) > 1 else ""
        self.log(f"node {cfg.id}: peers on {host}:{port}, clients on {cfg.client_host}:{cfg.client_port}{groups}, "
                 + ("authenticated (cluster key)" if cfg.key is not None else
                    "UNAUTHENTICATED (no --secret-file): anyone who reaches these ports is trusted"))
        self.ready_event.set()
        try:
            async with asyncio.TaskGroup() as tg:
                helpers = [tg.create_task(link.run()) for link in self.links.values()]
                loops = [tg.create_task(shell.run(tg)) for shell in shells]
                await asyncio.wait(loops)  # they return once stop() was called, between two Readys
                self.log(f"node {cfg.id}: stopping")
                for task in helpers:
                    task.cancel()
        except ExceptionGroup as group:  # a Ready loop's own failure (a full disk), not a group of one
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], OSError):
                raise group.exceptions[0] from None
            raise
        finally:
            peer_server.close()
            client_server.close()


async def run_node(config: NodeConfig, logger: Callable[[str], None], started: threading.Event | None = None) -> None:
    """Run a node until SIGTERM/SIGINT; ``started`` is set once both ports listen (so a caller
    can tell "cannot start" from "stopped")."""
    node = Node(config, logger)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, node.stop)
    if started is not None:
        async def note_started() -> None:
            await node.ready_event.wait()
            started.set()

        watcher = asyncio.create_task(note_started())
    try:
        await node.run()
    finally:
        if started is not None:
            watcher.cancel()
