"""Coverage: the simulator and campaigns say which risky situations a run actually reached.

The simulated part runs real seeds (swarm-drawn fault mixes) and checks that the situations the
Raft paper warns about are reached and counted, and that coverage only looks: the same seed gives
the same events with or without reading it. The campaign part feeds ``coverage.campaign`` the
shape of history and node log a real run stores (tests/campaign/test_dtkv.py runs a real one).
"""

from __future__ import annotations

from pathlib import Path

from raftlab import coverage
from raftlab.history import NEMESIS, History, Op, OpType
from raftlab.sim.cluster import simulate
from raftlab.sim.hunt import hunt
from raftlab.swarm import swarm_config


def test_swarm_seeds_reach_the_papers_risky_situations() -> None:
    names = ("older-term-entry-committed", "conflicting-suffix-truncated", "vote-refused-stale-log",
             "two-leaders", "leader-stepped-down")
    runs = []
    for s in range(1, 41):  # as many seeds as it takes, up to 40 (the first 24 reach them all today)
        runs.append(simulate(s, 5000, swarm_config(s)).coverage)
        merged = coverage.merge(runs)
        if all(merged["counts"][name] > 0 for name in names):
            break
    for name in names:
        assert merged["counts"][name] > 0, (name, len(runs), merged)
    assert set(merged["reached"]) | set(merged["missed"]) == set(coverage.SIM_SITUATIONS)
    assert coverage.describe(merged).startswith(f"coverage: {len(merged['reached'])}/{len(coverage.SIM_SITUATIONS)}")


def test_a_quiet_network_without_faults_reaches_almost_nothing() -> None:
    cfg = swarm_config(1)
    cfg.loss = cfg.duplicate = cfg.reorder = 0.0
    cfg.partitions = cfg.crashes = cfg.pauses = cfg.disk_stalls = cfg.clock_jumps = False
    cfg.scenarios = ()  # the targeted scenarios are faults too
    cov = simulate(7, 3000, cfg).coverage
    assert cov["counts"]["conflicting-suffix-truncated"] == 0 and cov["counts"]["two-leaders"] == 0


def test_hunting_is_seeded_and_reports_merged_coverage_and_its_rate() -> None:
    a = hunt(11, 0.0, 800, swarm=True)  # a zero budget still runs one seed
    b = hunt(11, 0.0, 800, swarm=True)
    assert a.seeds_run == b.seeds_run == 1 and a.valid
    assert a.coverage == b.coverage and set(a.coverage["counts"]) == set(coverage.SIM_SITUATIONS)
    assert swarm_config(11) == swarm_config(11) and swarm_config(11) != swarm_config(12)


def op(type_: str, process: object, f: str, value: object = None, error: str | None = None, i: int = 0) -> Op:
    return Op(type=OpType(type_), process=process, f=f, value=value, key="k", time=i, index=i, error=error)


def test_campaign_coverage_reads_leader_faults_absent_cas_and_elections(tmp_path: Path) -> None:
    (tmp_path / "n1").mkdir()
    (tmp_path / "n1" / "node.log").write_text("1 became leader at term 2\n1 stepped down at term 2: no quorum "
                                              "heard from (check-quorum)\n")
    (tmp_path / "n2").mkdir()
    (tmp_path / "n2" / "node.log").write_text("2 became leader at term 3\n")
    events = [
        op("invoke", NEMESIS, "kill", "leader", i=0), op("info", NEMESIS, "kill", {"targets": ["n1"], "done": ["n1"]}, i=1),
        op("invoke", 0, "read", i=2), op("ok", 0, "read", 5, i=3),
        op("invoke", NEMESIS, "start", None, i=4), op("info", NEMESIS, "start", {"done": ["n1"]}, i=5),
        op("invoke", 1, "cas", [None, 1], i=6), op("ok", 1, "cas", [None, 1], i=7),
        op("invoke", 1, "cas", [None, 2], i=8), op("fail", 1, "cas", [None, 2], error="cas mismatch: found 1", i=9),
        op("invoke", 2, "write", 3, i=10), op("info", 2, "write", None, error="IndeterminateError", i=11),
    ]
    cov = coverage.campaign(History(events), tmp_path)
    assert set(cov["reached"]) == {"leader-killed", "read-during-fault", "cas-absent-ok", "cas-absent-refused",
                                   "indeterminate-write", "elections", "check-quorum-step-down"}
    assert "majority-down" in cov["missed"] and "leader-isolated" in cov["missed"]


def test_campaign_coverage_counts_a_state_timed_kill_as_a_leader_kill_in_its_window(tmp_path: Path) -> None:
    events = [
        op("invoke", NEMESIS, "timed-kill", {"when": "uncommitted"}, i=0),
        op("info", NEMESIS, "timed-kill", {"targets": ["n2"], "done": ["n2"], "when": "uncommitted"}, i=1),
        op("invoke", NEMESIS, "timed-kill", {"when": "lagging"}, i=2),
        op("info", NEMESIS, "timed-kill", {"applied": False}, error="window lagging not seen in 10s", i=3),
    ]
    cov = coverage.campaign(History(events), tmp_path)
    assert cov["counts"]["leader-killed"] == 1 and cov["counts"]["fault-in-window"] == 1


def test_campaign_coverage_counts_a_stale_candidate_and_its_leader_kill(tmp_path: Path) -> None:
    stale = {"targets": ["n1"], "done": ["n1"], "candidate": "n4", "lag": 150, "leader": "n1", "elected": "n5"}
    events = [
        op("invoke", NEMESIS, "timed-stale", {"lag": 20}, i=0), op("info", NEMESIS, "timed-stale", stale, i=1),
        op("invoke", 0, "read", i=2), op("ok", 0, "read", 5, i=3),
        op("invoke", NEMESIS, "timed-stale", {"lag": 20}, i=4),
        op("info", NEMESIS, "timed-stale", {"applied": False}, error="no stale candidate in 4s (no leader)", i=5),
    ]
    cov = coverage.campaign(History(events), tmp_path)
    assert cov["counts"]["stale-candidate"] == 1 and cov["counts"]["leader-killed"] == 1
    assert cov["counts"]["read-during-fault"] == 1  # the killed leader is down until start
