"""Temp nodes, locks and watches: the pure tree, the leader's lease timers and the machine's watch
polls (impl/dtkv/tree.py, impl/dtkv/leases.py, impl/dtkv/watches.py, impl/machine.py).

Single-voter machines on in-memory storage, driven by hand: time is what the test passes to
``tick``, so every expiry below happens at an exact, asserted moment, never by sleeping.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from raftlab.impl.dtkv.commands import (
    CommandError,
    ErrorKind,
    Expire,
    Get,
    Mkdir,
    MkdirTemp,
    Put,
    PutTemp,
    Refresh,
    Remove,
    TryLock,
    Unlock,
    Watch,
    from_wire,
    to_wire,
)
from raftlab.impl.dtkv.leases import LeaseTimers
from raftlab.impl.dtkv.tree import Tree
from raftlab.impl.machine import MachineConfig, NodeMachine
from raftlab.impl.net.codec import Request
from raftlab.impl.raft import RaftConfig
from raftlab.impl.storage import snapshot_format
from raftlab.impl.storage.memory import MemoryStorage


def test_lease_commands_round_trip_the_wire_and_validate() -> None:
    for cmd in (PutTemp(key="a", value=b"v", owner="o", ttl_ms=500), MkdirTemp(key="d", owner="o", ttl_ms=20),
                Refresh(key="a", owner="o", ttl_ms=100), TryLock(key="l", owner="o", lease_ms=100, wait=True),
                Unlock(key="l", owner="o"), Expire(key="a", index=3), Watch(key="", from_index=0)):
        assert from_wire(to_wire(cmd)) == cmd
    with pytest.raises(CommandError, match="ttl_ms"):
        from_wire(["put_temp", "a", b"v", "o", 1])
    with pytest.raises(CommandError, match="owner"):
        from_wire(["try_lock", "l", "", 100, False])
    with pytest.raises(CommandError, match="takes 2 arguments"):
        from_wire(["unlock", "l"])


def test_expire_applies_only_at_the_index_it_expects() -> None:
    tree = Tree()
    assert tree.apply(1, PutTemp(key="svc", value=b"a", owner="o1", ttl_ms=100)).error is None
    assert tree.apply(2, Refresh(key="svc", owner="o1", ttl_ms=100)).error is None
    assert tree.apply(3, Expire(key="svc", index=1)).count == 0  # a stale decision: refreshed at 2
    assert tree.read(Get(key="svc")).value == b"a"
    assert tree.apply(4, Refresh(key="svc", owner="o2", ttl_ms=100)).error is ErrorKind.NOT_OWNER
    assert tree.apply(5, Put(key="svc", value=b"x")).error is ErrorKind.NOT_OWNER
    assert tree.apply(6, Expire(key="svc", index=2)).count == 1
    assert tree.read(Get(key="svc")).value is None and not tree.leases
    assert tree.changes == [("del", "svc", None)] and tree.touched == ["svc"]


def test_an_expired_temp_dir_goes_with_everything_under_it() -> None:
    tree = Tree()
    tree.apply(1, MkdirTemp(key="d", owner="o", ttl_ms=100))
    tree.apply(2, Mkdir(key="d.e"))
    tree.apply(3, Put(key="d.e.k", value=b"1"))
    assert tree.apply(4, Remove(key="d")).error is ErrorKind.DIR_NOT_EMPTY
    assert tree.apply(5, Expire(key="d", index=1)).count == 1
    assert tree.dirs == {"": set()} and tree.values == {}
    assert [c[1] for c in tree.changes] == ["d.e.k", "d.e", "d"]


def test_lock_owner_only_unlock_hand_off_and_fencing_tokens() -> None:
    tree = Tree()
    first = tree.apply(1, TryLock(key="l", owner="a", lease_ms=100))
    assert first.error is None and first.token == 1 and tree.read(Get(key="l")).value == b"a"
    held = tree.apply(2, TryLock(key="l", owner="b", lease_ms=100, wait=True))
    assert held.error is ErrorKind.LOCK_HELD and held.value == b"a"
    assert tree.apply(3, TryLock(key="l", owner="a", lease_ms=100)).token == 1  # re-acquire: same hold
    assert tree.apply(4, Unlock(key="l", owner="c")).error is ErrorKind.NOT_OWNER
    assert tree.apply(5, Remove(key="l")).error is ErrorKind.NOT_OWNER
    assert tree.apply(6, Unlock(key="l", owner="a")).count == 1
    assert tree.read(Get(key="l")).value == b"b" and tree.leases["l"].token == 6  # handed to the waiter
    assert tree.apply(7, TryLock(key="l", owner="b", lease_ms=100)).token == 6
    assert tree.apply(8, Expire(key="l", index=7)).count == 1  # b stopped refreshing: freed
    assert tree.read(Get(key="l")).value is None
    assert tree.apply(9, TryLock(key="l", owner="c", lease_ms=100)).token == 9  # tokens only grow


def test_leases_survive_a_snapshot_round_trip_and_enter_the_digest() -> None:
    tree = Tree()
    tree.apply(1, TryLock(key="l", owner="a", lease_ms=100))
    tree.apply(2, TryLock(key="l", owner="b", lease_ms=200, wait=True))
    tree.apply(3, PutTemp(key="t", value=b"v", owner="o", ttl_ms=50))
    values, dirs = tree.image()
    image = snapshot_format.SnapshotImage(meta=snapshot_format.SnapshotMeta(index=3, term=1, voters=(1,)),
                                          values=values, dirs=dirs, leases=tree.lease_image())
    back = snapshot_format.decode(snapshot_format.encode(image), "s")
    restored = Tree()
    restored.restore_image(3, back.values, back.dirs, back.leases)
    assert restored.leases == tree.leases and restored.digest() == tree.digest()
    plain = Tree()
    plain.restore_image(3, values, dirs)
    assert plain.digest() != tree.digest()


def test_timers_retry_and_forget_superseded_deadlines() -> None:
    t = LeaseTimers()
    t.arm("k", 1, 100, now=0.0)
    t.arm("k", 2, 100, now=0.05)  # refreshed: only the new deadline counts
    assert t.due(0.12) == [] and t.next_due() == pytest.approx(0.15)
    assert t.due(0.16) == [("k", 2)]
    assert t.due(0.2) == [] and t.due(1.16) == [("k", 2)]  # not applied yet: proposed again
    t.disarm("k")
    assert t.due(10.0) == [] and t.next_due() is None


class Single:
    """One voter, in-memory storage, driven by the test's clock."""

    def __init__(self, **config: Any) -> None:
        self.storage = MemoryStorage()
        raft = RaftConfig(id=1, voters=(1,), election_tick=10)
        self.m: NodeMachine[str] = NodeMachine(MachineConfig(raft=raft, tick_seconds=0.01, **config),
                                               self.storage, now=0.0, rng=random.Random(1))
        self.now = 0.0
        self.ids = 0
        self.replies: dict[int, Any] = {}
        self.at(0.5)  # elects itself

    def at(self, now: float) -> None:
        while self.now < now:  # one tick at a time, as the node's ticker does
            self.now = round(self.now + 0.01, 6)
            self.m.tick(self.now)
            while (p := self.m.ready()) is not None:
                self.storage.append(p.entries)
                if p.hard_state is not None:
                    self.storage.set_hard_state(p.hard_state)
                self.storage.sync()
                self.m.persisted(p)
            self.m.process_inputs()
            for r in self.m.take_replies():
                self.replies[r.request_id] = r

    def send(self, cmd: Any) -> int:
        self.ids += 1
        self.m.submit(Request(id=self.ids, op=cmd.op, command=cmd), "c")
        return self.ids

    def do(self, cmd: Any) -> Any:
        rid = self.send(cmd)
        self.at(self.now + 0.03)
        return self.replies.pop(rid)


