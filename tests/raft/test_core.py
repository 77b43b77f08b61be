"""One test per claim of the Raft paper (and Ongaro's thesis) that the core implements, each
citing the section it checks (etcd's raft_paper_test.go). Scenarios run on InteractionEnv, whose
messages move only when a test moves them."""

from __future__ import annotations

import random

import pytest
from raftlab.impl.raft import (
    ConfigError,
    Entry,
    HardState,
    Message,
    MsgType,
    NotLeader,
    RaftConfig,
    RaftCore,
    Role,
)
from raftlab.impl.raft.messages import DroppedRead
from raftlab.impl.storage.memory import MemoryStorage

from raftlab.sim.interaction import InteractionEnv


def cluster(n: int = 3, **opts: str) -> InteractionEnv:
    env = InteractionEnv()
    env.handle(f"add-nodes {n} " + " ".join(f"{k}={v}" for k, v in opts.items()))
    return env


def elect(env: InteractionEnv, node: int = 1) -> RaftCore:
    env.handle(f"campaign {node}")
    env.handle("stabilize")
    core = env.nodes[node].core
    assert core.role is Role.LEADER
    return core


def core_with_log(node: int, entries: list[tuple[int, int]], term: int, **cfg: object) -> RaftCore:
    storage = MemoryStorage([Entry(term=t, index=i) for t, i in entries], HardState(term=term))
    config = RaftConfig(id=node, voters=(1, 2, 3), **cfg)  # type: ignore[arg-type]
    return RaftCore(config, storage, rng=random.Random(node))


def test_election_timeout_is_randomized_from_the_injected_rng() -> None:
    """§5.2: timeouts are drawn from [election_tick, 2 * election_tick); the same seed, the same draw."""
    cfg = RaftConfig(id=1, voters=(1, 2, 3), election_tick=10)
    draws = [RaftCore(cfg, MemoryStorage(), rng=random.Random(s)).randomized_timeout for s in range(50)]
    assert all(10 <= d < 20 for d in draws) and len(set(draws)) > 3
    again = [RaftCore(cfg, MemoryStorage(), rng=random.Random(s)).randomized_timeout for s in range(50)]
    assert draws == again


def test_a_follower_campaigns_after_its_timeout_and_wins() -> None:
    """§5.2: a follower that hears nothing for an election timeout campaigns and wins a majority."""
    env = cluster()
    core = env.nodes[2].core
    for _ in range(core.randomized_timeout):
        core.tick()
    env.handle("stabilize")
    assert core.role is Role.LEADER and core.term == 1
    assert [n.core.status().leader for n in env.nodes.values()] == [2, 2, 2]


def test_one_vote_per_term() -> None:
    """§5.2: each server votes for at most one candidate in a term (first come, first served)."""
    core = core_with_log(3, [], 0, pre_vote=False, check_quorum=False)
    core.step(Message(type=MsgType.VOTE, to=3, from_=1, term=1))
    core.step(Message(type=MsgType.VOTE, to=3, from_=2, term=1))
    rd = core.ready()
    assert [(m.to, m.reject) for m in rd.send_after_persist] == [(1, False), (2, True)]
    assert rd.hard_state == HardState(term=1, vote=1, commit=0) and rd.must_sync


def test_vote_refused_to_a_less_up_to_date_log() -> None:
    """§5.4.1: a vote is granted only to a candidate whose log is at least as up to date."""
    core = core_with_log(3, [(1, 1), (2, 2)], 2, pre_vote=False, check_quorum=False)
    core.step(Message(type=MsgType.VOTE, to=3, from_=1, term=3, index=5, log_term=1))  # longer, older term
    core.step(Message(type=MsgType.VOTE, to=3, from_=2, term=3, index=2, log_term=2))  # same as ours
    assert [(m.to, m.reject) for m in core.ready().send_after_persist] == [(1, True), (2, False)]


def test_votes_leave_only_after_persisting() -> None:
    """Ready contract (§5.2 'persist before responding'): vote and append responses are
    send_after_persist, in the same Ready as the hard state and entries they promise."""
    env = cluster()
    env.handle("campaign 1")
    env.handle("process-ready 1")
    env.handle("deliver-msgs 2")  # pre-vote
    rd = env.nodes[2].core.ready()
    assert not rd.send_now and [m.type for m in rd.send_after_persist] == [MsgType.PRE_VOTE_RESP]


