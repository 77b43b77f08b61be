"""SimCluster: N node machines on in-memory storage, driven by one seeded event stream.

Theory of operation. Each node is the real ``impl.machine.NodeMachine`` (the class the node
process runs), so every code path of a campaign is reachable from a seed. Every step the seeded
``random.Random`` picks one event: let time pass, deliver (or drop, duplicate, reorder) an
in-flight message, start a client operation, partition or heal the network, crash a node (it
loses what it wrote but did not sync) or restart it, and the faults real machines add:

* clocks: global time advances 1/N tick per time event (N nodes); node ``i`` reads
  ``offset + rate_i * time + jumps_i``. ``clock_drift`` draws each rate from
  ``[1, 1 + clock_drift]``; ``clock_jumps`` moves a node's clock forward now and then (a VM
  migration). ReadIndex assumes nothing about clocks; lease reads assume the rates differ by at
  most ``RaftCore.lease_drift_bound()`` and no jumps (``tests/sim`` shows both sides);
* ``pauses``: a node takes no events for a while (SIGSTOP, a GC pause); messages and client
  requests queue for it, then it gets the whole elapsed time at once;
* ``disk_stalls``: a node's persist completes only after a while (a stalled disk); it keeps
  receiving meanwhile, as the node does with its WAL writes in a worker thread;
* snapshots (``snapshot_entries`` N, 0: off): every node snapshots every N applied entries and
  now and then on demand (compaction at random points); the write completes some steps later
  (a crash before then loses it, as a torn ``.tmp`` file is lost), then the log is compacted
  up to ``snapshot_margin`` entries below it, so lagging or restarted followers are brought back
  by InstallSnapshot, streamed in ``snapshot_chunk_bytes`` chunks (a crash mid-stream loses the
  partial snapshot); late duplicates (network.py) bring stale snapshots to nodes that moved on. A node restarts from its storage's snapshot and the log after it.
* membership (``membership``, with ``spares`` extra ids): the leader is asked for joint
  changes now and then, and a crashed node no configuration names may come back wiped
  (membership.py).

Each node's work is carried out as the shell does: ``ready()`` (send what it released),
persist (append, hard state, sync) then ``persisted()`` (send acknowledgements, collect
replies). After every event ``invariants.check`` runs; client operations are recorded as a
``History`` (logical time) that the linearizability checker judges at the end.

The same seed gives the same run, event for event: the replay command is printed on failure.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from raftlab.coverage import READ_FS, SimCoverage
from raftlab.history import History, Op, OpType
from raftlab.impl.dtkv.commands import Cas, Command, ErrorKind, Get, Put
from raftlab.impl.machine import MachineConfig, NodeMachine, Persist, Reply
from raftlab.impl.net.codec import Request
from raftlab.impl.raft import EntryType, RaftConfig, RaftCore, Role
from raftlab.impl.storage.memory import MemoryStorage
from raftlab.impl.storage.meta import StorageError, encode_meta, load_meta_bytes
from raftlab.impl.storage.snapshot_format import SnapshotImage
from raftlab.workloads.tree import TreeSpace

from . import treeops
from .hostile import DiskImage, forge
from .invariants import Invariants
from .membership import change_membership, may_wipe
from .network import SimNetwork
from .scenarios import fire


@dataclass(slots=True, kw_only=True)
class SimConfig:
    nodes: int = 3
    loss: float = 0.02
    duplicate: float = 0.01
    reorder: float = 0.1
    late_duplicate: float = 0.02
    partitions: bool = True
    crashes: bool = True
    keys: int = 3
    clients: int = 4
    election_tick: int = 6
    read_only: str = "safe"
    pre_vote: bool = True
    check_quorum: bool = True
    client_timeout: int = 400  # steps after which a pending client op is recorded as info
    clock_drift: float | None = None  # rates in [1, 1 + drift]; None: 0.5 for safe, 0.2 for lease
    clock_jumps: bool | None = None  # None: on for safe (ReadIndex), off for lease
    pauses: bool = True
    disk_stalls: bool = True
    ack_before_persist: bool = False  # deliberately broken shell (tests show the invariants catch it)
    slow_leader: bool = False  # a leader's clock ticks at 1/4 speed (ReadIndex must not depend on clocks)
    target_leader: bool = False  # crashes and partitions hit the current leader 70% of the time
    max_size_per_msg: int = 1 << 20  # bytes of entries per MsgApp (small: appends carry a prefix only)
    max_inflight_msgs: int = 256
    scenarios: tuple[str, ...] = ()  # raftlab/sim/scenarios.py: targeted faults fired inside risky windows
    scenario_rate: float = 0.02  # chance per step that the scenario engine looks for an open window
    workload: str = "register"  # or "tree": the tree workload's ops (raftlab/sim/treeops.py), dtkv-dir model
    snapshot_entries: int = 10  # 0: no snapshots, no compaction
    snapshot_margin: int = 2
    # None: each run draws 48 (a snapshot of a few keys streams in several chunks) or 4096 (one)
    snapshot_chunk_bytes: int | None = None
    adversary: bool = False  # forge peer messages the validation layer must refuse (hostile.py)
    storage_faults: bool = False  # a crashed node's disk may lose a file or flip a bit (hostile.py)
    membership: bool = False  # random joint membership changes, learners, wiped re-adds (membership.py)
    spares: int = 0  # ids beyond the bootstrap voters, running as non-members (2 with --membership)

    def drift(self) -> float:
        return self.clock_drift if self.clock_drift is not None else (0.5 if self.read_only == "safe" else 0.2)

    def jumps(self) -> bool:
        return self.clock_jumps if self.clock_jumps is not None else self.read_only == "safe"


@dataclass(slots=True)
class Pending:
    process: int
    f: str
    key: str
    value: Any
    node: int
    started: int
    attempts: int = 0


@dataclass(slots=True)
class SimNode:
    id: int
    storage: MemoryStorage
    machine: NodeMachine[int]
    rate: float
    offset: float
    jumped: float = 0.0
    lag: float = 0.0  # ticks a slow leader's clock fell behind (SimConfig.slow_leader)
    up: bool = True
    paused_until: int = 0  # step: takes no events before it
    disk_until: int = 0  # step: a persist does not complete before it
    persisting: Persist | None = None
    busy: bool = True  # has input, time or a persist to handle: an idle node is not worked (speed)
    snapshot_write: tuple[int, SnapshotImage] | None = None  # (step it becomes durable, image)
    image: DiskImage | None = None  # a damaged disk, judged by the node's recovery on restart
    rejoin: bool = False  # repaired empty; durable until caught up (the manifest's flag in the node)

    @property
    def core(self) -> RaftCore:
        return self.machine.core

    def clock(self, now: float) -> float:
        return self.offset + self.rate * now + self.jumped - self.lag


class SimCluster:
    core_type: type[RaftCore] = RaftCore  # tests swap in deliberately broken cores to show the checks bite

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.voters = tuple(range(1, self.config.nodes + 1))  # the bootstrap configuration
        self.ids = tuple(range(1, self.config.nodes + 1 + self.config.spares))
        self.net = SimNetwork(random.Random(self.rng.randrange(2**32)), loss=self.config.loss,
                              duplicate=self.config.duplicate, reorder=self.config.reorder,
                              late_duplicate=self.config.late_duplicate)
        self.chunk_bytes = self.config.snapshot_chunk_bytes or self.rng.choice((48, 4096))
        self.now = 0.0  # global time, in ticks
        self.boots = 0
        self.nodes: dict[int, SimNode] = {i: self._boot(i, MemoryStorage()) for i in self.ids}
        self.invariants = Invariants(self.ids)
        self.events: list[Op] = []
        self.trace: deque[str] = deque(maxlen=40)
        self.step_no = 0
        self.pending: dict[int, Pending] = {}
        self.free_clients = list(range(self.config.clients))
        self.generations: dict[int, int] = {}
        self.request_ids = 0
        self.stats = {"elections": 0, "commits": 0, "crashes": 0, "partitions": 0, "ops": 0, "pauses": 0,
                      "disk_stalls": 0, "clock_jumps": 0, "scenarios": 0, "snapshots": 0, "installs": 0,
                      "forged": 0, "storage_faults": 0, "refused_starts": 0, "conf_changes": 0, "wipes": 0}
        self.leaders_seen: set[tuple[int, int]] = set()
        self.coverage = SimCoverage()  # only looks: which risky situations this run reached
        self.tree = TreeSpace(max(1, self.config.keys), 40) if self.config.workload == "tree" else None

    def _boot(self, node_id: int, storage: MemoryStorage, *, rejoin: bool = False) -> SimNode:
        c = self.config
        raft = RaftConfig(id=node_id, voters=self.voters, peers=self.ids, election_tick=c.election_tick, rejoin=rejoin,
                          read_only=c.read_only,  # type: ignore[arg-type]
                          pre_vote=c.pre_vote, check_quorum=c.check_quorum,
                          max_size_per_msg=c.max_size_per_msg, max_inflight_msgs=c.max_inflight_msgs,
                          snapshot_chunk_bytes=self.chunk_bytes)
        self.boots += 1
        rate = 1.0 + self.rng.random() * c.drift()
        offset = self.rng.random() * 100
        node = SimNode(id=node_id, storage=storage, machine=None, rate=rate, offset=offset,  # type: ignore[arg-type]
                       rejoin=rejoin)
        node.machine = NodeMachine(
            MachineConfig(raft=raft, tick_seconds=1.0, incarnation=self.boots,
                          unsafe_ack_before_fsync=c.ack_before_persist, snapshot_entries=c.snapshot_entries),
            storage, now=node.clock(self.now), rng=random.Random(self.rng.randrange(2**32)),
            core_type=self.core_type, snapshot=storage.image())
        return node

    # --- the event loop ----------------------------------------------------------------------

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def step(self) -> None:
        self.step_no += 1
        r = self.rng.random()
        cfg = self.config
        if r < 0.15:
            self.now += 1 / len(self.ids)  # each node ticks as often as when one random node ticked
            for n in self.nodes.values():
                n.busy = True
            if cfg.slow_leader and cfg.read_only != "lease":
                # ReadIndex assumes nothing about clocks: a leader's clock runs at a quarter of its rate
                for n in self.nodes.values():
                    if n.up and n.core.role is Role.LEADER:
                        n.lag += 0.75 * n.rate / len(self.ids)
        elif r < 0.82:
            msg = self.net.next_message()
            if msg is not None:
                target = self.nodes[msg.to]
                if target.up and self.net.connected(msg.from_, msg.to):
                    self.trace.append(f"deliver {msg.describe()}")
                    self.coverage.on_deliver(target, msg)
                    target.machine.receive(msg)
                    target.busy = True
        elif r < 0.955:
            self._client_op()
        elif r < 0.959 and cfg.partitions:
            self._partition_or_heal()
        elif r < 0.962 and cfg.crashes:
            self._crash_or_restart()
        elif r < 0.965 and cfg.pauses:
            node = self.nodes[self.rng.choice(self.ids)]
            node.paused_until = self.step_no + self.rng.randrange(20, 200)
            self.stats["pauses"] += 1
            self.trace.append(f"pause {node.id} until step {node.paused_until}")
        elif r < 0.968 and cfg.disk_stalls:
            node = self.nodes[self.rng.choice(self.ids)]
            node.disk_until = self.step_no + self.rng.randrange(20, 150)
            self.stats["disk_stalls"] += 1
            self.trace.append(f"disk of {node.id} stalls until step {node.disk_until}")
        elif r < 0.970 and cfg.jumps():
            node = self.nodes[self.rng.choice(self.ids)]
            jump = self.rng.randrange(1, 2 * cfg.election_tick)
            node.jumped += jump
            node.busy = True
            self.stats["clock_jumps"] += 1
            self.trace.append(f"clock of {node.id} jumps {jump} ticks")
        elif r < 0.975 and cfg.snapshot_entries:
            node = self.nodes[self.rng.choice(self.ids)]
            if node.up:
                node.machine.request_snapshot()
                node.busy = True
                self.trace.append(f"snapshot asked of {node.id}")
        elif r < 0.990 and cfg.adversary:
            self._forge()
        elif r < 0.995 and cfg.membership:
            leader = self.nodes.get(self._leader() or 0)
            line = change_membership(self.rng, leader, self.ids)
            if leader is not None:
                leader.busy = True
            self.stats["conf_changes"] += " proposes " in line
            self.trace.append(line)
        if cfg.scenarios and self.rng.random() < cfg.scenario_rate:
            fire(self)
        worked = []  # the nodes whose log changed: the invariants check the pairs with one of them
        for node in self.nodes.values():
            if node.up and (node.busy or node.snapshot_write is not None) and node.paused_until <= self.step_no:
                if self._snapshot_work(node) | self._work(node):
                    worked.append(node.id)
                node.busy = node.persisting is not None
        self._expire_clients()
        self.invariants.check(self.nodes, self.step_no, worked)

    def _forge(self) -> None:
        node = self.nodes[self.rng.choice(self.ids)]
        forged = forge(self.rng, node.core, self.ids) if node.up else None
        if forged is not None:
            kind, msg = forged
            self.stats["forged"] += 1
            self.trace.append(f"forge {kind}: {msg.describe()}")
            node.machine.receive(msg)
            node.busy = True

    def _partition_or_heal(self) -> None:
        if self.net.partitioned():
            if self.rng.random() < 0.3:  # partitions outlast election timeouts now and then
                self.net.heal()
                self.trace.append("heal")
        else:
            side = set(self.rng.sample(self.ids, self.rng.randrange(1, len(self.ids) // 2 + 1)))
            leader = self._leader() if self.config.target_leader and self.rng.random() < 0.7 else None
            if leader is not None and leader not in side:  # the leader ends up in the minority
                side = {leader, *sorted(side)[1:]}
            self.net.partition(side, set(self.ids) - side)
            self.stats["partitions"] += 1
            self.trace.append(f"partition {sorted(side)}")

    def _crash_or_restart(self) -> None:
        down = [n for n in self.nodes.values() if not n.up]
        if down and (self.rng.random() < 0.7 or len(down) * 2 >= len(self.ids)):
            self.restart(self.rng.choice(down).id)
            return
        leader = self._leader() if self.config.target_leader and self.rng.random() < 0.7 else None
        self.crash(leader or self.rng.choice(self.ids))

    def crash(self, node_id: int) -> None:
        """The node stops: it keeps what it synced (its hard state through the meta file's codec);
        with ``storage_faults``, its disk may then lose a file or flip a bit (hostile.py)."""
        node = self.nodes[node_id]
        if not node.up:
            return
        node.up = False
        node.persisting = None  # a write still in flight never completes
        node.snapshot_write = None  # a snapshot still being written is lost with the process
        before = node.storage.last_index()
        node.storage = durable(node.storage)
        self.coverage.on_crash(node.id, before, node.storage.last_index())
        self.stats["crashes"] += 1
        if self.config.storage_faults and self.rng.random() < 0.5 and not any(
                n.image is not None or n.rejoin for n in self.nodes.values()):
            node.image = DiskImage.of(node.storage)
            self.trace.append(f"disk of {node.id}: {node.image.damage(self.rng)}")
            self.stats["storage_faults"] += 1
        if (self.config.membership and node.image is None and not node.rejoin and self.rng.random() < 0.5
                and may_wipe(node.id, self.nodes)):
            node.storage = MemoryStorage()  # kill + wipe: a removed member's disk is gone; it
            node.rejoin = True  # restarts as `node repair --empty` leaves it (no vote until caught up)
            self.stats["wipes"] += 1
            self.trace.append(f"disk of {node.id} wiped (no configuration names it)")
        self.net.drop_for(node.id)
        for p in [p for p in self.pending.values() if p.node == node.id]:
            self._complete(p, OpType.INFO, error="node crashed")
        self.trace.append(f"crash {node.id}")

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.up:
            self.nodes[node_id] = self._restart(node)

    def _restart(self, node: SimNode) -> SimNode:
        """Boot a crashed node; a damaged disk goes through the node's recovery first, and a
        refusal through the documented repair (an empty member that rejoins)."""
        if node.image is None:
            self.trace.append(f"restart {node.id}")
            return self._boot(node.id, node.storage, rejoin=node.rejoin)
        recovered = node.image.recover()
        if isinstance(recovered, StorageError):
            self.stats["refused_starts"] += 1
            self.trace.append(f"restart {node.id}: refused ({recovered}); repaired empty, rejoining")
            return self._boot(node.id, MemoryStorage(), rejoin=True)
        self.trace.append(f"restart {node.id}: recovered entries {recovered.first_index()}.."
                          f"{recovered.last_index()} from the damaged disk")
        return self._boot(node.id, recovered)

    def _leader(self) -> int | None:
        """The up node that leads the highest term (None: no leader)."""
        leaders = [(n.core.term, n.id) for n in self.nodes.values() if n.up and n.core.role is Role.LEADER]
        return max(leaders)[1] if leaders else None

    # --- the shell, as impl/node.py does it ---------------------------------------------------

    def _work(self, node: SimNode) -> bool:
        """Handle the node's inputs as the shell does; True when its log changed."""
        machine = node.machine
        machine.tick(node.clock(self.now))
        changed = False
        while True:
            if node.persisting is None:
                asked = machine.read_context
                node.persisting = machine.ready()
                if machine.read_context != asked:
                    self.coverage.on_read(node, machine.read_context)
                if node.persisting is None:
                    break
                self.coverage.on_ready(node, node.persisting.ready, self.nodes)
                self._released(node, node.persisting)
                if node.persisting.entries:  # written at once (the page cache), synced below
                    node.storage.append(node.persisting.entries)
                    changed = True
                if node.persisting.hard_state is not None:
                    node.storage.set_hard_state(node.persisting.hard_state)
            if node.disk_until > self.step_no:
                break  # the disk is stalled: the sync completes later; a crash now loses the writes
            persist, node.persisting = node.persisting, None
            for chunk in persist.snapshot_chunks:
                node.storage.receive(chunk)
            installed = node.storage.install(persist.install) if persist.install is not None else None
            if installed is not None:
                changed = True
                self.stats["installs"] += 1
                self.trace.append(f"node {node.id} installs {installed.meta.describe()}")
                self.invariants.on_install(node.id, installed, self.step_no)
            if persist.must_sync:
                node.storage.sync()
            machine.persisted(persist, installed)
            if node.rejoin and not node.core.rejoining:  # caught up, its vote synced: as node.py does
                node.rejoin = False
            for e in persist.ready.committed:
                self.invariants.on_apply(node.id, e, self.step_no, node.core.term)
                if e.type is EntryType.NORMAL and e.data:
                    self.stats["commits"] += 1
            self._send(node)
        return changed

    def _snapshot_work(self, node: SimNode) -> bool:
        """The background snapshot writer: take the machine's image, make it durable a few steps
        later, then compact the log (as impl/node.py does between two Readys); True when it did."""
        compacted = False
        if node.snapshot_write is None:
            image = node.machine.take_snapshot()
            if image is not None:
                node.snapshot_write = (self.step_no + self.rng.randrange(1, 30), image)
        elif node.snapshot_write[0] <= self.step_no:
            image = node.snapshot_write[1]
            node.snapshot_write = None
            meta = node.storage.save_snapshot(image)
            node.machine.snapshot_saved(meta)
            node.storage.compact(meta.index - self.config.snapshot_margin)
            self.stats["snapshots"] += 1
            self.trace.append(f"node {node.id}: {meta.describe()} durable; log starts at {node.storage.first_index()}")
            compacted = True
        self._send(node)
        return compacted

    def _released(self, node: SimNode, persist: Persist) -> None:
        """A Ready was taken: note a new leader, send what may leave before the persist."""
        ss = persist.ready.soft_state
        if ss is not None and ss.role is Role.LEADER:
            key = (node.core.term, node.id)
            if key not in self.leaders_seen:
                self.leaders_seen.add(key)
                self.stats["elections"] += 1
                self.invariants.on_leader(node.core.term, node.id, self.step_no)
        self._send(node)

    def _send(self, node: SimNode) -> None:
        for m in node.machine.take_messages():
            self.invariants.on_send(node, m)  # an ack or vote sent before its persist is a violation
            self.net.send(m)
        for reply in node.machine.take_replies():
            self._on_reply(node, reply)

    # --- clients -----------------------------------------------------------------------------

    def _client_op(self) -> None:
        if not self.free_clients:
            return
        client = self.free_clients.pop(self.rng.randrange(len(self.free_clients)))
        process = client + self.config.clients * self.generations.get(client, 0)
        value: Any = None
        if self.tree is not None:
            op = self.tree.next_op(self.rng)
            f, key, value = op["f"], op["key"], op.get("value")
        else:
            f = self.rng.choice(("read", "write", "cas"))
            key = f"k{self.rng.randrange(self.config.keys)}"
            if f == "write":
                value = self.rng.randrange(5)
            elif f == "cas":
                value = [self.rng.randrange(5), self.rng.randrange(5)]
        up = [n for n in self.nodes.values() if n.up]
        if not up:
            self.free_clients.append(client)
            return
        node = self.rng.choice(up)
        p = Pending(process=process, f=f, key=key, value=value, node=node.id, started=self.step_no)
        self._record(OpType.INVOKE, p, value)
        self.pending[process] = p
        self.stats["ops"] += 1
        self._submit(p)

    def _submit(self, p: Pending) -> None:
        command: Command
        if self.tree is not None:
            command = treeops.command(p.f, p.key, p.value)
        elif p.f == "read":
            command = Get(key=p.key)
        elif p.f == "write":
            command = Put(key=p.key, value=str(p.value).encode())
        else:
            command = Cas(key=p.key, expected=str(p.value[0]).encode(), new=str(p.value[1]).encode())
        self.request_ids += 1
        node = self.nodes[p.node]
        node.machine.submit(Request(id=self.request_ids, op=command.op, command=command), p.process)
        node.busy = True

    def _on_reply(self, node: SimNode, reply: Reply[int]) -> None:
        p = self.pending.get(reply.handle)
        if p is None or p.node != node.id:
            return
        error = reply.error
        if error is None:
            if self.tree is not None:
                self._complete(p, OpType.OK, value=treeops.output(p.f, p.value, reply.body))
                return
            value = reply.body.get("value")
            self._complete(p, OpType.OK, value=int(value) if value is not None else None)
        elif error == ErrorKind.NOT_LEADER:
            hinted = self.nodes.get(reply.body.get("leader", 0))
            if p.attempts == 0 and hinted is not None and hinted.up and hinted is not node:
                p.attempts += 1  # like KvClient: a refusal with a leader hint is retried there once
                p.node = hinted.id
                self._submit(p)
            else:
                self._complete(p, OpType.FAIL, error="not leader")
        else:  # cas-mismatch, or dropped: definitely not applied (reads change nothing anyway)
            self._complete(p, OpType.FAIL, error=f"{error}: {reply.body.get('message', '')}")

    def _expire_clients(self) -> None:
        for p in list(self.pending.values()):
            if self.step_no - p.started > self.config.client_timeout:
                self._complete(p, OpType.INFO, error="timeout")

    def _complete(self, p: Pending, type_: OpType, *, value: Any = None, error: str | None = None) -> None:
        out = value if p.f in READ_FS else p.value
        self._record(type_, p, out, error=error)
        del self.pending[p.process]
        client = p.process % self.config.clients
        if type_ is OpType.INFO:
            # Jepsen: a process whose op ended in info never invokes again; the client gets a new one
            self.generations[client] = self.generations.get(client, 0) + 1
        self.free_clients.append(client)

    def _record(self, type_: OpType, p: Pending, value: Any, *, error: str | None = None) -> None:
        self.trace.append(f"client {p.process} {type_.value} {p.f} {p.key} {value!r} at node {p.node}"
                          + (f" ({error})" if error else ""))
        self.events.append(Op(type=type_, process=p.process, f=p.f, key=p.key, value=value,
                              time=self.step_no, error=error))

    def history(self) -> History:
        return History(self.events)

    def replay_command(self, steps: int) -> str:
        c = self.config
        flags = "" if c.read_only == "safe" else f" --read-only {c.read_only}"
        flags += "" if c.crashes else " --no-crashes"
        flags += "" if c.partitions else " --no-partitions"
        flags += "" if c.pauses else " --no-pauses"
        flags += "" if c.disk_stalls else " --no-disk-stalls"
        flags += "" if c.clock_drift is None else f" --clock-drift {c.clock_drift}"
        flags += "" if c.clock_jumps is None else (" --clock-jumps" if c.clock_jumps else " --no-clock-jumps")
        flags += "" if c.workload == "register" else f" --workload {c.workload}"
        default = SimConfig()
        flags += "" if c.snapshot_entries == default.snapshot_entries else f" --snapshot-entries {c.snapshot_entries}"
        flags += "" if c.snapshot_margin == default.snapshot_margin else f" --snapshot-margin {c.snapshot_margin}"
        flags += "" if c.late_duplicate == default.late_duplicate else f" --late-duplicate {c.late_duplicate}"
        flags += " --adversary" if c.adversary else ""
        flags += " --storage-faults" if c.storage_faults else ""
        flags += " --membership" if c.membership else ""
        return f"raftlab sim --seed {self.seed} --steps {steps} --nodes {c.nodes} --loss {c.loss}{flags}"


def durable(storage: MemoryStorage) -> MemoryStorage:
    """What a restarted node finds: the synced entries, and the synced hard state read back
    through the meta file's codec (so a mistake in impl/storage/meta.py shows here too)."""
    after = storage.crash()
    after.set_hard_state(load_meta_bytes(encode_meta(after.initial_state()), "meta"))
    after.sync()
    return after


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOutcome:
    """The verdict of one simulated run: invariants first, then linearizability of the history."""

    seed: int
    steps: int
    valid: bool | str  # True, False or "unknown"
    explanation: str
    replay: str
    stats: dict[str, int]
    last_events: tuple[str, ...]
    coverage: dict[str, Any] = field(default_factory=dict)  # raftlab/coverage.py SIM_SITUATIONS reached

    def summary(self) -> str:
        word = {True: "valid", False: "VIOLATION", "unknown": "unknown"}[self.valid]  # type: ignore[index]
        s = self.stats
        return (f"seed {self.seed}: {self.steps} steps, {s['elections']} elections, {s['commits']} entries applied, "
                f"{s['ops']} client ops, {s['crashes']} crashes, {s['partitions']} partitions, {s['pauses']} pauses, "
                f"{s['disk_stalls']} disk stalls, {s['clock_jumps']} clock jumps, {s.get('snapshots', 0)} snapshots, "
                f"{s.get('installs', 0)} installs" + (f", {s['scenarios']} scenarios" if s.get("scenarios") else "")
                + f": {word}")

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": self.steps, "valid": self.valid, "explanation": self.explanation,
                "replay": self.replay, "stats": self.stats, "last_events": list(self.last_events),
                "coverage": self.coverage}


