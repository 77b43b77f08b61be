"""The risky windows of state-timed faults, driven by transcripts of status snapshots (pure)."""

from __future__ import annotations

import random

import pytest
from raftlab.nemesis import FAMILIES, package, parse_faults
from raftlab.nemesis.windows import UnknownWindow, Watch, lag_of, stale_leader


def st(role: str, term: int, commit: int = 10, last: int = 10, applied: int = 10) -> dict[str, object]:
    return {"role": role, "term": term, "commit": commit, "last_index": last, "applied": applied}


def test_just_elected_fires_only_for_a_leader_new_since_the_watch_began_and_only_briefly() -> None:
    w = Watch("just-elected")
    assert w.observe({"n1": st("leader", 2), "n2": st("follower", 2)}, 0.0) is None  # already leading
    assert w.observe({"n1": {"error": "timeout"}, "n2": st("candidate", 3)}, 1.0) is None  # no leader
    assert w.observe({"n2": st("leader", 3), "n1": {"error": "down"}}, 1.2) == "n2"
    assert w.observe({"n2": st("leader", 3)}, 1.8) is None  # no longer fresh (0.6 s later)


def test_uncommitted_names_the_leader_of_the_highest_term_holding_uncommitted_entries() -> None:
    w = Watch("uncommitted")
    assert w.observe({"n1": st("leader", 2, commit=10, last=10)}, 0.0) is None
    # a deposed leader of term 2 still answers as leader: the term-3 one is the target
    snap = {"n1": st("leader", 2, commit=10, last=14), "n2": st("leader", 3, commit=12, last=13)}
    assert w.observe(snap, 0.1) == "n2"


def test_lagging_needs_a_follower_twenty_entries_behind_the_leaders_commit() -> None:
    w = Watch("lagging")
    assert w.observe({"n1": st("leader", 4, commit=50), "n2": st("follower", 4, applied=31)}, 0.0) is None
    assert w.observe({"n1": st("leader", 4, commit=50), "n2": st("follower", 4, applied=30)}, 0.1) == "n1"


def test_unknown_windows_are_refused_and_the_timed_faults_are_registered() -> None:
    with pytest.raises(UnknownWindow, match="unknown window 'soon'"):
        Watch("soon")
    timed = parse_faults("kill-leader-uncommitted,partition-leader-uncommitted")
    assert [f.start for f in timed] == ["timed-kill", "timed-partition"]
    assert all(isinstance(f.values[0], dict) for f in FAMILIES["timed"].faults)


def test_a_timed_fault_alone_brings_the_components_for_its_fault_and_its_heal() -> None:
    alone = package("kill-leader-uncommitted,partition-leader-uncommitted", db=object(), rng=random.Random(1))
    assert {"timed-kill", "timed-partition", "start", "stop-partition"} <= alone.nemesis.fs()
    assert set(alone.heal_fs) == {"start", "stop-partition"}
    # with the plain faults chosen too, each f still has exactly one component (ComposedNemesis checks)
    both = package("kill,partition,kill-leader-uncommitted", db=object(), rng=random.Random(1))
    assert {"timed-kill", "kill", "start", "start-partition"} <= both.nemesis.fs()


def test_lag_of_counts_the_committed_entries_a_host_has_not_applied() -> None:
    snap = {"n1": st("leader", 4, commit=50), "n2": st("follower", 4, applied=31), "n3": {"error": "timeout"}}
    assert lag_of(snap, "n2") == 19
    assert lag_of(snap, "n3", last_applied=44) == 6  # cut off: its last answer stands in
    assert lag_of({"n2": st("follower", 4, applied=31)}, "n2") is None  # no leader answered


def test_stale_candidate_brings_both_the_kill_and_the_partition_and_heals_by_start() -> None:
    (fault,) = parse_faults("stale-candidate")
    assert fault.start == "timed-stale" and fault.stop == "start"
    alone = package("stale-candidate", db=object(), rng=random.Random(1))
    assert {"timed-stale", "kill", "start", "start-partition", "stop-partition"} <= alone.nemesis.fs()
    assert "timed-kill" not in alone.nemesis.fs()  # only what was asked for


def test_stale_leader_names_the_leader_once_the_cut_off_candidate_missed_enough() -> None:
    snap = {"n1": st("leader", 4, commit=50), "n2": {"error": "timeout"}, "n3": st("follower", 4, applied=50)}
    assert stale_leader(snap, "n2", last_applied=40, want=20) is None  # 10 missed
    assert stale_leader(snap, "n2", last_applied=30, want=20) == "n1"
    assert stale_leader(snap, "n3", last_applied=0, want=1) is None  # it missed nothing (it answered: 50)
    assert stale_leader({"n2": st("leader", 5, commit=80)}, "n2", 0, 1) is None  # the candidate leads: no
    assert stale_leader({"n3": st("follower", 4)}, "n2", 0, 1) is None  # no leader answered