def test_only_entries_of_the_current_term_commit_by_counting() -> None:
    """§5.4.2: a leader never commits an entry of an earlier term by counting replicas; it commits
    once an entry of its own term (the no-op, §8) reaches a majority."""
    core = core_with_log(1, [(1, 1), (2, 2)], 2, pre_vote=False)
    core.campaign()
    for voter in (2, 3):
        core.step(Message(type=MsgType.VOTE_RESP, to=1, from_=voter, term=3))
    assert core.role is Role.LEADER
    rd = core.ready()
    assert [e.describe() for e in rd.entries] == ["3/3 NOOP"]
    core.log.storage.append(rd.entries)  # type: ignore[attr-defined]
    core.advance(rd)
    core.step(Message(type=MsgType.APP_RESP, to=1, from_=2, term=3, index=2))  # acks the term-2 entry
    assert core.log.committed == 0
    core.step(Message(type=MsgType.APP_RESP, to=1, from_=2, term=3, index=3))
    assert core.log.committed == 3


def test_leader_counts_itself_only_once_persisted() -> None:
    """Thesis §10.2.1: the leader may replicate before persisting, but counts its own log only
    after the shell persisted it, so a committed entry is durable on a majority."""
    env = cluster()
    leader = elect(env)
    term, index = leader.propose(b"a")
    rd = leader.ready()  # not yet persisted by the leader
    leader.step(Message(type=MsgType.APP_RESP, to=1, from_=2, term=term, index=index))
    assert leader.log.committed < index
    env.nodes[1].storage.append(rd.entries)
    env.nodes[1].storage.sync()
    leader.advance(rd)
    assert leader.log.committed == index


def test_pre_vote_does_not_inflate_terms() -> None:
    """Thesis §9.6: a partitioned node only pre-campaigns; its term and everyone else's stay put."""
    env = cluster()
    elect(env)
    env.handle("partition 1,2 3")
    env.handle("tick 3 100")
    env.handle("stabilize")
    assert env.nodes[3].core.term == 1 and env.nodes[1].core.term == 1
    env.handle("heal")
    env.handle("tick 1")
    env.handle("stabilize")
    assert env.nodes[1].core.role is Role.LEADER and env.nodes[3].core.status().leader == 1


def test_without_pre_vote_a_partitioned_node_inflates_its_term() -> None:
    """The contrast case for thesis §9.6 (the check above could pass for another reason)."""
    env = cluster(**{"pre-vote": "false"})
    elect(env)
    env.handle("partition 1,2 3")
    env.handle("tick 3 100")
    env.handle("stabilize")
    assert env.nodes[3].core.term > 3


def test_check_quorum_steps_a_cut_off_leader_down() -> None:
    """Thesis §6.2: a leader that hears from no majority for an election timeout steps down."""
    env = cluster()
    leader = elect(env)
    env.handle("partition 1 2,3")
    env.handle("tick 1 20")
    assert leader.role is Role.FOLLOWER
    with pytest.raises(NotLeader):
        leader.propose(b"x")


def test_leader_lease_ignores_disruptive_votes() -> None:
    """Thesis §4.2.3: with check-quorum, a follower that heard a leader within the election
    timeout ignores a vote request of a higher term, so a flaky node cannot depose the leader."""
    env = cluster(**{"pre-vote": "false"})
    elect(env)
    follower = env.nodes[2].core
    follower.step(Message(type=MsgType.VOTE, to=2, from_=3, term=5, index=9, log_term=1))
    assert follower.term == 1 and not follower.ready().send_after_persist


def test_propose_on_a_follower_names_the_leader() -> None:
    """§5.1: clients are redirected to the leader; the refusal is definite (nothing proposed)."""
    env = cluster()
    elect(env)
    with pytest.raises(NotLeader) as info:
        env.nodes[3].core.propose(b"x")
    assert info.value.leader_hint == 1 and env.nodes[3].core.log.last_index() == 1


