"""The simulator's storage-fault mode (raftlab/sim/hostile.py): damaged disks go through
the node's own recovery decision; refusals are repaired as empty rejoining members and every run
stays valid. A naive recovery that boots from whatever is left, as the old node did, loses
committed data in the same runs."""

from __future__ import annotations

import random

from raftlab.impl.raft.messages import HardState
from raftlab.impl.storage.memory import MemoryStorage
from raftlab.impl.storage.meta import load_meta_bytes
from raftlab.impl.storage.recovery import scan_segment

from raftlab.sim.cluster import SimCluster, SimConfig, SimNode, simulate
from raftlab.sim.hostile import DiskImage
from raftlab.swarm import swarm_config


def test_damaged_disks_are_refused_repaired_and_runs_stay_valid() -> None:
    refused = 0
    for seed in range(6):
        outcome = simulate(seed, 6000, SimConfig(nodes=3, storage_faults=True), time_limit=20)
        assert outcome.valid is True, (seed, outcome.explanation, outcome.last_events)
        assert "--storage-faults" in outcome.replay
        refused += outcome.stats["refused_starts"]
    assert refused >= 6


def test_a_member_repaired_empty_does_not_help_a_deposed_leader_commit() -> None:
    """The swarm's seed 2962 (3 nodes, no check-quorum): node 3 loses its meta, is repaired empty
    and, having forgotten its term, used to ack the appends of a leader already deposed; the two of
    them committed over entries the current leader had committed (state-machine safety). It now
    learns the highest term from a quorum of the others first (impl/raft/core.py, term probe)."""
    outcome = simulate(2962, 1251, swarm_config(2962), time_limit=30)
    assert outcome.stats["refused_starts"] >= 1
    assert outcome.valid is True, (outcome.explanation, outcome.last_events)


def test_the_image_is_the_wal_format_and_a_clean_one_recovers_whole() -> None:
    cluster = SimCluster(3, SimConfig(nodes=3, crashes=False))
    cluster.run(1500)
    storage = cluster.nodes[1].storage
    image = DiskImage.of(storage)
    back = image.recover()
    assert not isinstance(back, Exception), back
    first = storage.first_index()
    assert first > 1, "the run compacted its log (snapshots are on by default)"
    # below the snapshot the first entry may become the base (its predecessor's term is not on disk)
    assert back.first_index() in (first, first + 1) and back.snapshot_meta() == storage.snapshot_meta()
    lo = back.first_index()
    assert back.entries(lo, back.last_index() + 1) == storage.entries(lo, storage.last_index() + 1)
    assert back.initial_state() == storage.initial_state()
    rng = random.Random(7)
    outcomes = set()
    for _ in range(40):
        damaged = DiskImage(dict(image.files), image.snapshot)
        what = damaged.damage(rng)
        outcomes.add((what.split()[0], type(damaged.recover()).__name__))
    assert ("lost", "StorageError") in outcomes and ("flipped", "StorageError") in outcomes, outcomes


class NaiveRecoveryCluster(SimCluster):
    """Boots a damaged node from whatever is left, as the old node did: a lost meta is term 0 and
    no vote, a lost segment ends the log there, a bad record ends it too (test only)."""

    def _restart(self, node: SimNode) -> SimNode:
        if node.image is None:
            return super()._restart(node)
        files = node.image.files
        hard = HardState()
        if "meta" in files:
            try:
                hard = load_meta_bytes(files["meta"], "meta")
            except Exception:
                hard = HardState()
        entries = []
        for name in sorted(n for n in files if n.startswith("wal/")):
            try:
                scan = scan_segment(name, files[name])
            except Exception:
                break
            if scan.first != len(entries) + 1:
                break
            entries.extend(scan.entries)
            if scan.damage is not None:
                break
        hard = HardState(term=hard.term, vote=hard.vote, commit=min(hard.commit, len(entries)))
        return self._boot(node.id, MemoryStorage(entries, hard))


def test_naive_recovery_loses_committed_data() -> None:
    config = SimConfig(nodes=3, storage_faults=True, target_leader=True)
    outcomes = [simulate(seed, 6000, config, cluster_type=NaiveRecoveryCluster, time_limit=20)
                for seed in range(12)]
    assert any(o.valid is False for o in outcomes), [o.summary() for o in outcomes]
