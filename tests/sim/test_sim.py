"""Deterministic simulation of whole clusters: every Raft invariant after every event, then
linearizability of the client history (issue 3, "Done when"). Each failure prints its replay line."""

from __future__ import annotations

import random

import pytest
from click.testing import CliRunner
from raftlab.impl.raft import Entry, RaftCore
from raftlab.impl.raft.log import RaftLog

from raftlab.sim.cluster import SimCluster, SimConfig, simulate
from raftlab.sim.invariants import InvariantViolation


def assert_valid(seed: int, steps: int, config: SimConfig) -> None:
    outcome = simulate(seed, steps, config, time_limit=30)
    assert outcome.valid is True, (f"{outcome.explanation}\nreplay: {outcome.replay}\n"
                                   + "\n".join(outcome.last_events))
    assert outcome.stats["elections"] >= 1 and outcome.stats["ops"] > 50


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(6))
def test_faulty_runs_keep_every_invariant_and_are_linearizable(nodes: int, seed: int) -> None:
    assert_valid(seed, 4000, SimConfig(nodes=nodes))


@pytest.mark.parametrize("seed", range(3))
def test_heavy_loss_duplication_and_reordering(seed: int) -> None:
    assert_valid(1000 + seed, 4000, SimConfig(nodes=5, loss=0.2, duplicate=0.1, reorder=0.5))


@pytest.mark.parametrize("seed", range(3))
def test_lease_reads_under_faults(seed: int) -> None:
    assert_valid(2000 + seed, 4000, SimConfig(nodes=3, read_only="lease"))


def test_random_seed(seed: int) -> None:
    assert_valid(seed, 3000, SimConfig(nodes=random.Random(seed).choice((3, 5))))


def test_fault_free_run_commits_steadily() -> None:
    cluster = SimCluster(5, SimConfig(nodes=3, loss=0.0, duplicate=0.0, partitions=False, crashes=False,
                                      pauses=False, disk_stalls=False, clock_jumps=False, clock_drift=0.0))
    cluster.run(3000)
    assert cluster.stats["elections"] == 1  # no faults: one leader for the whole run
    assert cluster.stats["commits"] > 150  # entries applied, summed over the nodes


def test_same_seed_same_run() -> None:
    a, b = SimCluster(42, SimConfig(nodes=5)), SimCluster(42, SimConfig(nodes=5))
    trace_a: list[str] = []
    trace_b: list[str] = []
    for cluster, trace in ((a, trace_a), (b, trace_b)):
        for _ in range(2000):
            cluster.step()
            trace.extend(cluster.trace)
            cluster.trace.clear()
    assert trace_a == trace_b
    assert [op.to_dict() for op in a.history()] == [op.to_dict() for op in b.history()]
    c = SimCluster(43, SimConfig(nodes=5))
    c.run(2000)
    assert [op.to_dict() for op in c.history()] != [op.to_dict() for op in a.history()]


# --- the checks bite: deliberately broken variants are caught ---------------------------------


class AnyLogIsUpToDate(RaftLog):
    def is_up_to_date(self, last_index: int, term: int) -> bool:
        return True


class NoUpToDateCheckCore(RaftCore):
    """Grants votes without Raft §5.4.1's up-to-date-log check (test only)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.log = AnyLogIsUpToDate(self.log.storage, self.config.applied)


class NoUpToDateCheckCluster(SimCluster):
    core_type = NoUpToDateCheckCore


def test_missing_up_to_date_vote_check_is_caught() -> None:
    caught = [simulate(seed, 4000, SimConfig(nodes=3), cluster_type=NoUpToDateCheckCluster, time_limit=10)
              for seed in range(10)]
    assert any(o.valid is False for o in caught), [o.summary() for o in caught]
    assert any("invariant" in o.explanation or "linearizable" in o.explanation.lower()
               for o in caught if o.valid is False)


def test_ack_before_persist_is_caught() -> None:
    outcome = simulate(1, 2000, SimConfig(nodes=3, ack_before_persist=True))
    assert outcome.valid is False
    assert "before syncing" in outcome.explanation or "synced only" in outcome.explanation
    assert outcome.replay.startswith("raftlab sim --seed 1 --steps ")


def test_cli_exit_codes_and_summary() -> None:
    from raftlab.cli import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["sim", "--seed", "3", "--steps", "1500", "--nodes", "3"])
    assert ok.exit_code == 0, ok.output
    assert "seed 3: 1500 steps" in ok.output and "valid" in ok.output
    js = runner.invoke(cli, ["sim", "--seed", "3", "--steps", "1500", "--nodes", "3", "--json"])
    assert js.exit_code == 0 and '"valid": true' in js.output
    bad = runner.invoke(cli, ["sim", "--nodes", "0"])
    assert bad.exit_code == 2


def test_invariants_catch_diverging_logs_and_two_leaders() -> None:
    cluster = SimCluster(5, SimConfig(nodes=3, loss=0.0, partitions=False, crashes=False, pauses=False,
                                      disk_stalls=False, clock_jumps=False, snapshot_entries=0))  # a whole log
    cluster.run(1500)
    cluster.invariants.check(cluster.nodes, 250)  # healthy (step 250: a full pass)
    follower = next(n for n in cluster.nodes.values() if n.core.role.value == "follower")
    entries = follower.storage.entries(1, follower.storage.last_index() + 1)
    assert len(entries) > 3
    forged = [*entries[:1], Entry(term=entries[1].term, index=2, data=b"forged"), *entries[2:]]
    follower.storage.append(forged)  # same index and term at 2, other data: log matching is broken
    with pytest.raises(InvariantViolation, match="log matching"):
        cluster.invariants.check(cluster.nodes, 500, [])  # the full pass finds it deep in the log
    leader = next(n for n in cluster.nodes.values() if n.core.role.value == "leader")
    with pytest.raises(InvariantViolation, match="election safety"):
        cluster.invariants.on_leader(leader.core.term, follower.id, 51)


@pytest.mark.parametrize("seed", range(3))
def test_safety_without_pre_vote_and_check_quorum(seed: int) -> None:
    """Pre-vote and check-quorum are liveness aids; safety must not depend on them."""
    assert_valid(3000 + seed, 4000, SimConfig(nodes=5, pre_vote=False, check_quorum=False))