def test_pipelining_is_bounded_by_max_inflight_msgs_and_batched_by_size() -> None:
    """etcd's flow control: in REPLICATE, MsgApps are pipelined up to max_inflight_msgs, each at
    most max_size_per_msg bytes (at least one entry), then the leader waits for acks."""
    env = cluster(**{"max-inflight-msgs": "2", "max-size-per-msg": "100"})
    leader = elect(env)
    for _ in range(10):
        leader.propose(b"v" * 60)
    rd = leader.ready()
    to2 = [m for m in rd.send_now if m.to == 2 and m.type is MsgType.APP]
    assert len(to2) == 2 and all(len(m.entries) == 1 for m in to2)
    assert leader.prs[2].is_paused()


def test_readindex_waits_for_a_commit_in_the_leaders_term() -> None:
    """Thesis §6.4 step 1: a new leader knows its commit index only after committing an entry of
    its term, so a read arriving before the no-op commits waits for it."""
    env = cluster()
    env.handle("campaign 1")
    for _ in range(4):  # pre-vote and vote rounds; the leader's no-op is not yet acknowledged
        env.handle("process-ready 1 2 3")
        env.handle("deliver-msgs 1 2 3")
    leader = env.nodes[1].core
    assert leader.role is Role.LEADER and leader.log.committed == 0
    leader.read_index(b"r")
    assert "ReadState" not in env.handle("process-ready 1")
    out = env.handle("stabilize")
    assert out.index("CommittedEntries") < out.index("ReadState(index=1, ctx=72)")