def test_the_leader_expires_a_node_ttl_after_its_last_refresh_and_not_before() -> None:
    n = Single()
    assert n.do(PutTemp(key="svc", value=b"up", owner="o", ttl_ms=300)).error is None
    for _ in range(5):  # refreshed every 0.2 s, well within the TTL: it stays
        n.at(n.now + 0.2)
        sent = n.now
        assert n.do(Refresh(key="svc", owner="o", ttl_ms=300)).error is None
    assert n.m.tree.values["svc"] == b"up"
    while "svc" in n.m.tree.values:
        n.at(n.now + 0.01)
    assert 0.3 <= n.now - sent <= 0.35  # TTL after the last refresh was sent, within a few ticks
    assert n.do(Expire(key="svc", index=1)).error is ErrorKind.VALIDATION  # never from a client


def test_broken_expiry_takes_a_refreshed_node_early() -> None:
    n = Single(unsafe_expiry=True)
    n.do(PutTemp(key="svc", value=b"up", owner="o", ttl_ms=300))
    n.at(n.now + 0.2)
    n.do(Refresh(key="svc", owner="o", ttl_ms=300))
    n.at(n.now + 0.15)  # 0.15 s after the refresh, 0.38 after the create
    assert "svc" not in n.m.tree.values


def test_a_new_leader_rearms_leases_from_the_snapshot_with_their_full_ttl() -> None:
    n = Single()
    n.do(TryLock(key="l", owner="a", lease_ms=400))
    n.storage.save_snapshot(n.m.image())
    n.storage.compact(n.m.tree.applied)
    again = Single.__new__(Single)
    again.storage, again.now, again.ids, again.replies = n.storage.crash(), 10.0, 0, {}
    raft = RaftConfig(id=1, voters=(1,), election_tick=10)
    again.m = NodeMachine(MachineConfig(raft=raft, tick_seconds=0.01), again.storage, now=10.0,
                          rng=random.Random(2), snapshot=again.storage.image())
    again.at(10.5)  # elected at ~10.1-10.2: the lease runs from then, not from the old leader's time
    assert again.m.tree.values["l"] == b"a"
    while "l" in again.m.tree.values:
        again.at(again.now + 0.01)
    assert again.now >= 10.4


