"""Hunting with the simulator: many short seeded runs, each with its own swarm-drawn fault mix.

One long simulation with fixed fault probabilities explores one corner of the space again and
again. Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012; FoundationDB's simulator does
the same) instead draws, per run, which faults are on and how often: one seed is a quiet
network with frequent crashes, the next a lossy, reordering network with no crashes and a short
election timeout. Bugs that need a particular mix show up in the runs that drew it, and a run
that drew a fault off cannot be drowned by it.

``raftlab.swarm.swarm_config(seed)`` is a pure function of the seed, so ``raftlab sim --seed S
--swarm`` replays any run exactly. ``hunt`` runs seeds ``seed, seed+1, ...`` until one fails or the
wall-clock budget is spent (the only clock here, and only to stop; nothing it decides depends
on it) and reports how many seeds it ran. A crash of the simulated code itself (an exception
that is not an invariant violation, as a mutated core may raise) is a finding too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftlab.coverage import merge
from raftlab.swarm import swarm_config

from .cluster import SimConfig, SimOutcome, simulate


@dataclass(frozen=True, slots=True, kw_only=True)
class HuntResult:
    """What a hunt did: seeds run, seconds spent, and the first failing run (None: nothing found)."""

    first_seed: int
    seeds_run: int
    seconds: float
    swarm: bool
    found: SimOutcome | None
    crash: str = ""  # the simulated code raised something other than an invariant violation
    replay: str = ""  # the command that repeats the failing run (empty when nothing was found)
    coverage: dict[str, Any] = field(default_factory=dict)  # risky situations reached, over all seeds run

    @property
    def valid(self) -> bool:
        return self.found is None and not self.crash

    def to_dict(self) -> dict[str, Any]:
        return {"first_seed": self.first_seed, "seeds_run": self.seeds_run, "seconds": round(self.seconds, 3),
                "swarm": self.swarm, "valid": self.valid, "crash": self.crash,
                "found": self.found.to_dict() if self.found is not None else None, "replay": self.replay,
                "seeds_per_minute": round(60 * self.seeds_run / self.seconds, 1) if self.seconds else None,
                "coverage": self.coverage}

    def summary(self) -> str:
        rate = f"{60 * self.seeds_run / self.seconds:.0f} seeds/min" if self.seconds else ""
        head = f"hunted {self.seeds_run} seeds from {self.first_seed} in {self.seconds:.1f}s ({rate})"
        if self.crash:
            return f"{head}: CRASH {self.crash}"
        if self.found is not None:
            return f"{head}: VIOLATION at seed {self.found.seed}"
        return f"{head}: nothing found"


def hunt(seed: int, budget: float, steps: int, *, swarm: bool = True, nodes: int | None = None,
         base: SimConfig | None = None, time_limit: float = 10.0,
         clock: Callable[[], float] = time.monotonic) -> HuntResult:
    """Run seeds from ``seed`` until one fails or ``budget`` seconds have passed (at least one run)."""
    start = clock()
    n = 0
    covered: list[dict[str, Any]] = []
    while True:
        run_seed = seed + n
        config = swarm_config(run_seed, nodes) if swarm else (base or SimConfig())
        n += 1
        try:
            outcome = simulate(run_seed, steps, config, time_limit=time_limit)
        except Exception as e:  # the simulated code crashed: a finding, named with its seed
            return HuntResult(first_seed=seed, seeds_run=n, seconds=clock() - start, swarm=swarm, found=None,
                              crash=f"seed {run_seed}: {type(e).__name__}: {e}",
                              replay=replay_command(run_seed, steps, swarm, nodes, outcome=None),
                              coverage=merge(covered))
        covered.append(outcome.coverage)
        if outcome.valid is False:
            return HuntResult(first_seed=seed, seeds_run=n, seconds=clock() - start, swarm=swarm, found=outcome,
                              replay=replay_command(run_seed, steps, swarm, nodes, outcome=outcome),
                              coverage=merge(covered))
        if clock() - start >= budget:
            return HuntResult(first_seed=seed, seeds_run=n, seconds=clock() - start, swarm=swarm, found=None,
                              coverage=merge(covered))


def replay_command(seed: int, steps: int, swarm: bool, nodes: int | None, *, outcome: SimOutcome | None) -> str:
    """How to repeat one run of a hunt: a swarm run needs only its seed; a fixed one its flags."""
    if not swarm and outcome is not None:
        return outcome.replay
    return f"raftlab sim --seed {seed} --steps {steps}" + (" --swarm" if swarm else "") + (
        f" --nodes {nodes}" if nodes else "")