def test_lease_read_needs_a_quorum_stamp() -> None:
    """Thesis §6.4.1: a lease read is served locally only within the lease that started at the
    heartbeat stamp a quorum echoed; a fresh leader without echoes falls back to ReadIndex."""
    env = cluster(**{"read-only": "lease"})
    env.handle("tick 2 10")
    env.handle("tick 3 10")
    leader = elect(env)
    leader.read_index(b"a")
    rd = leader.ready()
    # a heartbeat round, carrying the leader's read sequence number (not the caller's bytes)
    assert not rd.read_states and any(m.type is MsgType.HEARTBEAT and m.context for m in rd.send_now)
    assert leader.lease_ticks() == 6 and round(leader.lease_drift_bound(), 2) == 1.29


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="election_tick"):
        RaftConfig(id=1, voters=(1,), election_tick=1, heartbeat_tick=1)
    with pytest.raises(ConfigError, match="voters"):
        RaftConfig(id=1, voters=(1, 1))
    with pytest.raises(ConfigError, match="read_only"):
        RaftConfig(id=1, voters=(1,), read_only="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="check_quorum"):
        RaftConfig(id=1, voters=(1,), read_only="lease", check_quorum=False)


def test_single_node_cluster_commits_alone() -> None:
    env = cluster(1)
    leader = elect(env)
    leader.propose(b"x")
    env.handle("stabilize")
    assert leader.log.committed == 2 and env.nodes[1].applied[-1] == "1/2 b'x'"


def test_messages_from_strangers_are_dropped() -> None:
    """A misrouted message (other target, unknown sender) changes nothing, not even the term."""
    core = core_with_log(1, [], 0)
    core.step(Message(type=MsgType.APP, to=1, from_=9, term=7))
    core.step(Message(type=MsgType.APP, to=2, from_=3, term=7))
    assert core.term == 0 and not core.has_ready()


def test_forwarded_reads_are_answered_once_or_dropped_on_a_term_change() -> None:
    """Thesis §6.4: a follower's read goes to the leader; if the term changes first, the read is
    reported in dropped_reads (it can never complete), and a late answer is ignored."""
    env = cluster()
    elect(env)
    follower = env.nodes[2].core
    follower.read_index(b"f1")
    env.handle("process-ready 2")
    env.handle("deliver-msgs 1")
    env.handle("process-ready 1")
    assert "ReadState(index=1, ctx=6631)" in env.handle("stabilize")
    env.handle("tick 1")
    assert "ReadState" not in env.handle("stabilize")  # answered once
    follower.read_index(b"f2")
    follower.step(Message(type=MsgType.APP, to=2, from_=3, term=5, index=0, log_term=0))  # a new term
    rd = follower.ready()
    assert rd.dropped_reads == (DroppedRead(context=b"f2", reason="term changed"),)
    follower.step(Message(type=MsgType.READ_INDEX_RESP, to=2, from_=1, term=5, index=1, context=b"f2"))
    assert not follower.ready().read_states


def test_an_ack_waiting_for_a_persist_is_dropped_when_a_newer_leader_truncates_its_entry() -> None:
    """§5.3 and Figure 2: an append is acknowledged only once durable. A follower that accepts an
    entry from the term-2 leader and, before persisting, takes a term-3 append truncating it must not
    send the term-2 ack (the simulator found this: the old leader could count an entry that never
    reached the follower's disk)."""
    core = core_with_log(2, [(1, 1)], term=2)
    core.step(Message(type=MsgType.APP, to=2, from_=1, term=2, index=1, log_term=1, commit=1,
                      entries=(Entry(term=2, index=2, data=b"old"),)))
    core.step(Message(type=MsgType.APP, to=2, from_=3, term=3, index=1, log_term=1, commit=1,
                      entries=(Entry(term=3, index=2, data=b"new"),)))
    rd = core.ready()
    assert [(e.term, e.index) for e in rd.entries] == [(3, 2)]
    acks = [m for m in rd.send_after_persist if m.type is MsgType.APP_RESP and not m.reject]
    assert [(m.to, m.term, m.index) for m in acks] == [(3, 3, 2)]


def test_a_leader_that_steps_down_in_the_same_batch_sends_no_append_under_the_new_term() -> None:
    """§5.1: only a leader sends appends. A candidate that wins (its noop's broadcast is owed until
    the next Ready) and, in the same batch, steps down for a higher term must not send that
    broadcast stamped with the new term: followers would take it for a leader of that term (the
    simulator found this after a pause delivered a whole election's messages at once)."""
    core = core_with_log(1, [(1, 1)], term=1, pre_vote=False, check_quorum=False)
    for _ in range(core.randomized_timeout):
        core.tick()
    assert core.role is Role.CANDIDATE
    core.ready()  # the vote requests leave
    core.step(Message(type=MsgType.VOTE_RESP, to=1, from_=2, term=core.term))
    assert core.role is Role.LEADER
    core.step(Message(type=MsgType.VOTE, to=1, from_=3, term=core.term + 1, index=2, log_term=core.term))
    assert core.role is Role.FOLLOWER
    rd = core.ready()
    assert not [m for m in (*rd.send_now, *rd.send_after_persist) if m.type is MsgType.APP]


def test_a_rejoining_member_votes_again_once_a_heartbeat_commits_an_entry_of_this_term() -> None:
    """`node repair --empty`: a member that lost its data grants no vote until it holds an entry of
    the current term as committed. A restarted leader's commit index starts low (meta's commit is
    written lazily), so its appends can carry a commit of 0 and the commit then arrives by
    heartbeats alone on an idle cluster; the member must vote again then, not only after the next
    write (found with real processes: tests/impl/test_storage_faults.py)."""
    core = core_with_log(3, [], term=0, rejoin=True)
    assert core.rejoining
    for peer in (1, 2):
        core.step(Message(type=MsgType.TERM_PROBE_RESP, to=3, from_=peer, term=2, context=core._probe_nonce))
    assert core.term_known and core.term == 2
    entries = tuple(Entry(term=1 if i < 3 else 2, index=i) for i in range(1, 4))
    core.step(Message(type=MsgType.APP, to=3, from_=2, term=2, index=0, log_term=0, commit=0, entries=entries))
    assert core.rejoining  # it holds the entries, but none is committed yet
    core.step(Message(type=MsgType.HEARTBEAT, to=3, from_=2, term=2, commit=2))
    assert core.rejoining  # committed through 2, an entry of term 1: older commits may still be missing
    core.step(Message(type=MsgType.HEARTBEAT, to=3, from_=2, term=2, commit=3))
    assert not core.rejoining and core.vote == 2
    core.step(Message(type=MsgType.VOTE, to=3, from_=1, term=2, index=3, log_term=2))
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 2  # counted as its vote for the leader
    assert [m.reject for m in rd.send_after_persist if m.type is MsgType.VOTE_RESP] == [True]


def test_a_rejoining_member_follows_no_leader_before_a_quorum_of_the_others_told_it_their_terms() -> None:
    """`node repair --empty` loses the term too. Leader 2 of term 2 committed with our acks; we
    were wiped; leader 1 of term 1 was deposed but does not know it yet. If we acked 1's appends,
    1 and we would be a majority of three and commit over 2's committed entries (found by the
    simulator's swarm: seed 2962, tests/sim/test_storage_faults.py). A quorum of the *others*
    meets every election quorum in a member that still holds its term, so we wait for one."""
    core = core_with_log(3, [], term=0, rejoin=True)
    probes = _sent(core)
    assert sorted((m.type, m.to) for m in probes) == [(MsgType.TERM_PROBE, 1), (MsgType.TERM_PROBE, 2)]
    nonce = probes[0].context
    stale = Message(type=MsgType.APP, to=3, from_=1, term=1, index=0, log_term=0, commit=0,
                    entries=(Entry(term=1, index=1),))
    core.step(stale)
    assert not core.term_known and not _sent(core) and core.log.last_index() == 0  # not acked
    core.step(Message(type=MsgType.TERM_PROBE_RESP, to=3, from_=1, term=1, context=nonce))
    core.step(Message(type=MsgType.TERM_PROBE_RESP, to=3, from_=2, term=2, context=b"another boot"))
    assert not core.term_known  # one answer of this boot: 1 alone is no quorum of the others
    core.step(Message(type=MsgType.TERM_PROBE_RESP, to=3, from_=2, term=2, context=nonce))
    assert core.term_known and core.term == 2
    core.step(stale)
    assert core.log.last_index() == 0 and not [m for m in _sent(core) if m.type is MsgType.APP_RESP and m.term == 1]
    core.step(Message(type=MsgType.APP, to=3, from_=2, term=2, index=0, log_term=0, commit=0,
                      entries=(Entry(term=2, index=1),)))
    assert core.log.last_index() == 1 and [m.index for m in _sent(core) if m.type is MsgType.APP_RESP] == [1]


def test_any_member_answers_a_term_probe_with_its_term_and_changes_nothing() -> None:
    core = core_with_log(1, [(1, 1)], term=3)
    core.step(Message(type=MsgType.TERM_PROBE, to=1, from_=3, term=0, context=b"n"))
    (answer,) = _sent(core)
    assert (answer.type, answer.to, answer.term, answer.context) == (MsgType.TERM_PROBE_RESP, 3, 3, b"n")
    assert core.term == 3 and core.role is Role.FOLLOWER


def _sent(core: RaftCore) -> list[Message]:
    if not core.has_ready():
        return []
    rd = core.ready()
    return [*rd.send_now, *rd.send_after_persist]


def test_an_append_contradicting_the_committed_prefix_is_refused_not_answered() -> None:
    """§5.4 (leader completeness): every leader holds every committed entry, so an append below
    the commit index whose entries differ from what this follower committed comes from a broken
    leader. It is refused as a ``conflict`` (the campaign's log check counts that line), changes
    nothing and is not answered as if it matched; a late duplicate of the same entries is
    answered with the commit index as before."""
    storage = MemoryStorage([Entry(term=1, index=i) for i in (1, 2, 3)], HardState(term=2, commit=3))
    core = RaftCore(RaftConfig(id=2, voters=(1, 2, 3)), storage, rng=random.Random(2))
    assert core.log.committed == 3
    core.step(Message(type=MsgType.APP, to=2, from_=1, term=2, index=1, log_term=1, commit=3,
                      entries=(Entry(term=1, index=2), Entry(term=1, index=3))))
    answers = [m for m in _sent(core) if m.type is MsgType.APP_RESP]
    assert [(m.index, m.reject) for m in answers] == [(3, False)] and not core.refusals.counts
    core.step(Message(type=MsgType.APP, to=2, from_=1, term=2, index=1, log_term=1, commit=3,
                      entries=(Entry(term=2, index=2),)))
    assert core.refusals.counts == {"conflict": 1}
    assert not [m for m in _sent(core) if m.type is MsgType.APP_RESP]
    assert core.log.term(2) == 1 and core.log.last_index() == 3
    core.step(Message(type=MsgType.APP, to=2, from_=1, term=2, index=2, log_term=2, commit=3))  # its previous entry
    assert core.refusals.counts == {"conflict": 2}
