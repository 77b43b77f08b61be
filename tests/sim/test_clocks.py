"""Clocks, pauses and stalled disks against the node machine (issue 9).

Lease reads are sound only while no follower's clock runs faster than the leader's by more than
``RaftCore.lease_drift_bound()``; ReadIndex assumes nothing about clocks. The race below is
scripted on the transcript harness (real machines, messages moved by hand, each node on its own
clock): the leader is cut off with a fresh lease, the other two elect a leader and commit a
write, and the old leader is asked for the key at every step while its lease may hold. Well
beyond the bound (3x, 4x) it answers the old value (a stale read, which is what lease mode
risks); within the bound it never does. The bound is a worst case (whole ticks rounded the wrong
way at both ends, the shortest election timeout): with this scenario's seeded timeouts the first
stale answer appears at 2.6x. The seeded simulations then run whole clusters with drifting and jumping
clocks, pauses and stalled disks, and must stay valid.
"""

from __future__ import annotations

import pytest

from raftlab.sim.cluster import SimCluster, SimConfig, simulate
from raftlab.sim.interaction import InteractionEnv


def lease_race(ratio: float) -> list[str]:
    """Stale answers of the cut-off old leader when followers' clocks run ``ratio`` times faster."""
    env = InteractionEnv()
    env.handle("add-nodes 3 read-only=lease election-tick=10")
    for node in (1, 2, 3):
        env.handle(f"tick {node} 10")  # past the boot lease, so node 1 can be elected
    env.handle("campaign 1")
    env.handle("stabilize")
    env.handle("put 1 k old")
    env.handle("tick 1")  # a heartbeat round: the lease starts at this stamp
    env.handle("stabilize")
    env.handle("partition 1 2,3")
    written = False
    stale: list[str] = []
    for _ in range(200):  # 20 of the leader's ticks
        for node_id, rate in ((1, 1.0), (2, ratio), (3, ratio)):
            node = env.nodes[node_id]
            node.now += 0.1 * rate
            node.machine.tick(node.now)
            node.machine.process_inputs()
        out = env.handle("stabilize 2 3")
        leader = next((n for n in (2, 3) if env.nodes[n].core.role.value == "leader"), None)
        if leader is not None and not written:
            env.handle(f"put {leader} k new")
            out = env.handle("stabilize 2 3")
            written = "reply" in out and "ok" in out
        if written:
            env.handle("get 1 k")
            out = env.handle("process-ready 1")
            stale.extend(line for line in out.splitlines() if line.startswith("reply") and "b'old'" in line)
        env.handle("process-ready 1")
    assert written, "the majority side never elected a leader and committed the write"
    return stale


def test_the_documented_drift_bound() -> None:
    env = InteractionEnv()
    env.handle("add-nodes 3 read-only=lease election-tick=10")
    assert env.nodes[1].core.lease_ticks() == 6
    assert round(env.nodes[1].core.lease_drift_bound(), 3) == 1.286


@pytest.mark.parametrize("ratio", [1.0, 1.15, 1.28])
def test_lease_reads_stay_linearizable_within_the_drift_bound(ratio: float) -> None:
    assert lease_race(ratio) == []


@pytest.mark.parametrize("ratio", [3.0, 4.0])
def test_lease_reads_go_stale_beyond_the_drift_bound(ratio: float) -> None:
    stale = lease_race(ratio)
    assert stale, "a follower clock this fast must let a new leader commit inside the old lease"


def assert_valid(seed: int, steps: int, config: SimConfig) -> None:
    outcome = simulate(seed, steps, config, time_limit=30)
    assert outcome.valid is True, (f"{outcome.explanation}\nreplay: {outcome.replay}\n"
                                   + "\n".join(outcome.last_events))
    assert outcome.stats["pauses"] + outcome.stats["disk_stalls"] > 0


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_lease_mode_within_the_bound_under_pauses_and_stalled_disks(nodes: int, seed: int) -> None:
    assert_valid(4000 + seed, 4000, SimConfig(nodes=nodes, read_only="lease", clock_drift=0.2))


@pytest.mark.parametrize("seed", range(4))
def test_index_mode_with_wild_clocks_jumps_pauses_and_stalled_disks(seed: int) -> None:
    assert_valid(5000 + seed, 4000, SimConfig(nodes=5, clock_drift=3.0, clock_jumps=True))


def test_a_slow_leaders_clock_runs_at_a_quarter_of_its_rate() -> None:
    """The swarm's ``slow_leader`` (ReadIndex must not depend on clocks): while a node leads, its
    clock moves at a quarter of its drawn rate; the followers' clocks keep theirs."""
    quiet = {"loss": 0.0, "duplicate": 0.0, "partitions": False, "crashes": False, "pauses": False,
             "disk_stalls": False, "clock_jumps": False}
    cluster = SimCluster(3, SimConfig(slow_leader=True, **quiet))  # type: ignore[arg-type]
    while cluster._leader() is None:
        cluster.step()
    lead = cluster.nodes[cluster._leader()]  # type: ignore[index]
    follower = next(n for n in cluster.nodes.values() if n is not lead)
    now, lead_clock, follower_clock = cluster.now, lead.clock(cluster.now), follower.clock(cluster.now)
    for _ in range(300):
        cluster.step()
        if cluster._leader() != lead.id:
            break
    passed = cluster.now - now
    assert cluster._leader() == lead.id and passed > 0
    assert lead.clock(cluster.now) - lead_clock == pytest.approx(0.25 * lead.rate * passed)
    assert follower.clock(cluster.now) - follower_clock == pytest.approx(follower.rate * passed)
