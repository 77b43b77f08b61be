"""NodeMachine (impl/machine.py) on its own: time, read identities, deadlines and its contract.

The machines run on the transcript harness (messages moved by hand) or alone on in-memory
storage; nothing here sleeps or opens a socket.
"""

from __future__ import annotations

import random

import pytest
from raftlab.impl.dtkv.commands import Get, Put
from raftlab.impl.machine import MachineConfig, NodeMachine
from raftlab.impl.net.codec import Request
from raftlab.impl.raft import MsgType, RaftConfig
from raftlab.impl.storage.memory import MemoryStorage

from raftlab.sim.interaction import InteractionEnv


def elected(n: int = 3) -> InteractionEnv:
    env = InteractionEnv()
    env.handle(f"add-nodes {n}")
    env.handle("campaign 1")
    env.handle("stabilize")
    env.handle("put 1 k v")
    env.handle("stabilize")
    return env


def test_a_forwarded_read_lost_while_the_leader_is_heard_times_out_once() -> None:
    """The follower keeps hearing its leader, so no leader change or term change will ever end
    the lost request: only its deadline does (before, the client waited out its own timeout)."""
    env = elected()
    env.handle("get 2 k")
    env.handle("process-ready 2")
    assert "READ_INDEX" in env.handle("drop-msgs type=READ_INDEX")
    replies = []
    for _ in range(3 * env.nodes[2].config.election_tick):
        env.handle("tick 1")
        env.handle("tick 2")
        replies += [line for line in env.handle("stabilize").splitlines() if line.startswith("reply")]
    assert len(replies) == 1 and "dropped" in replies[0] and "timed out" in replies[0], replies
    assert env.nodes[2].core.lead == 1  # still a follower of the same leader throughout


def test_read_ids_differ_across_nodes_and_restarts() -> None:
    env = elected()

    def forwarded_context(node: int) -> bytes:
        env.handle(f"get {node} k")
        env.handle(f"process-ready {node}")
        msg = next(m for m in env.in_flight if m.type is MsgType.READ_INDEX and m.from_ == node)
        env.handle("stabilize")
        return msg.context

    first_2, first_3 = forwarded_context(2), forwarded_context(3)
    env.handle("crash 2")
    env.handle("restart 2")
    env.handle("tick 1")  # a heartbeat tells the restarted node who leads
    env.handle("stabilize")
    again_2 = forwarded_context(2)
    assert len({first_2, first_3, again_2}) == 3


def test_time_becomes_ticks_in_one_step_after_a_stall() -> None:
    raft = RaftConfig(id=1, voters=(1, 2, 3), election_tick=10)
    machine: NodeMachine[str] = NodeMachine(MachineConfig(raft=raft, tick_seconds=0.05), MemoryStorage(),
                                            now=100.0, rng=random.Random(1))
    machine.tick(100.049)
    machine.process_inputs()
    assert machine.core.clock == 0 and machine.next_tick_at() == pytest.approx(100.05)
    machine.tick(103.0)  # a 3 s SIGSTOP
    machine.process_inputs()
    assert machine.core.clock == 60 and machine.next_tick_at() == pytest.approx(103.05)


def test_requests_and_the_persist_contract() -> None:
    raft = RaftConfig(id=1, voters=(1,), election_tick=10)
    storage = MemoryStorage()
    machine: NodeMachine[str] = NodeMachine(MachineConfig(raft=raft, tick_seconds=1.0), storage,
                                            now=0.0, rng=random.Random(1))

    def persist_all() -> None:
        while (persist := machine.ready()) is not None:
            assert machine.ready() is persist  # one Persist outstanding at a time
            storage.append(persist.entries)
            if persist.hard_state is not None:
                storage.set_hard_state(persist.hard_state)
            storage.sync()
            machine.persisted(persist)
            with pytest.raises(ValueError, match="not the outstanding one"):
                machine.persisted(persist)

    machine.tick(30.0)  # a single voter elects itself
    persist_all()
    machine.submit(Request(id=1, op="put", command=Put(key="a", value=b"1")), "c1")
    machine.submit(Request(id=3, op="status"), "c3")
    assert [r.request_id for r in machine.take_replies()] == [3]  # status is answered at once
    persist_all()
    machine.submit(Request(id=2, op="get", command=Get(key="a")), "c2")  # after the put was answered
    persist_all()
    replies = {r.request_id: r for r in machine.take_replies()}
    assert replies[1].error is None and replies[2].body["value"] == b"1" and replies[2].handle == "c2"
    status = machine.status()
    assert status["role"] == "leader" and status["applied"] == 2 and status["pending_reads"] == 0


def test_after_a_stall_messages_that_waited_are_stepped_before_the_timeouts_run() -> None:
    """A leader that stalled with its followers' answers already received must not step down
    for want of a quorum: the answers are stepped first, then the elapsed ticks' timeouts (the
    other order, main's, makes check-quorum see no answer and step down)."""

    def leader_after_stall(messages_first: bool) -> str:
        env = elected()
        leader = env.nodes[1]
        while True:  # tick until a check-quorum just ran (its answers are then all forgotten)
            env.handle("tick 1")
            if leader.core.election_elapsed == 0:
                break
        env.handle("process-ready 1")
        env.handle("deliver-msgs 2 3")
        env.handle("process-ready 2 3")
        assert any(m.to == 1 and m.type is MsgType.HEARTBEAT_RESP for m in env.in_flight)
        if messages_first:
            env.handle(f"stall 1 {leader.config.election_tick}")  # the machine's order
        else:
            env.handle(f"tick 1 {leader.config.election_tick}")  # timeouts first ...
            env.handle("deliver-msgs 1")  # ... then the answers that had arrived meanwhile
        return leader.core.role.value

    assert leader_after_stall(messages_first=True) == "leader"
    assert leader_after_stall(messages_first=False) == "follower"


def test_replicas_that_applied_the_same_log_report_the_same_digest() -> None:
    """The status digest (raftlab/replicas.py judges it at the end of a campaign): the hash chain
    and tree digest agree across replicas at one applied index and move with every entry."""
    env = elected()
    digests = [env.nodes[i].machine.status()["digest"] for i in (1, 2, 3)]
    assert digests[0] == digests[1] == digests[2] and digests[0]["applied"] >= 2
    assert digests[0]["tree"] == env.nodes[1].machine.tree.digest() and len(digests[0]["chain"]) == 32
    env.handle("put 1 k w")
    env.handle("stabilize")
    after = [env.nodes[i].machine.status()["digest"] for i in (1, 2, 3)]
    assert after[0] == after[1] == after[2]
    assert after[0]["chain"] != digests[0]["chain"] and after[0]["tree"] != digests[0]["tree"]
