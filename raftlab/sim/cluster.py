"""SimCluster: N Raft cores on in-memory storage, driven by one seeded event stream.

Theory of operation. Every step the seeded ``random.Random`` picks one event: tick a node,
deliver (or drop, duplicate, reorder) an in-flight message, start a client operation, partition
or heal the network, crash a node (it loses what it wrote but did not sync) or restart it. Each
node's Ready is processed exactly as the real shell does (send_now, persist + sync,
send_after_persist, apply, serve reads, advance), so the only difference from production is that
time and the network are ours. After every event ``invariants.check`` runs; client operations are
recorded as a ``History`` (logical time) that the linearizability checker judges at the end.

The same seed gives the same run, event for event: the replay command is printed on failure.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from raftlab.coverage import SimCoverage
from raftlab.history import History, Op, OpType
from raftlab.impl.raft import Entry, EntryType, NotLeader, RaftConfig, RaftCore, Role
from raftlab.impl.storage.memory import MemoryStorage

from .invariants import Invariants
from .network import SimNetwork


@dataclass(slots=True, kw_only=True)
class SimConfig:
    nodes: int = 3
    loss: float = 0.02
    duplicate: float = 0.01
    reorder: float = 0.1
    partitions: bool = True
    crashes: bool = True
    keys: int = 3
    clients: int = 4
    election_tick: int = 6
    read_only: str = "safe"
    pre_vote: bool = True
    check_quorum: bool = True
    client_timeout: int = 400  # steps after which a pending client op is recorded as info
    ack_before_persist: bool = False  # deliberately broken shell (tests show the invariants catch it)
    slow_leader: bool = False  # a leader's clock ticks at 1/4 speed (ReadIndex must not depend on clocks)
    target_leader: bool = False  # crashes and partitions hit the current leader 70% of the time
    max_size_per_msg: int = 1 << 20  # bytes of entries per MsgApp (small: appends carry a prefix only)
    max_inflight_msgs: int = 256


@dataclass(slots=True)
class Pending:
    process: int
    f: str
    key: str
    value: Any
    node: int
    started: int
    term: int = 0
    index: int = 0
    context: bytes = b""


@dataclass(slots=True)
class SimNode:
    id: int
    storage: MemoryStorage
    core: RaftCore
    kv: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    up: bool = True


class SimCluster:
    core_type: type[RaftCore] = RaftCore  # tests swap in deliberately broken cores to show the checks bite

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.ids = tuple(range(1, self.config.nodes + 1))
        self.net = SimNetwork(random.Random(self.rng.randrange(2**32)), loss=self.config.loss,
                              duplicate=self.config.duplicate, reorder=self.config.reorder)
        self.nodes: dict[int, SimNode] = {i: self._boot(i, MemoryStorage()) for i in self.ids}
        self.invariants = Invariants(self.ids)
        self.events: list[Op] = []
        self.trace: deque[str] = deque(maxlen=40)
        self.step_no = 0
        self.pending: dict[int, Pending] = {}
        self.free_clients = list(range(self.config.clients))
        self.generations: dict[int, int] = {}
        self.context_seq = 0
        self.stats = {"elections": 0, "commits": 0, "crashes": 0, "partitions": 0, "ops": 0}
        self.leaders_seen: set[tuple[int, int]] = set()
        self.coverage = SimCoverage()  # only looks: which risky situations this run reached

    def _boot(self, node_id: int, storage: MemoryStorage) -> SimNode:
        cfg = RaftConfig(id=node_id, voters=self.ids, election_tick=self.config.election_tick,
                         read_only=self.config.read_only,  # type: ignore[arg-type]
                         pre_vote=self.config.pre_vote, check_quorum=self.config.check_quorum,
                         max_size_per_msg=self.config.max_size_per_msg,
                         max_inflight_msgs=self.config.max_inflight_msgs)
        core = self.core_type(cfg, storage, rng=random.Random(self.rng.randrange(2**32)))
        return SimNode(id=node_id, storage=storage, core=core)

    # --- the event loop ----------------------------------------------------------------------

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def step(self) -> None:
        self.step_no += 1
        r = self.rng.random()
        cfg = self.config
        if r < 0.15:
            node = self.nodes[self.rng.choice(self.ids)]
            if cfg.read_only == "lease":
                # lease reads assume bounded clock drift: clocks tick in lockstep (as often in total)
                if node.id == self.ids[0]:
                    for n in self.nodes.values():
                        if n.up:
                            n.core.tick()
                    self.trace.append("tick all")
            elif node.up and not (cfg.slow_leader and node.core.role is Role.LEADER and self.rng.random() < 0.75):
                # ReadIndex assumes nothing about clocks: each node ticks at its own pace
                node.core.tick()
                self.trace.append(f"tick {node.id}")
        elif r < 0.82:
            msg = self.net.next_message()
            if msg is not None:
                target = self.nodes[msg.to]
                if target.up and self.net.connected(msg.from_, msg.to):
                    self.trace.append(f"deliver {msg.describe()}")
                    self.coverage.on_deliver(target, msg)
                    target.core.step(msg)
        elif r < 0.955:
            self._client_op()
        elif r < 0.959 and cfg.partitions:
            if self.net.partitioned():
                if self.rng.random() < 0.3:  # partitions outlast election timeouts now and then
                    self.net.heal()
                    self.trace.append("heal")
            else:
                side = set(self.rng.sample(self.ids, self.rng.randrange(1, len(self.ids) // 2 + 1)))
                leader = self._leader() if cfg.target_leader and self.rng.random() < 0.7 else None
                if leader is not None and leader not in side:  # the leader ends up in the minority
                    side = {leader, *sorted(side)[1:]}
                self.net.partition(side, set(self.ids) - side)
                self.stats["partitions"] += 1
                self.trace.append(f"partition {sorted(side)}")
        elif r < 0.962 and cfg.crashes:
            self._crash_or_restart()
        for node in self.nodes.values():
            if node.up:
                self._process_ready(node)
        self._expire_clients()
        self.invariants.check(self.nodes, self.step_no)

    def _crash_or_restart(self) -> None:
        down = [n for n in self.nodes.values() if not n.up]
        if down and (self.rng.random() < 0.7 or len(down) * 2 >= len(self.ids)):
            node = self.rng.choice(down)
            self.nodes[node.id] = self._boot(node.id, node.storage)
            self.trace.append(f"restart {node.id}")
            return
        leader = self._leader() if self.config.target_leader and self.rng.random() < 0.7 else None
        node = self.nodes[leader or self.rng.choice(self.ids)]
        if node.up:
            node.up = False
            before = node.storage.last_index()
            node.storage = node.storage.crash()
            self.coverage.on_crash(node.id, before, node.storage.last_index())
            self.stats["crashes"] += 1
            self.net.drop_for(node.id)
            for p in [p for p in self.pending.values() if p.node == node.id]:
                self._complete(p, OpType.INFO, error="node crashed")
            self.trace.append(f"crash {node.id}")

    def _leader(self) -> int | None:
        """The up node that leads the highest term (None: no leader)."""
        leaders = [(n.core.term, n.id) for n in self.nodes.values() if n.up and n.core.role is Role.LEADER]
        return max(leaders)[1] if leaders else None

    # --- the shell, as impl/node.py does it ---------------------------------------------------

    def _process_ready(self, node: SimNode) -> None:
        core = node.core
        while core.has_ready():
            rd = core.ready()
            self.coverage.on_ready(node, rd, self.nodes)
            if rd.soft_state is not None and rd.soft_state.role is Role.LEADER:
                key = (core.term, node.id)
                if key not in self.leaders_seen:
                    self.leaders_seen.add(key)
                    self.stats["elections"] += 1
                    self.invariants.on_leader(core.term, node.id, self.step_no)
            for m in rd.send_now:
                self.net.send(m)
            if self.config.ack_before_persist:
                for m in rd.send_after_persist:
                    self.invariants.on_send_after_persist(node, m)
                    self.net.send(m)
            if rd.entries:
                node.storage.append(rd.entries)
            if rd.hard_state is not None:
                node.storage.set_hard_state(rd.hard_state)
            if rd.entries or rd.must_sync:
                node.storage.sync()
            if not self.config.ack_before_persist:
                for m in rd.send_after_persist:
                    self.invariants.on_send_after_persist(node, m)
                    self.net.send(m)
            for e in rd.committed:
                self._apply(node, e)
            for rs in rd.read_states:
                self._serve_read(node, rs.context, rs.index)
            for ctx in rd.dropped_reads:
                self._fail_read(node, ctx)
            core.advance(rd)
            self._serve_waiting_reads(node)

    def _apply(self, node: SimNode, e: Entry) -> None:
        node.applied = e.index
        self.invariants.on_apply(node.id, e, self.step_no, node.core.term)
        if e.type is not EntryType.NORMAL or not e.data:
            return
        cmd = json.loads(e.data)
        key, result = cmd["key"], None
        if cmd["f"] == "write":
            node.kv[key] = cmd["value"]
            result = True
        elif cmd["f"] == "cas":
            expected, new = cmd["value"]
            result = node.kv.get(key) == expected
            if result:
                node.kv[key] = new
        self.stats["commits"] += 1
        for p in list(self.pending.values()):
            if p.node == node.id and p.index == e.index and p.f != "read":
                if p.term == e.term:
                    self._complete(p, OpType.OK if result else OpType.FAIL,
                                   error=None if result else "cas mismatch")
                else:
                    self._complete(p, OpType.FAIL, error="proposal lost to another leader")

    # --- clients -----------------------------------------------------------------------------

    def _client_op(self) -> None:
        if not self.free_clients:
            return
        client = self.free_clients.pop(self.rng.randrange(len(self.free_clients)))
        process = client + self.config.clients * self._generation(client)
        f = self.rng.choice(("read", "write", "cas"))
        key = f"k{self.rng.randrange(self.config.keys)}"
        value: Any = None
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
        for _attempt in range(2):  # like KvClient: a refusal with a leader hint is retried there once
            try:
                if f == "read":
                    self.context_seq += 1
                    p.context = self.context_seq.to_bytes(8, "big")
                    self.coverage.on_read(node, p.context)
                    node.core.read_index(p.context)
                else:
                    data = json.dumps({"f": f, "key": key, "value": value}).encode()
                    p.term, p.index = node.core.propose(data)
                return
            except NotLeader as e:
                hinted = self.nodes.get(e.leader_hint)
                if hinted is None or not hinted.up or hinted is node:
                    break
                node = hinted
                p.node = node.id
        self._complete(p, OpType.FAIL, error="not leader")

    def _generation(self, client: int) -> int:
        return self.generations.get(client, 0)

    def _serve_read(self, node: SimNode, context: bytes, index: int) -> None:
        for p in self.pending.values():
            if p.node == node.id and p.context == context:
                p.index = index
                p.term = -1  # confirmed: serve once applied >= index
        self._serve_waiting_reads(node)

    def _serve_waiting_reads(self, node: SimNode) -> None:
        for p in list(self.pending.values()):
            if p.node == node.id and p.f == "read" and p.term == -1 and node.applied >= p.index:
                self._complete(p, OpType.OK, value=node.kv.get(p.key))

    def _fail_read(self, node: SimNode, context: bytes) -> None:
        for p in list(self.pending.values()):
            if p.node == node.id and p.context == context:
                self._complete(p, OpType.FAIL, error="read dropped")

    def _expire_clients(self) -> None:
        for p in list(self.pending.values()):
            if self.step_no - p.started > self.config.client_timeout:
                self._complete(p, OpType.INFO, error="timeout")

    def _complete(self, p: Pending, type_: OpType, *, value: Any = None, error: str | None = None) -> None:
        out = value if p.f == "read" else p.value
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
        return f"raftlab sim --seed {self.seed} --steps {steps} --nodes {c.nodes} --loss {c.loss}{flags}"


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
                f"{s['ops']} client ops, {s['crashes']} crashes, {s['partitions']} partitions: {word}")

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
            result = check(cluster.history(), "kv", time_limit=time_limit)
            valid, explanation = result.valid, result.explanation
    return SimOutcome(seed=seed, steps=done, valid=valid, explanation=explanation,
                      replay=cluster.replay_command(done), stats=dict(cluster.stats),
                      last_events=tuple(cluster.trace), coverage=cluster.coverage.to_dict())