def test_watch_answers_every_change_from_an_index_in_order_and_resumes_without_gaps() -> None:
    n = Single()
    n.do(Mkdir(key="d"))
    first = n.do(Put(key="d.a", value=b"1")).body["index"]
    n.do(Put(key="x", value=b"other"))
    n.do(Put(key="d.b", value=b"2"))
    r = n.do(Watch(key="d", from_index=first))
    assert [e[2] for e in r.body["events"]] == ["d.a", "d.b"] and r.body["next"] == n.m.tree.applied + 1
    parked = n.send(Watch(key="d", from_index=r.body["next"]))
    n.at(n.now + 0.03)
    assert parked not in n.replies  # nothing new yet: the poll waits
    put = n.do(Put(key="d.c", value=b"3")).body["index"]
    assert [e[:3] for e in n.replies.pop(parked).body["events"]] == [[put, "put", "d.c"]]
    empty = n.send(Watch(key="d", from_index=put + 1))
    n.at(n.now + 0.6)
    assert n.replies.pop(empty).body == {"events": [], "next": put + 1, "index": put}


def test_watch_below_the_kept_events_is_compacted() -> None:
    n = Single()
    n.do(Put(key="a", value=b"1"))
    n.m.watches.trim(3)
    r = n.do(Watch(key="a", from_index=1))
    assert r.error is ErrorKind.COMPACTED and r.body["first"] == 3 and "re-read" in r.body["message"]


def test_broken_watch_skips_the_event_at_the_resume_index() -> None:
    n = Single(unsafe_watch_skip=True)
    index = n.do(Put(key="a", value=b"1")).body["index"]
    rid = n.send(Watch(key="a", from_index=index))
    n.at(n.now + 0.6)
    assert n.replies.pop(rid).body["events"] == []  # the put at ``index`` was skipped


def test_the_event_buffer_is_bounded_and_moves_its_floor() -> None:
    from raftlab.impl.dtkv.watches import Watches

    w: Watches[str] = Watches(max_events=3, max_bytes=1000)
    for i in range(1, 6):
        w.record(i, [("put", "k", b"v")])
    assert [e[0] for e in w.events] == [3, 4, 5] and w.floor == 3
    w.record(6, [("put", "big", b"x" * 2000)])  # over the byte budget: only the newest is kept
    assert [e[0] for e in w.events] == [6] and w.floor == 6
    assert w.poll("k", 2, "h", 1, now=0.0).error == "compacted"


def test_a_new_leader_rearms_from_replicated_state_and_followers_never_expire() -> None:
    """Three machines, messages moved by hand (one second per tick): the lease is created under
    leader 1, which then crashes; node 2 takes over and expires it TTL after its takeover, not
    after the creation; the follower never proposes an expiry."""
    from raftlab.sim.interaction import InteractionEnv

    env = InteractionEnv()
    env.handle("add-nodes 3 election-tick=3")
    env.handle("campaign 1")
    env.handle("stabilize")
    env.nodes[1].machine.submit(Request(id=1, op="put_temp", command=PutTemp(key="t", value=b"v", owner="o",
                                                                             ttl_ms=4000)), "c")
    env.handle("stabilize")
    assert all(n.machine.tree.values.get("t") == b"v" for n in env.nodes.values())
    assert len(env.nodes[2].machine.timers) == 0  # followers arm nothing
    env.handle("crash 1")
    env.handle("tick 3 3")  # node 3 stops hearing 1 (so it grants 2 its pre-vote)
    env.handle("campaign 2")
    env.handle("stabilize")
    assert env.nodes[2].machine.role.value == "leader" and len(env.nodes[2].machine.timers) == 1
    second = 0
    while "t" in env.nodes[2].machine.tree.values and second < 8:
        second += 1
        env.handle("tick 2")
        env.handle("tick 3")
        env.handle("stabilize")
    assert 4 <= second <= 5, f"expired {second} s after the takeover, TTL 4 s"
    assert "t" not in env.nodes[3].machine.tree.values and not env.nodes[3].machine.tree.leases
