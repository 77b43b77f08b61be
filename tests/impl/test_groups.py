"""Several Raft groups per process (impl/groups.py), deterministically: three "processes", each a
router over two NodeMachines on in-memory storage, exchanging real wire frames (codec), driven
by a seeded scheduler and a fake clock. The groups keep independent leaders, terms and data;
no message or request crosses groups; unknown groups are refused; a crashed process recovers
both groups from what each had synced."""

from __future__ import annotations

import random
import re
from typing import Any

import msgpack
import pytest
from raftlab.impl.dtkv.commands import Get, Put
from raftlab.impl.groups import Router, UnknownGroup, group_dir, group_ids, group_seed
from raftlab.impl.machine import MachineConfig, NodeMachine
from raftlab.impl.net.codec import (
    WireError,
    decode_command,
    decode_group_message,
    decode_message,
    decode_request,
    encode_message,
    encode_request,
)
from raftlab.impl.raft import MsgType, RaftConfig
from raftlab.impl.raft.messages import EntryType, Message, Role
from raftlab.impl.storage.memory import MemoryStorage

IDS = (1, 2, 3)
GROUPS = (0, 1)
TICK = 0.05


class Process:
    """One node process: a router over one machine per group (what impl/node.py's Node is)."""

    def __init__(self, node_id: int, seed: int, now: float,
                 storages: dict[int, MemoryStorage] | None = None) -> None:
        self.id = node_id
        self.storages = storages or {g: MemoryStorage() for g in GROUPS}
        self.router: Router[NodeMachine[str]] = Router({
            g: NodeMachine(MachineConfig(raft=RaftConfig(id=node_id, voters=IDS, election_tick=10),
                                         tick_seconds=TICK, group=g),
                           self.storages[g], now=now, rng=random.Random(group_seed(seed + node_id, g)))
            for g in GROUPS})
        self.replies: list[tuple[str, int, str | None, dict[str, Any]]] = []

    def machine(self, group: int) -> NodeMachine[str]:
        return self.router.route(group)


class Cluster:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.now = 100.0
        self.procs = {i: Process(i, seed, self.now) for i in IDS}
        self.wire: list[tuple[int, bytes]] = []  # (destination process, encoded peer frame)
        self.sent: dict[int, list[tuple[int, Message]]] = {g: [] for g in GROUPS}

    def step(self) -> None:
        """Every machine of every live process: time, one Ready, its messages onto the wire;
        then deliver the frames in a seeded order (a frame is decoded and routed by its group)."""
        for proc in self.procs.values():
            for g, machine in proc.router.items():
                machine.tick(self.now)
                persist = machine.ready()
                if persist is not None:
                    storage = proc.storages[g]
                    storage.append(persist.entries)
                    if persist.hard_state is not None:
                        storage.set_hard_state(persist.hard_state)
                    storage.sync()
                    machine.persisted(persist)
                for msg in machine.take_messages():
                    self.sent[g].append((proc.id, msg))
                    self.wire.append((msg.to, encode_message(msg, g)))
                proc.replies.extend((r.handle, r.request_id, r.error, r.body) for r in machine.take_replies())
        frames, self.wire = self.wire, []
        self.rng.shuffle(frames)
        for to, frame in frames:
            if to in self.procs:
                group, msg = decode_group_message(frame)
                self.procs[to].router.route(group).receive(msg)
        self.now += TICK / 2

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def leader(self, group: int) -> int:
        leaders = {p.id for p in self.procs.values() if p.machine(group).role is Role.LEADER}
        return max(leaders) if leaders else 0

    def settle(self, group: int, steps: int = 400) -> int:
        for _ in range(steps):
            self.step()
            leader = self.leader(group)
            if leader and all(p.machine(group).leader == leader for p in self.procs.values()):
                return leader
        raise AssertionError(f"group {group} has no leader after {steps} steps")

    def request(self, proc: int, rid: int, frame: bytes) -> tuple[str | None, dict[str, Any]]:
        """Send one encoded client request to a process; run until it is answered."""
        p = self.procs[proc]
        request = decode_request(frame)
        try:
            p.router.route(request.group).submit(request, f"c{rid}")
        except UnknownGroup as e:
            return "validation", {"message": str(e)}
        for _ in range(200):
            for handle, got, error, body in p.replies:
                if handle == f"c{rid}" and got == rid:
                    return error, body
            self.step()
        raise AssertionError(f"request {rid} to {proc} was never answered")


