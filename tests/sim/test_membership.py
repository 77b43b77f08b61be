"""Membership changes in seeded simulations: valid across seeds with every fault on, and a core
that skips the joint phase (the ``conf-skip-joint`` mutant) is caught by the same runs."""

from __future__ import annotations

from pathlib import Path

import raftlab.impl.raft.membership as membership
from raftlab.impl.raft import RaftCore

from raftlab.mutants import by_id, patch
from raftlab.sim.cluster import SimCluster, SimConfig, simulate


def config() -> SimConfig:
    return SimConfig(nodes=3, membership=True, spares=2)


def test_membership_changes_among_faults_stay_safe_and_linearizable() -> None:
    changes = wipes = 0
    for seed in range(6):
        outcome = simulate(seed, 12000, config(), time_limit=30)
        assert outcome.valid is not False, f"{outcome.explanation}\nreplay: {outcome.replay}"
        changes += outcome.stats["conf_changes"]
        wipes += outcome.stats["wipes"]
    assert changes > 30 and wipes > 0, (changes, wipes)  # the runs really changed the membership


def broken_core(mutant_id: str) -> type[RaftCore]:
    """RaftCore with the membership mixin replaced by the mutant's patched source."""
    source = patch(Path(membership.__file__).read_text(), by_id([mutant_id])[0])
    namespace: dict[str, object] = {"__name__": "raftlab.impl.raft.membership_mutant",
                                    "__package__": "raftlab.impl.raft"}
    exec(compile(source, f"<mutant {mutant_id}>", "exec"), namespace)
    return type("BrokenCore", (namespace["MembershipPath"], RaftCore), {})  # type: ignore[misc]


def test_skipping_the_joint_phase_is_caught() -> None:
    """conf-skip-joint: the old voters alone decide while a change is under way; random
    membership changes among partitions and crashes elect two leaders of one term."""
    cluster_type = type("SkipJointCluster", (SimCluster,), {"core_type": broken_core("conf-skip-joint")})
    found = None
    for seed in range(24):
        outcome = simulate(seed, 8000, config(), cluster_type=cluster_type, time_limit=10)
        if outcome.valid is False:
            found = outcome
            break
    assert found is not None, "24 seeds of membership changes did not catch changes decided by the old voters alone"
    assert found.explanation.startswith(("invariant violated", "not linearizable")), found.explanation
    print(f"caught at {found.replay}: {found.explanation}")
