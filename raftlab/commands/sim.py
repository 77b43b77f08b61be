"""``raftlab sim``: one deterministic simulated Raft cluster, checked after every event.

It runs ``--steps`` seeded events on ``--nodes`` node machines (see ``raftlab/sim/cluster.py``),
with drifting and jumping clocks, pauses and stalled disks unless told otherwise,
checks the Raft safety invariants after each, then judges the client history with the ``kv``
linearizability model. Exit codes: 0 valid, 1 violation (invariant or linearizability),
2 bad usage, 3 unknown (the checker ran out of time). On a violation it prints the replay
command and the last events; the same flags replay the run exactly.

``--swarm`` draws the run's fault mix from the seed (``raftlab/sim/hunt.py``), and ``--budget S``
hunts: seeds ``--seed``, ``--seed``+1, ... until one fails or S seconds have passed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

EXIT = {True: 0, False: 1, "unknown": 3}


@click.command()
@click.option("--seed", type=int, default=None, help="Seed of the run (drawn and printed when absent).")
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True, help="Events to simulate.")
@click.option("--nodes", type=click.IntRange(min=1, max=9), default=None,
              help="Cluster size [default: 5, or drawn from the seed with --swarm].")
@click.option("--loss", type=click.FloatRange(0.0, 0.9), default=0.02, show_default=True,
              help="Probability that a sent message is lost.")
@click.option("--read-only", type=click.Choice(["safe", "lease"]), default="safe", show_default=True,
              help="Read mode of the cores: ReadIndex (safe) or lease reads.")
@click.option("--no-crashes", is_flag=True, help="Never crash or restart a node.")
@click.option("--no-partitions", is_flag=True, help="Never partition the network.")
@click.option("--clock-drift", type=click.FloatRange(min=0.0), default=None, metavar="D",
              help="Each node's clock runs at a rate drawn from [1, 1+D] (default 0.5; 0.2 with lease reads).")
@click.option("--clock-jumps/--no-clock-jumps", default=None,
              help="Now and then move a node's clock forward (default on, off with lease reads).")
@click.option("--no-pauses", is_flag=True, help="Never pause a node (SIGSTOP-like: no events, then a burst).")
@click.option("--no-disk-stalls", is_flag=True, help="Never stall a node's disk (persists completing late).")
@click.option("--workload", type=click.Choice(["register", "tree"]), default="register", show_default=True,
              help="What the clients do: read/write/cas on a few keys, or the tree workload's ops (dtkv-dir model).")
@click.option("--snapshot-entries", type=click.IntRange(min=0), default=10, show_default=True,
              help="Every node snapshots every N applied entries and compacts its log (0: never).")
@click.option("--snapshot-margin", type=click.IntRange(min=0), default=2, show_default=True,
              help="Entries kept in the log below a snapshot when compacting.")
@click.option("--late-duplicate", type=click.FloatRange(0.0, 1.0), default=0.02, show_default=True,
              help="Chance a message is delivered once more, much later (stale snapshots, appends, votes).")
@click.option("--adversary", is_flag=True,
              help="Forge peer messages the validation layer must refuse (out-of-range terms, gaps, ...).")
@click.option("--storage-faults", is_flag=True,
              help="A crashed node's disk may lose a file or flip a bit; its recovery judges it on restart.")
@click.option("--membership", is_flag=True,
              help="Membership changes (joint consensus, learners, removing the leader, wiped re-adds); "
                   "two spare ids beyond --nodes.")
@click.option("--time-limit", type=click.FloatRange(min=0.0), default=60.0, show_default=True, metavar="S",
              help="Seconds for the linearizability check; past it the verdict is unknown.")
@click.option("--swarm", is_flag=True,
              help="Draw the fault mix (loss, duplication, reordering, partitions, crashes, timeouts) from the seed.")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Hunt: run seeds from --seed upwards until one fails or S seconds have passed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def sim(seed: int | None, steps: int, nodes: int | None, loss: float, read_only: str, no_crashes: bool,
        no_partitions: bool, clock_drift: float | None, clock_jumps: bool | None, no_pauses: bool,
        no_disk_stalls: bool, workload: str, snapshot_entries: int, snapshot_margin: int, late_duplicate: float,
        adversary: bool, storage_faults: bool, membership: bool, time_limit: float, swarm: bool, budget: float | None,
        as_json: bool) -> None:
    """Simulate a Raft cluster deterministically and check every step."""
    import random

    from raftlab.sim.cluster import SimConfig, simulate
    from raftlab.sim.hunt import hunt, replay_command
    from raftlab.swarm import describe_config, swarm_config

    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    config = SimConfig(nodes=nodes or 5, loss=loss, read_only=read_only, crashes=not no_crashes,
                       partitions=not no_partitions, clock_drift=clock_drift, clock_jumps=clock_jumps,
                       pauses=not no_pauses, disk_stalls=not no_disk_stalls, workload=workload,
                       snapshot_entries=snapshot_entries, snapshot_margin=snapshot_margin, late_duplicate=late_duplicate,
                       adversary=adversary, storage_faults=storage_faults, membership=membership,
                       spares=2 if membership else 0)
    if budget is not None:
        result = hunt(seed, budget, steps, swarm=swarm, nodes=nodes, base=config, time_limit=time_limit)
        found = result.found
        _report(result.to_dict(), as_json, result.summary(), result.coverage, result.valid,
                found.explanation if found else result.crash, result.replay, ())
        sys.exit(0 if result.valid else 1)
    if swarm:
        config = swarm_config(seed, nodes)
        if not as_json:
            click.echo(f"swarm: {describe_config(config)}")
    outcome = simulate(seed, steps, config, time_limit=time_limit)
    replay = replay_command(seed, outcome.steps, True, nodes, outcome=None) if swarm else outcome.replay
    _report(outcome.to_dict(), as_json, outcome.summary(), outcome.coverage, outcome.valid is True,
            outcome.explanation, replay, outcome.last_events)
    sys.exit(EXIT[outcome.valid])


def _report(as_dict: dict[str, Any], as_json: bool, summary: str, coverage: dict[str, Any], valid: bool,
            explanation: str, replay: str, last_events: tuple[str, ...]) -> None:
    from raftlab.coverage import describe

    if as_json:
        click.echo(json.dumps(as_dict))
        return
    click.echo(summary)
    click.echo(describe(coverage))
    if not valid:
        click.echo(explanation)
        click.echo(f"replay: {replay}")
        if last_events:
            click.echo("last events:")
            for line in last_events:
                click.echo(f"  {line}")
