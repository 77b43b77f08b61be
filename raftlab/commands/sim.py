"""``raftlab sim``: one deterministic simulated Raft cluster, checked after every event.

It runs ``--steps`` seeded events on ``--nodes`` node machines (see ``raftlab/sim/cluster.py``),
with drifting and jumping clocks, pauses and stalled disks unless told otherwise,
checks the Raft safety invariants after each, then judges the client history with the ``kv``
linearizability model. Exit codes: 0 valid, 1 violation (invariant or linearizability),
2 bad usage, 3 unknown (the checker ran out of time). On a violation it prints the replay
command and the last events; the same flags replay the run exactly.
"""

from __future__ import annotations

import json
import sys

import click

EXIT = {True: 0, False: 1, "unknown": 3}


@click.command()
@click.option("--seed", type=int, default=None, help="Seed of the run (drawn and printed when absent).")
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True, help="Events to simulate.")
@click.option("--nodes", type=click.IntRange(min=1, max=9), default=5, show_default=True, help="Cluster size.")
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
@click.option("--time-limit", type=click.FloatRange(min=0.0), default=60.0, show_default=True, metavar="S",
              help="Seconds for the linearizability check; past it the verdict is unknown.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def sim(seed: int | None, steps: int, nodes: int, loss: float, read_only: str, no_crashes: bool,
        no_partitions: bool, clock_drift: float | None, clock_jumps: bool | None, no_pauses: bool,
        no_disk_stalls: bool, time_limit: float, as_json: bool) -> None:
    """Simulate a Raft cluster deterministically and check every step."""
    import random

    from raftlab.sim.cluster import SimConfig, simulate

    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    config = SimConfig(nodes=nodes, loss=loss, read_only=read_only, crashes=not no_crashes,
                       partitions=not no_partitions, clock_drift=clock_drift, clock_jumps=clock_jumps,
                       pauses=not no_pauses, disk_stalls=not no_disk_stalls)
    outcome = simulate(seed, steps, config, time_limit=time_limit)
    if as_json:
        click.echo(json.dumps(outcome.to_dict()))
    else:
        click.echo(outcome.summary())
        if outcome.valid is not True:
            click.echo(outcome.explanation)
            click.echo(f"replay: {outcome.replay}")
            click.echo("last events:")
            for line in outcome.last_events:
                click.echo(f"  {line}")
    sys.exit(EXIT[outcome.valid])
