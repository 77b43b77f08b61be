"""Transcript commands over a handful of node machines whose every message is delivered by hand.

This is etcd's rafttest ``InteractionEnv`` in Python: ``tests/raft/testdata/*.txt`` are sequences
of commands (one per block), each followed by the output it must produce, the cores' log lines
included. Each node is the real ``impl.machine.NodeMachine`` (the class the node process runs)
on in-memory storage. Nothing moves unless a command moves it: ``process-ready`` persists a
node's Ready (entries, hard state, sync), hands it back as persisted and puts its messages in
flight, ``deliver-msgs`` steps them into their targets, ``stabilize`` repeats both until the
cluster is quiet. So a scenario found by the simulator (a seed) can be written down as a short,
reviewable transcript. Each node has its own clock, one second per tick.

Commands (``key=value`` options after the positional arguments):
  add-nodes N [election-tick=10] [heartbeat-tick=1] [pre-vote=true] [check-quorum=true]
      [read-only=safe|lease] [max-size-per-msg=B] [max-inflight-msgs=K] [snapshot-chunk-bytes=B]
  campaign ID | tick ID [N] (N ticks, one at a time) | stall ID N (stopped N ticks: takes what arrived
      meanwhile and the elapsed time at once, as after SIGSTOP/SIGCONT) | propose ID DATA (raw entry data, straight to the core)
  put ID KEY VALUE | get ID KEY (client requests through the machine; replies print as
      ``reply ...`` when sent) | read-index ID CTX (raw, straight to the core) | transfer-leader FROM TO
  process-ready ID... | deliver-msgs ID... [type=APP] | drop-msgs [from=A] [to=B] [type=T]
  stabilize [ID...] | partition A,B C,D | heal | crash ID | restart ID | raft-log ID | status ID
  snapshot ID [margin=M] (the node snapshots its tree now, the write completes, the log is compacted
      to M entries below it) | hold-msgs [to=B] [type=T] [copy=true] (take messages, or copies of
      them, out of flight to deliver later) | release-msgs (put the held ones back in flight: late duplicates, stale snapshots)
  forge TYPE from=A to=B term=T [index= log-term= commit= reject=true hint= hint-term=
      entries=T/I,T/I] (a message no member sent, straight into B: the validation layer's input)
  cut-log ID N (crash ID; its disk keeps only entries 1..N, as a lost synced tail would)
  refused ID (the node's counts of refused messages, by kind)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raftlab.impl.dtkv.commands import Get, Put
from raftlab.impl.machine import MachineConfig, NodeMachine
from raftlab.impl.net.codec import Request
from raftlab.impl.raft import Entry, Message, MsgType, NotLeader, RaftConfig, RaftCore, Role
from raftlab.impl.storage.memory import MemoryStorage


class InteractionError(ValueError):
    """A transcript command that cannot run (unknown command, bad argument, unknown node)."""


@dataclass(slots=True)
class EnvNode:
    id: int
    storage: MemoryStorage
    machine: NodeMachine[str]
    config: RaftConfig
    incarnation: int = 0
    now: float = 0.0  # this node's clock, in seconds (= ticks)
    applied: list[str] = field(default_factory=list)
    up: bool = True

    @property
    def core(self) -> RaftCore:
        return self.machine.core


class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[int, EnvNode] = {}
        self.in_flight: list[Message] = []
        self.groups: list[set[int]] = []  # a partition: messages between groups are dropped
        self.out: list[str] = []
        self.request_ids = 0
        self.held: list[Message] = []

    # --- the entry point ---------------------------------------------------------------------

    def handle(self, line: str) -> str:
        words = line.split()
        if not words:
            raise InteractionError("empty command")
        name, args = words[0], [w for w in words[1:] if "=" not in w]
        opts = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise InteractionError(f"unknown command {name!r}")
        self.out = []
        handler(args, opts)
        return "\n".join(self.out) if self.out else "ok"

    def _node(self, word: str) -> EnvNode:
        try:
            return self.nodes[int(word)]
        except (ValueError, KeyError):
            raise InteractionError(f"no node {word!r}") from None

    def _ids(self, args: list[str]) -> list[int]:
        return [self._node(a).id for a in args] if args else sorted(self.nodes)

    def _logger(self, text: str) -> None:
        self.out.append(f"INFO {text}")

    # --- building and breaking the cluster -----------------------------------------------------

    def cmd_add_nodes(self, args: list[str], opts: dict[str, str]) -> None:
        count = int(args[0])
        ids = tuple(range(1, count + 1))

        def flag(name: str, default: bool) -> bool:
            return opts.get(name, str(default).lower()) == "true"

        for i in ids:
            cfg = RaftConfig(id=i, voters=ids, election_tick=int(opts.get("election-tick", 10)),
                             heartbeat_tick=int(opts.get("heartbeat-tick", 1)),
                             pre_vote=flag("pre-vote", True), check_quorum=flag("check-quorum", True),
                             read_only=opts.get("read-only", "safe"),  # type: ignore[arg-type]
                             max_size_per_msg=int(opts.get("max-size-per-msg", 1 << 20)),
                             max_inflight_msgs=int(opts.get("max-inflight-msgs", 256)),
                             snapshot_chunk_bytes=int(opts.get("snapshot-chunk-bytes", 256 << 10)))
            self._boot(i, cfg, MemoryStorage())
        self.out.append(f"added nodes {', '.join(map(str, ids))}")

    def _boot(self, node_id: int, cfg: RaftConfig, storage: MemoryStorage) -> None:
        old = self.nodes.get(node_id)
        incarnation = old.incarnation + 1 if old is not None else 0
        now = old.now if old is not None else 0.0
        machine: NodeMachine[str] = NodeMachine(
            MachineConfig(raft=cfg, tick_seconds=1.0, incarnation=incarnation), storage, now=now,
            rng=random.Random(node_id), logger=self._logger, snapshot=storage.image())
        self.nodes[node_id] = EnvNode(id=node_id, storage=storage, machine=machine, config=cfg,
                                      incarnation=incarnation, now=now)

    def cmd_crash(self, args: list[str], opts: dict[str, str]) -> None:
        node = self._node(args[0])
        node.up = False
        node.storage = node.storage.crash()
        self.in_flight = [m for m in self.in_flight if node.id not in (m.to, m.from_)]
        self.out.append(f"crashed {node.id}: kept {node.storage.last_index()} synced entries, "
                        f"{node.storage.initial_state().describe()}")

    def cmd_cut_log(self, args: list[str], opts: dict[str, str]) -> None:
        node = self._node(args[0])
        self.cmd_crash(args[:1], opts)
        keep = int(args[1])
        node.storage = MemoryStorage(node.storage.entries(1, keep + 1), node.storage.initial_state())
        self.out.append(f"cut the log of {node.id} to {node.storage.last_index()} entries")

    def cmd_restart(self, args: list[str], opts: dict[str, str]) -> None:
        node = self._node(args[0])
        self._boot(node.id, node.config, node.storage)
        self.out.append(f"restarted {node.id}")

    def cmd_partition(self, args: list[str], opts: dict[str, str]) -> None:
        self.groups = [{int(x) for x in a.split(",")} for a in args]
        self.out.append("partitioned " + " | ".join(",".join(map(str, sorted(g))) for g in self.groups))

    def cmd_heal(self, args: list[str], opts: dict[str, str]) -> None:
        # what was sent across the cut is gone, as a dropped packet would be
        for m in [m for m in self.in_flight if not self._connected(m.from_, m.to)]:
            self.out.append(f"dropped: {m.describe()}")
        self.in_flight = [m for m in self.in_flight if self._connected(m.from_, m.to)]
        self.groups = []
        self.out.append("healed")

    def _connected(self, a: int, b: int) -> bool:
        return not self.groups or any(a in g and b in g for g in self.groups)

    # --- inputs -------------------------------------------------------------------------------

    def cmd_campaign(self, args: list[str], opts: dict[str, str]) -> None:
        self._node(args[0]).core.campaign()

    def cmd_tick(self, args: list[str], opts: dict[str, str]) -> None:
        node = self._node(args[0])
        for _ in range(int(args[1]) if len(args) > 1 else 1):
            self._advance(node, 1)

    def cmd_stall(self, args: list[str], opts: dict[str, str]) -> None:
        """The node was stopped for N ticks: what was in flight to it arrived meanwhile (the
        kernel kept it), then it resumes and takes all of it and the elapsed time at once."""
        node = self._node(args[0])
        for m in self._take({node.id}, {}):
            if self._connected(m.from_, m.to):
                node.machine.receive(m)
        self.out.append(f"{node.id} resumes after {args[1]} ticks")
        self._advance(node, int(args[1]))

    def _advance(self, node: EnvNode, ticks: int) -> None:
        node.now += ticks
        node.machine.tick(node.now)
        node.machine.process_inputs()

    def cmd_forge(self, args: list[str], opts: dict[str, str]) -> None:
        def num(name: str) -> int:
            return int(opts.get(name, 0))

        entries = tuple(Entry(term=int(t), index=int(i), data=b"forged")
                        for t, i in (e.split("/") for e in opts["entries"].split(","))) if "entries" in opts else ()
        m = Message(type=MsgType[args[0]], to=num("to"), from_=num("from"), term=num("term"), index=num("index"),
                    log_term=num("log-term"), commit=num("commit"), reject=opts.get("reject") == "true",
                    reject_hint=num("hint"), hint_term=num("hint-term"), entries=entries)
        self.out.append(f"forged: {m.describe()}")
        target = self._node(opts["to"])
        target.machine.receive(m)
        target.machine.process_inputs()

    def cmd_refused(self, args: list[str], opts: dict[str, str]) -> None:
        counts = self._node(args[0]).core.refusals.counts
        self.out.append(", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none refused")

    def cmd_put(self, args: list[str], opts: dict[str, str]) -> None:
        self._request(args[0], Put(key=args[1], value=args[2].encode()))

    def cmd_get(self, args: list[str], opts: dict[str, str]) -> None:
        self._request(args[0], Get(key=args[1]))

    def _request(self, word: str, command: Put | Get) -> None:
        node = self._node(word)
        self.request_ids += 1
        node.machine.submit(Request(id=self.request_ids, op=command.op, command=command), f"client@{node.id}")
        node.machine.process_inputs()
        self.out.append(f"request {self.request_ids}: {command.op} at node {node.id}")
        self._print_replies(node)

    def _print_replies(self, node: EnvNode) -> None:
        for r in node.machine.take_replies():
            body = " ".join(f"{k}={v!r}" for k, v in sorted(r.body.items()))
            self.out.append(f"reply {r.request_id} from {node.id}: {r.error or 'ok'} {body}")

    def cmd_propose(self, args: list[str], opts: dict[str, str]) -> None:
        try:
            term, index = self._node(args[0]).core.propose(args[1].encode())
            self.out.append(f"proposed at {term}/{index}")
        except NotLeader as e:
            self.out.append(f"NotLeader: {e}")

    def cmd_read_index(self, args: list[str], opts: dict[str, str]) -> None:
        try:
            self._node(args[0]).core.read_index(args[1].encode())
        except NotLeader as e:
            self.out.append(f"NotLeader: {e}")

    def cmd_transfer_leader(self, args: list[str], opts: dict[str, str]) -> None:
        try:
            self._node(args[0]).core.transfer_leader(int(args[1]))
        except NotLeader as e:
            self.out.append(f"NotLeader: {e}")

    # --- moving work: the shell's Ready loop, and the network by hand --------------------------

    def cmd_process_ready(self, args: list[str], opts: dict[str, str]) -> None:
        for i in self._ids(args):
            self._process_ready(self.nodes[i])

    def _process_ready(self, node: EnvNode) -> bool:
        if not node.up:
            return False
        persist = node.machine.ready()
        if persist is None:
            return False
        rd = persist.ready
        self.out.append(f"> {node.id} handling Ready")
        self.out.extend("  " + line for line in rd.describe().splitlines())
        if persist.entries:
            node.storage.append(persist.entries)
        if persist.hard_state is not None:
            node.storage.set_hard_state(persist.hard_state)
        for chunk in persist.snapshot_chunks:
            node.storage.receive(chunk)
        installed = node.storage.install(persist.install) if persist.install is not None else None
        node.storage.sync()
        node.machine.persisted(persist, installed)
        self.in_flight.extend(node.machine.take_messages())
        node.applied.extend(e.describe() for e in rd.committed)
        self._print_replies(node)
        return True

    def _take(self, to: set[int], opts: dict[str, str]) -> list[Message]:
        kind = opts.get("type")
        frm = int(opts["from"]) if "from" in opts else None
        taken, kept = [], []
        for m in self.in_flight:
            hit = m.to in to and (kind is None or m.type.name == kind) and (frm is None or m.from_ == frm)
            (taken if hit else kept).append(m)
        self.in_flight = kept
        return taken

    def cmd_deliver_msgs(self, args: list[str], opts: dict[str, str]) -> None:
        self._deliver(set(self._ids(args)), opts)

    def _deliver(self, to: set[int], opts: dict[str, str]) -> bool:
        msgs = self._take(to, opts)
        for m in msgs:
            target = self.nodes[m.to]
            if not target.up or not self._connected(m.from_, m.to):
                self.out.append(f"dropped: {m.describe()}")
                continue
            self.out.append(m.describe())
            target.machine.receive(m)
            target.machine.process_inputs()
        return bool(msgs)

    def cmd_hold_msgs(self, args: list[str], opts: dict[str, str]) -> None:
        to = {int(opts["to"])} if "to" in opts else set(self.nodes)
        for m in self._take(to, opts):
            self.held.append(m)
            self.out.append(f"held: {m.describe()}")
            if opts.get("copy") == "true":  # a duplicate: the original stays in flight
                self.in_flight.append(m)

    def cmd_release_msgs(self, args: list[str], opts: dict[str, str]) -> None:
        self.out.extend(f"released: {m.describe()}" for m in self.held)
        self.in_flight.extend(self.held)
        self.held = []

    def cmd_snapshot(self, args: list[str], opts: dict[str, str]) -> None:
        node = self._node(args[0])
        node.machine.request_snapshot()
        image = node.machine.take_snapshot()
        if image is None:
            self.out.append(f"{node.id}: nothing new to snapshot (snapshot at {node.machine.snapshot_index})")
            return
        meta = node.storage.save_snapshot(image)
        node.machine.snapshot_saved(meta)
        node.storage.compact(meta.index - int(opts.get("margin", 0)))
        self.out.append(f"{node.id}: {meta.describe()} durable; log starts at {node.storage.first_index()}")

    def cmd_drop_msgs(self, args: list[str], opts: dict[str, str]) -> None:
        to = {int(opts["to"])} if "to" in opts else set(self.nodes)
        for m in self._take(to, opts):
            self.out.append(f"dropped: {m.describe()}")

    def cmd_stabilize(self, args: list[str], opts: dict[str, str]) -> None:
        ids = self._ids(args)
        for _ in range(1000):
            moved = False
            for i in ids:
                moved |= self._process_ready(self.nodes[i])
            if self._deliver(set(ids), {}):
                moved = True
            if not moved:
                return
        raise InteractionError("stabilize did not converge in 1000 rounds")

    # --- looking --------------------------------------------------------------------------------

    def cmd_raft_log(self, args: list[str], opts: dict[str, str]) -> None:
        log = self._node(args[0]).core.log
        if log.first_index() > 1:
            self.out.append(f"(entries up to {log.first_index() - 1} compacted into a snapshot)")
        entries = log.entries(log.first_index(), log.last_index() + 1)
        self.out.extend(e.describe() for e in entries)
        if not entries:
            self.out.append("log is empty")

    def cmd_status(self, args: list[str], opts: dict[str, str]) -> None:
        st = self._node(args[0]).core.status()
        self.out.append(st.describe())
        if st.role is Role.LEADER:
            self.out.extend(f"  {peer}: {pr}" for peer, pr in sorted(st.progress.items()))

    def cmd_applied(self, args: list[str], opts: dict[str, str]) -> None:
        node = self._node(args[0])
        self.out.append(", ".join(node.applied) if node.applied else "nothing applied")

