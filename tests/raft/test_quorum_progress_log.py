"""The pure parts: majority arithmetic, flow control and the log's conflict search."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from raftlab.impl.raft import Entry
from raftlab.impl.raft.log import RaftLog
from raftlab.impl.raft.progress import Inflights, Progress, ProgressState
from raftlab.impl.raft.quorum import VoteResult, committed_index, vote_result
from raftlab.impl.storage.memory import MemoryStorage


@given(st.lists(st.integers(0, 50), min_size=1, max_size=7))
def test_committed_index_is_the_largest_index_a_majority_has(acks: list[int]) -> None:
    """§5.3: an entry is committed once a majority stores it; brute force agrees with the sort."""
    voters = tuple(range(1, len(acks) + 1))
    acked = dict(zip(voters, acks, strict=True))
    brute = max(i for i in range(51) if sum(a >= i for a in acks) > len(acks) // 2)
    assert committed_index(voters, acked) == brute


def test_vote_result() -> None:
    """§5.2: a candidate wins with a majority, loses once a majority is out of reach."""
    assert vote_result((1, 2, 3), {1: True, 2: True}) is VoteResult.WON
    assert vote_result((1, 2, 3), {1: True, 2: False}) is VoteResult.PENDING
    assert vote_result((1, 2, 3), {1: True, 2: False, 3: False}) is VoteResult.LOST
    assert vote_result((1, 2, 3, 4), {1: True, 2: True}) is VoteResult.PENDING


def test_inflights_limit_count_and_bytes() -> None:
    flights = Inflights(max_count=3, max_bytes=100)
    flights.add(5, 60)
    assert not flights.full()
    flights.add(7, 50)
    assert flights.full()  # bytes
    flights.free_le(5)
    assert not flights.full() and flights.bytes == 50
    flights.add(8, 1)
    flights.add(9, 1)
    assert flights.full()  # count


def test_progress_probe_then_replicate() -> None:
    pr = Progress(10, Inflights(4, 1 << 20))
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.probe_sent = True
    assert pr.is_paused()
    assert pr.maybe_decr_to(9, 4) and pr.next == 5  # the hint jumps back at once
    assert not pr.maybe_decr_to(9, 2)  # stale rejection
    assert pr.maybe_update(4)
    pr.become_replicate()
    assert pr.next == 5 and pr.match == 4


def test_find_conflict_by_term() -> None:
    """Fast back-tracking (thesis §3.5 end): the largest index <= i whose term is <= t."""
    log = RaftLog(MemoryStorage([Entry(term=t, index=i + 1) for i, t in enumerate([1, 1, 2, 2, 4, 4])]))
    assert log.find_conflict_by_term(6, 3) == 4
    assert log.find_conflict_by_term(6, 1) == 2
    assert log.find_conflict_by_term(3, 5) == 3
    assert log.find_conflict_by_term(6, 0) == 0


def test_follower_truncates_a_conflicting_uncommitted_suffix() -> None:
    """§5.3: an existing entry that conflicts with a new one (same index, other term) is deleted
    with everything after it."""
    log = RaftLog(MemoryStorage([Entry(term=1, index=1), Entry(term=1, index=2), Entry(term=1, index=3)]))
    last = log.maybe_append(1, 1, 0, [Entry(term=2, index=2)])
    assert last == 2 and log.last_index() == 2 and log.term(2) == 2
    assert log.maybe_append(2, 1, 0, []) is None  # term mismatch at 2


@given(st.integers(0, 8), st.integers(0, 8), st.integers(1, 12), st.integers(1, 12), st.one_of(st.none(), st.integers(1, 200)))
def test_log_entries_across_the_stable_unstable_seam(stable: int, unstable: int, lo: int, hi: int,
                                                     max_bytes: int | None) -> None:
    """RaftLog.entries over storage + unstable tail equals slicing one flat log (at least one
    entry when any is in range, never more than max_bytes beyond the first)."""
    flat = [Entry(term=1, index=i, data=b"d" * (i * 3)) for i in range(1, stable + unstable + 1)]
    log = RaftLog(MemoryStorage(flat[:stable]))
    log.append(flat[stable:])
    got = log.entries(lo, hi, max_bytes)
    want = [e for e in flat if lo <= e.index < hi]
    assert got == want[:len(got)]
    if want:
        assert got
        if max_bytes is None:
            assert got == want
        else:
            assert len(got) == 1 or sum(len(e.data) + 16 for e in got) <= max_bytes
            if len(got) < len(want):
                assert sum(len(e.data) + 16 for e in want[:len(got) + 1]) > max_bytes
