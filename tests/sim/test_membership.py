"""Membership changes in seeded simulations: valid across seeds with every fault on, and a core
that skips the joint phase (the ``conf-skip-joint`` mutant) is caught by the same runs."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import raftlab.impl.raft.confchange as confchange
import raftlab.impl.raft.membership as membership

from raftlab.mutants import by_id, patch
from raftlab.sim.cluster import SimConfig, simulate


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


@pytest.fixture
def skip_joint() -> Iterator[None]:
    """The core runs the mutant's confchange (straight from the old voters to the new)."""
    source = patch(Path(confchange.__file__).read_text(), by_id(["conf-skip-joint"])[0])
    mod = types.ModuleType("raftlab.impl.raft.confchange_mutant")
    mod.__package__ = "raftlab.impl.raft"
    sys.modules[mod.__name__] = mod
    exec(compile(source, "<mutant conf-skip-joint>", "exec"), mod.__dict__)
    mod.ConfChangeError = confchange.ConfChangeError  # type: ignore[attr-defined]  # refusals stay recognisable
    saved = {name: getattr(membership, name) for name in ("apply", "validate", "Membership")}
    for name in saved:
        setattr(membership, name, getattr(mod, name))
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(membership, name, value)
        del sys.modules[mod.__name__]


def test_skipping_the_joint_phase_is_caught(skip_joint: None) -> None:
    found = None
    for seed in range(16):
        outcome = simulate(seed, 20000, config(), time_limit=10)
        if outcome.valid is False:
            found = outcome
            break
    assert found is not None, "16 seeds of membership changes did not catch a change made without a joint phase"
    assert found.explanation.startswith(("invariant violated", "not linearizable")), found.explanation
