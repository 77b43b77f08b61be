"""Targeted scenarios, the unsynced-tail crash, the meta codec on restart and the tree workload
in the simulator: each fires or keeps what it claims, and a correct cluster stays valid."""

from __future__ import annotations

from collections import Counter, deque

import pytest
from raftlab.impl.raft import Entry, HardState
from raftlab.impl.storage.memory import MemoryStorage

from raftlab.sim import treeops
from raftlab.sim.cluster import SimCluster, SimConfig, durable, simulate
from raftlab.sim.scenarios import ACTIONS, SCENARIOS, fire
from raftlab.swarm import swarm_config


def test_every_scenario_has_an_action_and_fires_in_a_busy_run_that_stays_valid() -> None:
    assert set(ACTIONS) == set(SCENARIOS)
    fired: Counter[str] = Counter()
    for seed in range(4):
        cluster = SimCluster(seed, SimConfig(nodes=5, scenarios=tuple(SCENARIOS), scenario_rate=0.1,
                                             check_quorum=seed % 2 == 0, max_size_per_msg=1))
        cluster.trace = deque(maxlen=None)  # keep every event
        cluster.run(4000)  # raises on any invariant violation
        fired.update(line.split()[1] for line in cluster.trace if line.startswith("scenario "))
        fired["total"] += cluster.stats["scenarios"]
    assert fired["total"] > 20 and len(fired) >= 6, fired
    outcome = simulate(7, 4000, SimConfig(nodes=5, scenarios=tuple(SCENARIOS), scenario_rate=0.03), time_limit=30)
    assert outcome.valid is True, outcome.explanation


def test_crash_minority_leader_fires_only_with_entries_on_a_minority() -> None:
    cluster = SimCluster(3, SimConfig(nodes=5, crashes=False, partitions=False, pauses=False, disk_stalls=False, snapshot_entries=0,
                                      scenarios=("crash-minority-leader",), scenario_rate=0.0))
    cluster.run(600)
    leader = next(n for n in cluster.nodes.values() if n.core.role.value == "leader")
    committed = leader.core.log.committed
    assert fire(cluster) is None  # a quiet cluster: every entry committed
    ahead = [i for i, pr in leader.core.prs.items() if i != leader.id][:1]
    leader.core.prs[ahead[0]].match = committed + 1  # one follower holds an uncommitted entry
    assert fire(cluster) == "crash-minority-leader" and not cluster.nodes[leader.id].up


def test_a_crash_keeps_the_synced_prefix_and_the_vote_read_back_through_the_meta_codec() -> None:
    storage = MemoryStorage([Entry(term=1, index=1)], HardState(term=1))
    storage.set_hard_state(HardState(term=3, vote=2, commit=1))
    storage.sync()
    storage.append([Entry(term=3, index=2, data=b"unsynced")])
    storage.set_hard_state(HardState(term=4, vote=5, commit=1))
    after = durable(storage)
    assert after.last_index() == 1 and after.initial_state() == HardState(term=3, vote=2, commit=1)


def test_tree_ops_map_to_commands_and_replies_to_values() -> None:
    assert treeops.command("put", "t1", ["a", 7]).key == "t1.a"
    assert treeops.command("cas-key", "t1", ["b", None, 3]).expected is None
    assert [k for k, _ in treeops.command("batch-put", "t2", [["a", 1], ["c", 2]]).items] == ["t2.a", "t2.c"]
    assert treeops.output("batch-get", ["a", "b"], {"values": [b"4", None]}) == [4, None]
    assert treeops.output("list", None, {"children": ["b", "a"]}) == ["a", "b"]
    assert treeops.output("remove", ["a"], {"index": 9}) == ["a"]
    with pytest.raises(ValueError, match="not a tree workload op"):
        treeops.command("read", "t1", None)


def test_a_tree_workload_run_is_valid_and_exercises_the_tree() -> None:
    cluster = SimCluster(2, SimConfig(nodes=3, workload="tree", clients=6))
    cluster.run(8000)
    ok = Counter(o.f for o in cluster.events if o.type.value == "ok")
    assert {"mkdir", "put", "get", "list", "batch-put", "batch-get"} <= set(ok), ok
    outcome = simulate(2, 4000, SimConfig(nodes=3, workload="tree"), time_limit=30)
    assert outcome.valid is True, outcome.explanation
    assert "--workload tree" in outcome.replay


def test_swarm_draws_scenarios_protocol_switches_and_the_workload_from_the_seed() -> None:
    configs = [swarm_config(s) for s in range(60)]
    assert swarm_config(11) == swarm_config(11)
    assert any(c.scenarios for c in configs) and any(not c.scenarios for c in configs)
    assert {c.workload for c in configs} == {"register", "tree"}
    assert any(not c.check_quorum for c in configs) and any(not c.pre_vote for c in configs)
    assert 1 in {c.max_size_per_msg for c in configs}
    assert 5 < sum(c.storage_faults for c in configs) < 30  # a quarter of the seeds damage disks
