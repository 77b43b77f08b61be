"""``raftlab mutate``: seed the catalogue's bugs one at a time and report which ones were caught.

The work is in raftlab/mutate.py (isolation, methods, score) and raftlab/mutants.py (the
catalogue); this is the command line. Exit codes: 0 the run finished (and the score reached
``--min-score``), 1 the score is below ``--min-score``, 2 bad usage or a run that could not go on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option("--list", "list_only", is_flag=True, help="Print the catalogue and exit.")
@click.option("--only", "only", multiple=True, metavar="ID", help="Run only this mutant (repeatable).")
@click.option("--layer", "layers", multiple=True,
              type=click.Choice(["raft", "dtkv", "client", "storage", "codec", "node"]),
              help="Run only mutants of this layer (repeatable).")
@click.option("--method", type=click.Choice(["sim", "campaign", "both"]), default="both", show_default=True,
              help="Hunt with the simulator, run a campaign, or both, on each mutant.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Seed of every campaign and the first seed of every hunt (the same for each mutant).")
@click.option("--sim-budget", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              metavar="S", help="Seconds of simulator hunting per mutant.")
@click.option("--sim-steps", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Steps per simulated seed.")
@click.option("--campaign", "campaign_args", default=None, metavar="ARGS",
              help="raftlab run arguments of the campaign [default: the README's main job].")
@click.option("--campaign-runs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Campaigns per mutant (seeds --seed, --seed+1, ...), stopping at the first that catches it.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=22000, show_default=True,
              help="First port of each campaign's cluster.")
@click.option("--store", "store_dir", default="store/mutate", show_default=True,
              help="Where each mutant's campaign runs are stored (one folder per mutant).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results as JSON [default: STORE/mutate.json].")
@click.option("--baseline", is_flag=True, help="Run the unmutated source first: a false alarm voids the score.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Exit 1 when the share of mutants caught is below this.")
def mutate(list_only: bool, only: tuple[str, ...], layers: tuple[str, ...], method: str, seed: int,
           sim_budget: float, sim_steps: int, campaign_args: str | None, campaign_runs: int, base_port: int,
           store_dir: str,
           out_path: Path | None, baseline: bool, min_score: float | None) -> None:
    """Apply each seeded bug to a copy of the reference node and see whether raftlab catches it."""
    import os

    from raftlab import mutate as mut
    from raftlab.mutants import by_id

    try:
        mutants = [m for m in by_id(only) if not layers or m.layer in layers]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--only") from None
    if list_only:
        for m in mutants:
            click.echo(f"{m.id:28} {m.layer:8} {'sim ' if m.sim else '    '}{m.description}  [{m.rule}]")
        click.echo(f"{len(mutants)} mutants")
        return
    if not mutants:
        raise click.UsageError("no mutant matches --only / --layer")
    methods = ("sim", "campaign") if method == "both" else (method,)
    try:
        plan = mut.Plan(methods=methods, seed=seed, sim_budget=sim_budget, sim_steps=sim_steps,
                        campaign_args=campaign_args or mut.DEFAULT_CAMPAIGN, campaign_runs=campaign_runs,
                        base_port=base_port,
                        store=store_dir, labs_dir=os.environ.get("RAFTLAB_LABS_DIR"))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    out = out_path or Path(store_dir) / "mutate.json"
    click.echo(f"{len(mutants)} mutants, methods {', '.join(methods)}, seed {seed}; results in {out}")
    try:
        results = mut.run(mutants, plan, out_path=out, baseline=baseline, echo=click.echo)
    except mut.MutateError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    s = results["score"]
    click.echo(mut.describe_score(s))
    if baseline and any(a["outcome"] == "caught" for a in (results["baseline"] or {}).values()):
        click.echo("warning: the unmutated source was flagged too: the score is void", err=True)
        sys.exit(1)
    if min_score is not None and s["either"]["caught"] < min_score * s["either"]["of"]:
        sys.exit(1)