def test_two_groups_keep_independent_leaders_and_data(seed: int) -> None:
    c = Cluster(seed)
    first = c.settle(0)
    c.settle(1)
    # move group 1's leader to a node that does not lead group 0 (nor group 1 yet): an admin
    # transfer is a group-1 request; group 0 must not notice it (its terms never move)
    target = next(i for i in IDS if i not in (first, c.leader(1)))
    terms = {g: c.procs[first].machine(g).core.term for g in GROUPS}
    error, _ = c.request(c.leader(1), 1, encode_request(1, "admin", args={"action": "transfer", "to": target},
                                                        group=1))
    assert error is None
    assert c.settle(1) == target and c.leader(0) == first != target
    assert (c.procs[target].machine(1).role, c.procs[target].machine(0).role) == (Role.LEADER, Role.FOLLOWER)
    assert all(p.machine(1).core.term > terms[1] and p.machine(0).core.term == terms[0] for p in c.procs.values())
    # the same key gets different values in the two groups, each written through its own leader
    assert c.request(first, 2, encode_request(2, "put", Put(key="k", value=b"zero")))[0] is None
    assert c.request(target, 3, encode_request(3, "put", Put(key="k", value=b"one"), group=1))[0] is None
    c.run(20)
    for p in c.procs.values():
        assert p.machine(0).tree.values["k"] == b"zero" and p.machine(1).tree.values["k"] == b"one"
        for g, value in ((0, b"zero"), (1, b"one")):  # each group's log holds only its own write
            log = p.storages[g].entries(1, p.storages[g].last_index() + 1)
            puts = [decode_command(e.data) for e in log if e.type is EntryType.NORMAL and e.data]
            assert puts == [Put(key="k", value=value)]
    # a write to group 1 at group 0's leader is refused with group 1's leader as the hint;
    # a read of group 1 there is served (forwarded to group 1's leader) with group 1's value
    error, body = c.request(first, 4, encode_request(4, "put", Put(key="k", value=b"x"), group=1))
    assert (error, body.get("leader")) == ("not-leader", target)
    assert c.request(first, 5, encode_request(5, "get", Get(key="k"), group=1))[1]["value"] == b"one"
    # group 1's election traffic (TIMEOUT_NOW, votes at its new term) never reached group 0
    assert any(m.type is MsgType.TIMEOUT_NOW for _, m in c.sent[1])
    assert not any(m.type is MsgType.TIMEOUT_NOW or m.term > terms[0] for _, m in c.sent[0])
    assert c.procs[first].machine(0).role is Role.LEADER


def test_a_crashed_process_recovers_every_group(seed: int) -> None:
    c = Cluster(seed)
    for g in GROUPS:
        c.settle(g)
    for g, value in ((0, b"zero"), (1, b"one")):
        leader = c.leader(g)
        assert c.request(leader, 10 + g, encode_request(10 + g, "put", Put(key="k", value=value), group=g))[0] is None
    c.run(10)
    victim = c.leader(1)
    crashed = {g: c.procs[victim].storages[g].crash() for g in GROUPS}  # only what each group synced
    del c.procs[victim]
    for g in GROUPS:  # both groups lose the process; the other two keep both groups available
        survivor = c.settle(g)
        assert survivor != victim
    assert c.request(c.leader(1), 20, encode_request(20, "put", Put(key="after", value=b"1"), group=1))[0] is None
    c.procs[victim] = Process(victim, c.seed + 99, c.now, storages=crashed)
    c.run(100)
    back = c.procs[victim]
    assert back.machine(0).tree.values.get("k") == b"zero" and back.machine(1).tree.values.get("k") == b"one"
    assert back.machine(1).tree.values.get("after") == b"1" and "after" not in back.machine(0).tree.values


