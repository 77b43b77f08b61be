"""The mutation score of raftlab's own catalogue: default campaign, simulation budget, and both.

Run it alone (it is CPU-heavy), under the bench lock:

    flock /tmp/raftlab-bench.lock .venv/bin/python bench/mutation.py --methods sim --sim-budget 60
    flock /tmp/raftlab-bench.lock .venv/bin/python bench/mutation.py --methods campaign --layer dtkv
    flock /tmp/raftlab-bench.lock .venv/bin/python bench/mutation.py --baseline-runs 20
    flock /tmp/raftlab-bench.lock .venv/bin/python bench/mutation.py --hunt-speed 60

It prints one line per mutant (caught or missed by each method, with the time to catch), then
the score per method and for either; the full JSON goes to --out. ``--baseline-runs N`` instead
runs the default campaign on the unmutated source for seeds 1..N and prints how many in a row
were valid (a false alarm would make every mutant look caught). ``--hunt-speed S`` measures the
simulator's hunting rate on the unmutated core: 5-node seeds of 10,000 steps for S seconds, with
and without swarm draws, in this one process (one core). Every figure is measured here,
on this machine, in this run; nothing is assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from raftlab import mutate as mut
from raftlab.mutants import by_id


def baseline_runs(n: int, store: str, base_port: int, first_seed: int) -> None:
    """The default campaign on the unmutated source, seeds first..first+n-1, until one is not valid."""
    in_a_row = 0
    with mut.patched_tree(None) as root:
        mut.check_isolation(root)
        for seed in range(first_seed, first_seed + n):
            cmd = [sys.executable, "-m", "raftlab.cli", "run", *shlex.split(mut.DEFAULT_CAMPAIGN), "--seed", str(seed),
                   "--quiet", "--store", store, "--lab-name", f"bench-baseline-{os.getpid()}",
                   "--base-port", str(base_port)]
            start = time.monotonic()
            proc = subprocess.run(cmd, cwd=root, env=mut.tree_env(root), capture_output=True, text=True)
            verdict = next((line for line in proc.stdout.splitlines() if line.startswith("verdict:")), "no verdict")
            swarm = next((line for line in proc.stdout.splitlines() if line.startswith("swarm:")), "")
            print(f"seed {seed}: exit {proc.returncode}, {verdict} ({time.monotonic() - start:.0f}s) {swarm}",
                  flush=True)
            if proc.returncode != 0:
                print("\n".join(line for line in proc.stdout.splitlines() if line.strip().startswith("- ")))
                break
            in_a_row += 1
        subprocess.run([sys.executable, "-m", "raftlab.cli", "lab", "down", "--name", f"bench-baseline-{os.getpid()}"],
                       cwd=root, env=mut.tree_env(root), capture_output=True, check=False)
    print(f"baseline: {in_a_row} consecutive valid runs of the default campaign (of {n} planned)")


def hunt_speed(seconds: float, seed: int) -> None:
    from raftlab.coverage import describe
    from raftlab.sim.hunt import hunt

    for swarm in (False, True):
        r = hunt(seed, seconds, 10_000, swarm=swarm, nodes=5)
        print(f"{'swarm' if swarm else 'fixed'}: {r.summary()}  -> {60 * r.seeds_run / r.seconds:.0f} "
              f"5-node seeds of 10k steps per minute; {describe(r.coverage)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="sim,campaign", help="sim, campaign or both (comma-separated)")
    ap.add_argument("--only", action="append", default=[], help="a mutant id (repeatable)")
    ap.add_argument("--layer", action="append", default=[], help="only mutants of this layer (repeatable)")
    ap.add_argument("--sim-budget", type=float, default=60.0, help="seconds of hunting per mutant")
    ap.add_argument("--sim-steps", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--campaign", default=mut.DEFAULT_CAMPAIGN, help="raftlab run arguments")
    ap.add_argument("--campaign-runs", type=int, default=1, help="campaigns per mutant until one catches it")
    ap.add_argument("--base-port", type=int, default=22000)
    ap.add_argument("--store", default="/tmp/raftlab-bench-mutation")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--baseline-runs", type=int, default=0, help="run the unmutated default campaign N times instead")
    ap.add_argument("--hunt-speed", type=float, default=0.0, help="measure simulator seeds/min for S seconds")
    args = ap.parse_args()
    if args.hunt_speed:
        hunt_speed(args.hunt_speed, args.seed)
        return
    if args.baseline_runs:
        baseline_runs(args.baseline_runs, args.store, args.base_port, args.seed)
        return
    mutants = [m for m in by_id(args.only) if not args.layer or m.layer in args.layer]
    plan = mut.Plan(methods=tuple(m.strip() for m in args.methods.split(",")), seed=args.seed,
                    sim_budget=args.sim_budget, sim_steps=args.sim_steps, campaign_args=args.campaign,
                    campaign_runs=args.campaign_runs,
                    base_port=args.base_port, store=args.store, labs_dir=os.environ.get("RAFTLAB_LABS_DIR"))
    out = args.out or Path(args.store) / "mutation.json"
    print(f"{len(mutants)} mutants; methods {plan.methods}; seed {plan.seed}; sim budget {plan.sim_budget:g}s; "
          f"campaign: raftlab run {plan.campaign_args}", flush=True)
    start = time.monotonic()
    results = mut.run(mutants, plan, out_path=out, echo=lambda line: print(line, flush=True))
    print(mut.describe_score(results["score"]))
    caught = {m: [r["id"] for r in results["mutants"] if r["attempts"].get(m, {}).get("outcome") == "caught"]
              for m in plan.methods}
    for method, ids in caught.items():
        print(f"caught by {method}: {', '.join(ids) or 'none'}")
    print(f"missed by all: {', '.join(r['id'] for r in results['mutants'] if not r['caught']) or 'none'}")
    print(f"wall time {time.monotonic() - start:.0f}s; results in {out}")
    json.dumps(results)  # the stored file is JSON: fail here, loudly, if it ever is not


if __name__ == "__main__":
    main()
