"""Membership changes: the pure rules (confchange.py, JointConfig) and the real node machines in
the simulator, with the faults turned off so each test drives one change and watches it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from raftlab.checker import check
from raftlab.impl.dtkv.commands import Get
from raftlab.impl.machine import Reply
from raftlab.impl.net.codec import Request
from raftlab.impl.raft import Role
from raftlab.impl.raft.confchange import (
    ConfChange,
    ConfChangeError,
    Membership,
    apply,
    decode_change,
    encode_change,
    validate,
)
from raftlab.impl.raft.quorum import JointConfig, MajorityConfig, VoteResult

from raftlab.sim.cluster import SimCluster, SimConfig

QUIET = dict(loss=0.0, duplicate=0.0, reorder=0.0, late_duplicate=0.0, partitions=False, crashes=False,
             pauses=False, disk_stalls=False, clock_jumps=False)


def enter(voters: tuple[int, ...], learners: tuple[int, ...] = (), auto_leave: bool = True) -> ConfChange:
    return ConfChange(op="enter", voters=voters, learners=learners, auto_leave=auto_leave)


# --- the pure rules ------------------------------------------------------------------------


def test_joint_quorum_needs_both_majorities() -> None:
    q = JointConfig(MajorityConfig((3, 4, 5)), MajorityConfig((1, 2, 3)))
    assert q.committed_index({1: 9, 2: 9, 3: 5, 4: 2, 5: 1}) == 2  # the new side holds only index 2
    assert q.vote_result({1: True, 2: True}) is VoteResult.PENDING  # old side won, new side not yet
    assert q.vote_result({1: True, 2: True, 4: True, 5: True}) is VoteResult.WON
    assert q.vote_result({4: False, 5: False}) is VoteResult.LOST
    assert q.voters == (1, 2, 3, 4, 5)


@pytest.mark.parametrize(("m", "change", "why"), [
    (Membership(voters=(1, 2, 3)), enter(()), "at least one voter"),
    (Membership(voters=(1, 2, 3)), enter((1, 2), (2,)), "both voter and learner"),
    (Membership(voters=(1, 2, 3)), enter((3, 2, 1)), "already"),
    (Membership(voters=(1, 2, 3)), enter((0, 1)), "positive"),
    (Membership(voters=(1, 2, 3)), ConfChange(op="leave"), "no change is in progress"),
    (Membership(voters=(1, 4), outgoing=(1, 2, 3)), enter((1,)), "in progress"),
])
def test_invalid_changes_are_refused_with_a_reason(m: Membership, change: ConfChange, why: str) -> None:
    with pytest.raises(ConfChangeError, match=why):
        validate(m, change)
    assert apply(m, change)[0] == m  # at apply time the same change is a no-op everywhere


def test_enter_leave_and_abort() -> None:
    old = Membership(voters=(1, 2, 3), learners=(5,))
    joint = validate(old, enter((2, 3, 4, 5)))
    assert joint.joint and joint.outgoing == (1, 2, 3) and joint.voters == (2, 3, 4, 5)
    assert validate(joint, ConfChange(op="leave")) == Membership(voters=(2, 3, 4, 5))
    assert validate(joint, ConfChange(op="abort")) == old
    assert decode_change(encode_change(enter((1, 2), (3,), False))) == enter((1, 2), (3,), False)
    with pytest.raises(ConfChangeError):
        decode_change(b"\x93not a change")


# --- real machines in the simulator ----------------------------------------------------------


def cluster(seed: int = 7, spares: int = 2, **kw: object) -> SimCluster:
    return SimCluster(seed, SimConfig(nodes=3, spares=spares, **{**QUIET, **kw}))  # type: ignore[arg-type]


def run_until(c: SimCluster, done: Callable[[], bool], limit: int = 30000) -> None:
    for _ in range(limit):
        c.step()
        if done():
            return
    raise AssertionError(f"not reached in {limit} steps; last events: {list(c.trace)[-8:]}")


def leader(c: SimCluster) -> int:
    run_until(c, lambda: c._leader() is not None)
    lead = c._leader()
    assert lead is not None
    return lead


def everyone_has(c: SimCluster, m: Membership, ids: tuple[int, ...] | None = None) -> bool:
    return all(c.nodes[i].core.membership == m for i in (ids or c.ids))


def assert_linearizable(c: SimCluster) -> None:
    assert c.stats["commits"] > 0
    result = check(c.history(), "kv", time_limit=30)
    assert result.valid is True, result.explanation


def test_grow_three_to_five_in_one_joint_step_and_shrink_back_under_writes() -> None:
    c = cluster()
    lead = leader(c)
    c.nodes[lead].core.propose_conf_change(enter((1, 2, 3, 4, 5)))
    run_until(c, lambda: everyone_has(c, Membership(voters=(1, 2, 3, 4, 5))))
    mark = c.nodes[leader(c)].core.log.committed
    run_until(c, lambda: all(c.nodes[i].core.log.committed > mark + 5 for i in c.ids))  # writes go on, under five
    lead = leader(c)
    c.nodes[lead].core.propose_conf_change(enter((1, 2, 3)))
    run_until(c, lambda: everyone_has(c, Membership(voters=(1, 2, 3)), (1, 2, 3)))
    committed = c.stats["commits"]
    run_until(c, lambda: c.stats["commits"] > committed + 20)
    assert_linearizable(c)


def test_a_removed_leader_hands_over_and_never_campaigns_again() -> None:
    c = cluster()
    old = leader(c)
    rest = tuple(i for i in (1, 2, 3) if i != old)
    c.nodes[old].core.propose_conf_change(enter(rest))
    run_until(c, lambda: c._leader() in rest and everyone_has(c, Membership(voters=rest), rest))
    core = c.nodes[old].core
    assert core.role is Role.FOLLOWER and old not in core.voters
    term = core.term
    committed = c.stats["commits"]
    run_until(c, lambda: c.stats["commits"] > committed + 20)
    assert c.nodes[old].core.role is Role.FOLLOWER and c.nodes[old].core.term >= term
    assert_linearizable(c)


def test_a_learner_catches_up_by_snapshot_counts_for_nothing_then_is_promoted() -> None:
    c = cluster(snapshot_entries=5, snapshot_margin=0)
    lead = leader(c)
    run_until(c, lambda: c.nodes[lead].core.log.first_index() > 5)  # the leader compacted its log
    c.nodes[lead].core.propose_conf_change(enter((1, 2, 3), (4,)))
    run_until(c, lambda: c.nodes[4].core.membership.learners == (4,) and c.nodes[4].core.log.committed > 20)
    assert c.stats["installs"] >= 1  # its log started empty and the leader's was compacted
    assert c.nodes[4].core.role is Role.FOLLOWER
    # a learner is never asked for a vote and never campaigns
    assert 4 not in c.nodes[lead].core.voters
    # it serves a linearizable read by ReadIndex through the leader
    replies: list[Reply[int]] = []
    seen = c._on_reply
    c._on_reply = lambda node, reply: replies.append(reply) if reply.handle == -1 else seen(node, reply)  # type: ignore[method-assign]
    c.nodes[4].machine.submit(Request(id=999, op="get", command=Get(key="k0")), -1)
    run_until(c, lambda: bool(replies))
    assert replies[0].error is None, replies[0]
    lead = leader(c)
    c.nodes[lead].core.propose_conf_change(enter((1, 2, 3, 4)))
    run_until(c, lambda: everyone_has(c, Membership(voters=(1, 2, 3, 4)), (1, 2, 3, 4)))
    assert_linearizable(c)


def test_one_change_at_a_time_and_a_prepared_change_can_be_aborted() -> None:
    c = cluster()
    lead = leader(c)
    core = c.nodes[lead].core
    core.propose_conf_change(enter((1, 2, 3, 4), auto_leave=False))
    with pytest.raises(ConfChangeError, match="in progress"):
        core.propose_conf_change(enter((1, 2, 3, 5)))
    joint = Membership(voters=(1, 2, 3, 4), outgoing=(1, 2, 3), auto_leave=False)
    run_until(c, lambda: everyone_has(c, joint, (1, 2, 3, 4)))
    with pytest.raises(ConfChangeError, match="in progress"):
        c.nodes[leader(c)].core.propose_conf_change(enter((1, 2)))
    c.nodes[leader(c)].core.propose_conf_change(ConfChange(op="abort"))
    run_until(c, lambda: everyone_has(c, Membership(voters=(1, 2, 3)), (1, 2, 3)))
    assert_linearizable(c)


def test_a_stranger_cannot_be_added() -> None:
    c = cluster(spares=0)
    with pytest.raises(ConfChangeError, match=r"unknown member \[9\]"):
        c.nodes[leader(c)].core.propose_conf_change(enter((1, 2, 3, 9)))


def test_the_membership_survives_a_restart_from_snapshot_and_log() -> None:
    c = cluster(snapshot_entries=5, snapshot_margin=0)
    lead = leader(c)
    c.nodes[lead].core.propose_conf_change(enter((1, 2, 3, 4), (5,)))
    want = Membership(voters=(1, 2, 3, 4), learners=(5,))
    run_until(c, lambda: everyone_has(c, want) and all(n.storage.snapshot_meta().voters == want.voters
                                                        for n in c.nodes.values()))
    for i in c.ids:
        node = c.nodes[i]
        node.up = False
        c.nodes[i] = c._restart(node)
        assert c.nodes[i].core.latest_membership == want, i  # snapshot + the log's changes
        c._work(c.nodes[i])  # the first Ready applies the committed rest of the log
        assert c.nodes[i].core.membership == want, i
