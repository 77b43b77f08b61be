"""The simulator's adversarial-message mode (raftlab/sim/hostile.py): forged peer messages are
refused by the validation layer, and without that layer the same forgeries break Raft's safety."""

from __future__ import annotations

from raftlab.impl.raft import Message, RaftCore
from raftlab.impl.raft.validate import Refused

from raftlab.sim.cluster import SimCluster, SimConfig, simulate


def test_forged_messages_leave_every_run_valid() -> None:
    for seed in range(4):
        outcome = simulate(seed, 3000, SimConfig(nodes=3, adversary=True), time_limit=20)
        assert outcome.valid is True, (seed, outcome.explanation)
        assert outcome.stats["forged"] > 10, outcome.stats
        assert "--adversary" in outcome.replay


def test_refusals_are_counted_per_kind() -> None:
    cluster = SimCluster(5, SimConfig(nodes=3, adversary=True, crashes=False))
    cluster.run(3000)
    kinds: dict[str, int] = {}
    for node in cluster.nodes.values():
        for kind, n in node.core.refusals.counts.items():
            kinds[kind] = kinds.get(kind, 0) + n
    assert sum(kinds.values()) >= cluster.stats["forged"] * 0.9, (kinds, cluster.stats)
    assert {"range", "not-leader", "malformed", "never-sent"} <= set(kinds), kinds


class UncheckedCore(RaftCore):
    """Steps every message without the validation layer (test only)."""

    def step(self, m: Message) -> None:
        try:
            if m.to == self.id and m.from_ in self.voters and m.from_ != self.id:
                self._step(m)
        except Refused:
            pass


class UncheckedCluster(SimCluster):
    core_type = UncheckedCore


def test_without_validation_the_forgeries_break_safety() -> None:
    outcomes = [simulate(seed, 3000, SimConfig(nodes=3, adversary=True), cluster_type=UncheckedCluster,
                         time_limit=20) for seed in range(6)]
    assert any(o.valid is False for o in outcomes), [o.summary() for o in outcomes]
