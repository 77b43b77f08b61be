"""Swarm testing: each seed draws its own fault mix, for campaigns and for the simulator.

A fixed mix (every fault, every time, at one rate) spends each run the same way, and a fault
that masks another (a partition that keeps the killed leader's successor from being elected,
say) masks it in every run. Swarm testing (Groce et al., ISSTA 2012) draws, per run, a random
subset of the allowed faults and how often they come; over many seeds every combination gets
its runs, including the sparse ones that let a bug's window stay open. FoundationDB's simulator
and Jepsen's randomized nemesis packages do the same.

``draw(seed, faults, interval)`` is pure: the same seed gives the same mix. ``raftlab run
--swarm`` applies it before the campaign is built, so ``campaign.json`` records the drawn faults
and interval and ``raftlab replay`` repeats them without knowing about swarms.
``swarm_config(seed)`` is the simulator's draw (``raftlab sim --swarm``, raftlab/sim/hunt.py): a
whole ``SimConfig`` from the seed alone, so the seed is all a replay needs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raftlab.sim.cluster import SimConfig
from raftlab.sim.scenarios import SCENARIOS

KEEP = 0.6  # chance that each allowed fault is in a run's mix (at least one always is)
# multiples of the campaign's --interval: a 60 s run at --interval 2 sees a fault start every 1-4 s
# on average, so even the sparsest draw has a dozen faults (slower draws measured weaker: 6 faults
# a run miss the windows most mutants need)
INTERVALS = (0.5, 1.0, 1.5, 2.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmDraw:
    faults: tuple[str, ...]
    interval: float

    def describe(self) -> str:
        return f"swarm: faults {','.join(self.faults) or 'none'}, one every ~{self.interval:g}s"


def draw(seed: int, faults: Sequence[str], interval: float, families: Mapping[str, str] | None = None) -> SwarmDraw:
    """The fault subset and mean interval of run ``seed`` (faults keep their given order). The
    interval is drawn first, so a seed keeps its pace when faults are added to the list.

    ``families`` (fault -> the family that does it: process, partition, timed, ...) keeps at
    least one fault of every family the list names: a draw may thin a mechanism out but not drop
    it, because a run without, say, any partition of the network's own choosing leaves every
    path only a split cluster reaches untested (measured: such a draw missed the commit-rule and
    vote mutants that draws with partitions catch; docs/campaigns.md)."""
    rng = random.Random(f"swarm:{seed}")
    pace = rng.choice(INTERVALS)
    chosen = {f for f in faults if rng.random() < KEEP}
    if faults and not chosen:
        chosen = {rng.choice(list(faults))}
    by_family: dict[str, list[str]] = {}
    for f in faults if families else ():
        by_family.setdefault(families.get(f, f), []).append(f)
    for members in by_family.values():
        if not chosen.intersection(members):
            chosen.add(rng.choice(members))
    return SwarmDraw(faults=tuple(f for f in faults if f in chosen), interval=round(interval * pace, 3))


def swarm_config(seed: int, nodes: int | None = None) -> SimConfig:
    """The fault mix of run ``seed``: every probability and switch drawn from the seed alone."""
    rng = random.Random(f"swarm:{seed}")
    config = SimConfig(
        nodes=nodes or rng.choice((3, 5, 5)),
        loss=rng.choice((0.0, 0.02, 0.1, 0.25)),
        duplicate=rng.choice((0.0, 0.01, 0.05)),
        reorder=rng.choice((0.0, 0.1, 0.3)),
        partitions=rng.random() < 0.75,
        crashes=rng.random() < 0.75,
        keys=rng.choice((1, 2, 3)),
        clients=rng.choice((2, 4, 6)),
        election_tick=rng.choice((4, 6, 10)),
        client_timeout=rng.choice((200, 400, 800)),
        slow_leader=rng.random() < 0.3,
        target_leader=rng.random() < 0.4,
        max_size_per_msg=rng.choice((1 << 20, 1 << 20, 64, 1)),  # 64 bytes: one or two entries; 1: one
        max_inflight_msgs=rng.choice((256, 256, 2)),
        pre_vote=rng.random() < 0.75,
        check_quorum=rng.random() < 0.5,  # off (etcd's default): a deposed leader in a minority leads on
        scenarios=tuple(n for n in SCENARIOS if rng.random() < 0.5) if rng.random() < 0.85 else (),
        scenario_rate=rng.choice((0.01, 0.03, 0.1)),
        workload=rng.choice(("register", "register", "tree")),
        # drawn last, so the draws above stay what they were before snapshots existed
        snapshot_entries=rng.choice((0, 10, 30)),
        snapshot_margin=rng.choice((0, 2, 5)),
        late_duplicate=rng.choice((0.0, 0.02, 0.2)),
    )
    if rng.random() < 0.4:  # drawn after snapshots, for the same reason
        config.membership, config.spares = True, 2
    # damaged disks on restart (sim/hostile.py), drawn last for the same reason: a member repaired
    # empty is the only way to reach the rejoin rule (the membership draw wipes removed members,
    # which do not vote)
    config.storage_faults = rng.random() < 0.25
    return config


def describe_config(c: SimConfig) -> str:
    return (f"nodes={c.nodes} loss={c.loss} dup={c.duplicate} reorder={c.reorder} "
            f"partitions={'on' if c.partitions else 'off'} crashes={'on' if c.crashes else 'off'} "
            f"keys={c.keys} clients={c.clients} election_tick={c.election_tick}"
            + (" slow-leader" if c.slow_leader else "") + (" target-leader" if c.target_leader else "")
            + (f" max_size_per_msg={c.max_size_per_msg}" if c.max_size_per_msg < 1 << 20 else "")
            + (f" max_inflight={c.max_inflight_msgs}" if c.max_inflight_msgs < 256 else "")
            + ("" if c.pre_vote else " no-pre-vote") + ("" if c.check_quorum else " no-check-quorum")
            + (f" scenarios={','.join(c.scenarios)}@{c.scenario_rate:g}" if c.scenarios else "")
            + (f" workload={c.workload}" if c.workload != "register" else "")
            + (f" snapshot_entries={c.snapshot_entries} margin={c.snapshot_margin}" if c.snapshot_entries else "")
            + (f" late_dup={c.late_duplicate}" if c.late_duplicate else "")
            + (" membership" if c.membership else "") + (" storage-faults" if c.storage_faults else ""))