def simulate(seed: int, steps: int, config: SimConfig | None = None, *, time_limit: float | None = 60.0,
             cluster_type: type[SimCluster] | None = None) -> SimOutcome:
    """Run ``steps`` events, checking invariants after each, then the history with the kv model."""
    cluster = (cluster_type or SimCluster)(seed, config)
    valid: bool | str = True
    explanation = ""
    done = 0
    try:
        while done < steps:
            done += 1
            cluster.step()
    except AssertionError as e:  # InvariantViolation, or a core assertion (commit past the log, ...)
        valid, explanation = False, f"invariant violated: {e}"
    if valid is True:
        try:
            from raftlab.checker import check
        except ImportError:  # the checker is a separate part; without it only invariants are judged
            pass
        else:
            if cluster.config.workload == "tree":
                from raftlab.checker.tree import DtkvDirs

                result = check(cluster.history(), DtkvDirs(), time_limit=time_limit, workers=1)
            else:
                result = check(cluster.history(), "kv", time_limit=time_limit)
            valid, explanation = result.valid, result.explanation
    return SimOutcome(seed=seed, steps=done, valid=valid, explanation=explanation,
                      replay=cluster.replay_command(done), stats=dict(cluster.stats),
                      last_events=tuple(cluster.trace), coverage=cluster.coverage.to_dict())

