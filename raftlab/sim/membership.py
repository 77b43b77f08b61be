"""Membership changes in the simulator (``SimConfig.membership``): the cluster grows, shrinks,
swaps several members in one joint step, adds and promotes learners, removes its leader, and
aborts prepared changes, interleaved with every other fault of the run.

Theory of operation. With ``membership`` on, the pool is ``nodes + spares`` ids; the first
``nodes`` are the bootstrap voters and the spares run from the start as non-members (they know
the bootstrap configuration, take no part, and are brought in by the log or a snapshot once a
change adds them). Now and then the current leader is asked for a change drawn by the seeded
rng: one voter added or removed (the usual operator step), a new voter set of any size (several
members at once: only joint consensus keeps that safe), a learner added or promoted; one change
in five is prepared without ``auto_leave`` and later left or aborted. A refusal
(``ConfChangeError``: a change in progress, nothing to change) is part of the run, traced.

A member that every node's configuration has dropped may also be wiped when it crashes (it
restarts with an empty disk and the rejoin flag of `raftlab node repair --empty`, as the
member nemesis does to a real node) and can be re-added later:
it then gets the log or a snapshot like any new member. The invariants and the
linearizability check of the run judge all of it; ``tests/sim`` shows that a core which skips
the joint phase (the ``conf-skip-joint`` mutant) breaks election safety under these changes.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from raftlab.impl.raft.confchange import ConfChange, ConfChangeError
from raftlab.impl.raft.reads import NotLeader

if TYPE_CHECKING:
    from raftlab.impl.raft import RaftCore

    from .cluster import SimNode


def draw_change(rng: random.Random, core: RaftCore, pool: tuple[int, ...]) -> ConfChange:
    """One change for the leader ``core`` to propose (it may be refused: that is traced too)."""
    m = core.membership
    if m.joint:
        return ConfChange(op="leave" if rng.random() < 0.6 else "abort")
    voters, learners = set(m.voters), set(m.learners)
    others = [i for i in pool if i not in voters]
    r = rng.random()
    if r < 0.45:  # one voter in or out: the operator's usual step
        if others and (len(voters) < 3 or rng.random() < 0.5):
            voters.add(rng.choice(others))
        elif len(voters) > 1:
            voters.remove(rng.choice(sorted(voters)))
    elif r < 0.75:  # several at once: safe only by joint consensus
        voters = set(rng.sample(pool, rng.randrange(1, len(pool) + 1)))
    elif r < 0.9 and others:  # a learner added
        learners.add(rng.choice(others))
    elif learners:  # a learner promoted
        promoted = rng.choice(sorted(learners))
        voters.add(promoted)
    learners -= voters
    return ConfChange(op="enter", voters=tuple(sorted(voters)), learners=tuple(sorted(learners)),
                      auto_leave=rng.random() < 0.8)


def change_membership(rng: random.Random, leader: SimNode | None, pool: tuple[int, ...]) -> str:
    """Ask the leader for a drawn change; the trace line says what happened."""
    if leader is None:
        return "membership: no leader to ask"
    change = draw_change(rng, leader.core, pool)
    try:
        _, index = leader.core.propose_conf_change(change)
    except (ConfChangeError, NotLeader) as e:
        return f"membership: {leader.id} refuses {change.describe()}: {e}"
    return f"membership: {leader.id} proposes {change.describe()} at {index}"


def may_wipe(node_id: int, nodes: dict[int, SimNode]) -> bool:
    """True if no node's configuration (down nodes' too) names ``node_id`` any more: its disk may
    be wiped without breaking anything it promised (its votes and acknowledgements count for
    no quorum that is still in force)."""
    return all(node_id not in n.core.membership.members() and not n.core.membership.joint
               for n in nodes.values())
