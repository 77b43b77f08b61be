"""Snapshots in the simulator: compaction at random points, lagging and restarted followers
brought back by InstallSnapshot (chunked or whole), crashes while a snapshot is written or
streamed, stale snapshots delivered late -- and a broken install the simulator must catch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import raftlab.impl.raft.snapshots as snapshots_module
from raftlab.impl.raft import RaftCore

from raftlab.mutants import by_id, patch
from raftlab.sim.cluster import SimCluster, SimConfig, simulate


def test_default_runs_snapshot_compact_and_install_and_stay_valid() -> None:
    """The default sim config crosses many snapshots; across a few seeds followers are brought
    back by InstallSnapshot, in chunks and whole, and every run is valid."""
    installs = snapshots = 0
    chunk_sizes = set()
    for seed in range(12):
        cluster = SimCluster(seed, SimConfig(nodes=3 if seed % 2 else 5))
        chunk_sizes.add(cluster.chunk_bytes)
        outcome = simulate(seed, 4000, SimConfig(nodes=3 if seed % 2 else 5), time_limit=30)
        assert outcome.valid is True, f"{outcome.replay}\n{outcome.explanation}"
        installs += outcome.stats["installs"]
        snapshots += outcome.stats["snapshots"]
    assert snapshots > 50 and installs > 5, (snapshots, installs)
    assert chunk_sizes == {48, 4096}


@pytest.mark.parametrize("seed", range(4))
def test_stale_snapshots_under_heavy_late_duplication_are_refused(seed: int) -> None:
    config = SimConfig(nodes=5, snapshot_entries=10, snapshot_margin=0, late_duplicate=0.2)
    outcome = simulate(500 + seed, 4000, config, time_limit=30)
    assert outcome.valid is True, f"{outcome.replay}\n{outcome.explanation}"


def test_a_cluster_without_snapshots_never_compacts() -> None:
    cluster = SimCluster(7, SimConfig(nodes=3, snapshot_entries=0))
    cluster.run(3000)
    assert cluster.stats["snapshots"] == 0
    assert all(n.storage.first_index() == 1 for n in cluster.nodes.values())


def broken_core(mutant_id: str) -> type[RaftCore]:
    """RaftCore with the snapshot mixin replaced by the mutant's patched source."""
    mutant = by_id([mutant_id])[0]
    source = patch(Path(snapshots_module.__file__).read_text(), mutant)
    namespace: dict[str, object] = {"__name__": "raftlab.impl.raft.snapshots_mutant",
                                    "__package__": "raftlab.impl.raft"}
    exec(compile(source, f"<mutant {mutant_id}>", "exec"), namespace)
    mixin = namespace["SnapshotPath"]
    return type("BrokenCore", (mixin, RaftCore), {})  # type: ignore[misc]


def test_installing_an_older_snapshot_over_newer_state_is_caught() -> None:
    """The snapshot-install-stale mutant: a follower that has compacted past a snapshot no
    longer sees it as stale and installs it; the simulator reports the state rolling back."""
    cluster_type = type("StaleInstallCluster", (SimCluster,), {"core_type": broken_core("snapshot-install-stale")})
    config = SimConfig(nodes=5, snapshot_entries=10, snapshot_margin=0, late_duplicate=0.2)
    outcomes = [simulate(seed, 4000, config, cluster_type=cluster_type, time_limit=10) for seed in range(16)]
    caught = [o for o in outcomes if o.valid is False]
    assert caught, "no seed caught a follower installing an older snapshot"
    assert any("rolled back" in o.explanation or "state-machine safety" in o.explanation for o in caught), \
        caught[0].explanation
    print(f"caught by {len(caught)}/16 seeds, e.g. {caught[0].replay}")