def test_unknown_groups_are_refused_never_routed() -> None:
    router: Router[str] = Router({0: "a", 1: "b"})
    assert router.route(1) == "b"
    with pytest.raises(UnknownGroup, match=re.escape("unknown group 7: this node serves groups 0..1")):
        router.route(7)
    with pytest.raises(ValueError, match=re.escape("--groups must be 1..64")):
        group_ids(0)
    c = Cluster(1)
    c.settle(0)
    error, body = c.request(1, 1, encode_request(1, "put", Put(key="k", value=b"x"), group=7))
    assert error == "validation" and "unknown group 7" in body["message"]
    assert all("k" not in p.machine(g).tree.values for p in c.procs.values() for g in GROUPS)


def test_group_tags_on_the_wire() -> None:
    msg = Message(type=MsgType.HEARTBEAT, to=2, from_=1, term=3)
    assert decode_group_message(encode_message(msg)) == (0, msg)  # group 0: the single-group format
    assert len(msgpack.unpackb(encode_message(msg))) == 15
    assert decode_group_message(encode_message(msg, 5)) == (5, msg)
    assert decode_message(encode_message(msg, 5)) == msg
    raw = msgpack.unpackb(encode_message(msg, 5))
    raw[15] = "five"
    with pytest.raises(WireError, match="field 'group'"):
        decode_group_message(msgpack.packb(raw))
    raw[15] = -1
    with pytest.raises(WireError, match="field 'group'"):
        decode_group_message(msgpack.packb(raw))
    plain = encode_request(4, "get", Get(key="k"))
    assert msgpack.unpackb(plain)[0] == 4 and decode_request(plain).group == 0
    tagged = decode_request(encode_request(4, "get", Get(key="k"), group=3))
    assert (tagged.id, tagged.group, tagged.command) == (4, 3, Get(key="k"))
    for bad in ({"group": 1}, {"group": "x", "request": [1, "status"]}, {"group": 1, "request": 5},
                {"group": 1, "request": [1, "status"], "extra": 0}):
        with pytest.raises(WireError):
            decode_request(msgpack.packb(bad))


def test_data_dir_layout(tmp_path: Any) -> None:
    assert group_dir(tmp_path, 0) == tmp_path  # group 0: the single-group layout, unchanged
    assert group_dir(tmp_path, 3) == tmp_path / "groups" / "3"


def test_repairing_group_0_empty_keeps_the_other_groups(tmp_path: Any) -> None:
    """`node repair --empty` of group 0 moves DATA aside; the other groups' DATA/groups/ is not
    group 0's log and moves back untouched (else they would restart empty and able to vote)."""
    from raftlab.impl.raft.messages import Entry, HardState
    from raftlab.impl.storage.wal import WalStorage, repair_empty

    data = tmp_path / "data"
    for g in GROUPS:
        storage = WalStorage(group_dir(data, g), node_id=1)
        storage.append([Entry(term=1, index=1, data=b"group %d" % g)])
        storage.set_hard_state(HardState(term=1, vote=1, commit=1))
        storage.sync()
        storage.close()
    repair_empty(group_dir(data, 0), 1, now=0, keep=("groups",))
    assert (tmp_path / "data.damaged-19700101T000000Z" / "wal").is_dir()
    fresh, kept = WalStorage(group_dir(data, 0), node_id=1), WalStorage(group_dir(data, 1), node_id=1)
    try:
        assert fresh.manifest.rejoin and fresh.last_index() == 0
        assert not kept.manifest.rejoin and kept.entries(1, 2)[0].data == b"group 1"
        assert kept.initial_state().vote == 1
    finally:
        fresh.close()
        kept.close()
