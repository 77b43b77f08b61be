"""Targeted scenarios: faults the simulator fires when the cluster is inside a risky window.

Random faults rarely land in the few steps where a Raft bug shows: a crash has to hit a leader
after it replicated an entry to a minority but before a majority acked it (Figure 8 of the Raft
paper needs this twice, in adjacent terms), a heal has to come while a deposed leader still
thinks it leads, a restart has to come right after a node voted. Each scenario here is a
condition on the cluster's state and the action that opens the window when it holds:

* ``crash-minority-leader``: a leader whose newest entries reached some followers but not a
  quorum crashes (the entries survive on a minority: Figure 8, and divergent follower tails);
* ``crash-new-leader``: a leader that has not yet committed an entry of its term crashes or is
  cut off (two leaders in adjacent terms, each with entries the other lacks);
* ``crash-unsynced``: a node that wrote but has not yet synced (a disk stall in flight) crashes
  and so loses the unsynced tail of its log or its hard state;
* ``crash-voter``: a node that voted in its current term and knows no leader yet crashes and at
  once restarts (the vote must survive: a node that forgets it votes twice);
* ``split-campaign``: with no leader, two nodes' clocks jump past the election timeout at once,
  so two candidates ask for votes in the same term;
* ``isolate-leader``: the leader and one follower (the leader alone in a 3-node cluster) are cut
  off from the rest: a minority leader that can still get one heartbeat answer;
* ``heal-stale-leader``: the network heals while two nodes lead, once the newer one committed
  past the deposed one (whose messages now reach the new term's nodes), or while a cut-off node
  has a higher term (a vote during a heal);
* ``restart-down``: a crashed node comes back, so the crash scenarios do not empty the cluster.

Which scenarios a run uses and how eagerly (``SimConfig.scenarios``, ``scenario_rate``: the chance
per step that the engine looks) come from the seed (raftlab/swarm.py); the engine's choices use
the cluster's seeded rng only, so a run replays exactly. Every firing is traced and counted in
the run's stats (``scenarios``) and coverage, so a user sees which windows a run opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from raftlab.impl.raft import Role

if TYPE_CHECKING:
    from .cluster import SimCluster, SimNode

SCENARIOS: dict[str, str] = {
    "crash-minority-leader": "a leader whose newest entries reached a minority crashes (Figure 8)",
    "crash-new-leader": "a leader that has not committed in its term yet crashes or is cut off",
    "crash-unsynced": "a node with written but unsynced data crashes (loses the unsynced tail)",
    "crash-voter": "a node that voted and knows no leader crashes and restarts at once",
    "split-campaign": "two nodes time out at once with no leader (two candidates, one term)",
    "isolate-leader": "the leader and one follower are cut off from the rest",
    "heal-stale-leader": "the network heals while a deposed leader leads or a cut-off node has a higher term",
    "restart-down": "a crashed node restarts",
}


def _up(c: SimCluster) -> list[SimNode]:
    return [n for n in c.nodes.values() if n.up]


def _can_crash(c: SimCluster) -> bool:
    """Crash scenarios keep a majority up (a majority crash comes from the random faults)."""
    down = len(c.ids) - len(_up(c))
    return (down + 1) * 2 < len(c.ids)


def _leaders(c: SimCluster) -> list[SimNode]:
    return sorted((n for n in _up(c) if n.core.role is Role.LEADER), key=lambda n: n.core.term)


def _crash_minority_leader(c: SimCluster) -> bool:
    if not _can_crash(c):
        return False
    for n in _leaders(c):
        log = n.core.log
        ahead = sum(1 for i, pr in n.core.prs.items() if i != n.id and pr.match > log.committed)
        if ahead and ahead + 1 < len(c.ids) // 2 + 1:
            c.crash(n.id)
            return True
    return False


def _crash_new_leader(c: SimCluster) -> bool:
    for n in _leaders(c):
        log = n.core.log
        if log.term(log.committed) != n.core.term and log.last_index() > log.committed:
            if c.rng.random() < 0.5 and _can_crash(c):
                c.crash(n.id)
            elif not c.net.partitioned():
                c.net.partition({n.id}, set(c.ids) - {n.id})
                c.trace.append(f"partition [{n.id}]")
            else:
                continue
            return True
    return False


def _crash_unsynced(c: SimCluster) -> bool:
    if not _can_crash(c):
        return False
    for n in _up(c):
        s = n.storage
        if n.persisting is not None or s.synced_last_index() != s.last_index() or (
                s.synced_hard_state() != s.initial_state()):
            c.crash(n.id)
            return True
    return False


def _crash_voter(c: SimCluster) -> bool:
    for n in _up(c):
        core = n.core
        if core.vote and core.vote != n.id and not core.lead and core.role is Role.FOLLOWER:
            c.crash(n.id)
            c.restart(n.id)
            return True
    return False


def _split_campaign(c: SimCluster) -> bool:
    up = [n for n in _up(c) if n.core.role is not Role.LEADER]
    if _leaders(c) or len(up) < 2:
        return False
    pair = c.rng.sample(up, 2)
    for n in pair:
        n.jumped += 2 * c.config.election_tick
        n.busy = True
    c.trace.append(f"clocks of {pair[0].id} and {pair[1].id} pass the election timeout together")
    return True


def _isolate_leader(c: SimCluster) -> bool:
    leaders = _leaders(c)
    if c.net.partitioned() or not leaders:
        return False
    lead = leaders[-1].id
    side = {lead}
    if len(c.ids) > 3:
        side.add(c.rng.choice([i for i in c.ids if i != lead]))
    c.net.partition(side, set(c.ids) - side)
    c.stats["partitions"] += 1
    c.trace.append(f"partition {sorted(side)} (leader {lead} with a follower)")
    return True


def _heal_stale_leader(c: SimCluster) -> bool:
    if not c.net.partitioned():
        return False
    leaders = _leaders(c)
    # wait until the newer leader committed past the deposed one: both sides then hold values
    stale = len(leaders) > 1 and leaders[-1].core.log.committed > leaders[0].core.log.committed + 5
    terms = sorted(n.core.term for n in _up(c))
    if stale or (len(leaders) < 2 and terms and terms[-1] > terms[len(terms) // 2]):
        c.net.heal()
        c.trace.append("heal (a stale leader or a higher term waits on the other side)")
        return True
    return False


def _restart_down(c: SimCluster) -> bool:
    down = [n for n in c.nodes.values() if not n.up]
    if not down:
        return False
    c.restart(c.rng.choice(down).id)
    return True


ACTIONS: dict[str, Callable[[SimCluster], bool]] = {
    "crash-minority-leader": _crash_minority_leader,
    "crash-new-leader": _crash_new_leader,
    "crash-unsynced": _crash_unsynced,
    "crash-voter": _crash_voter,
    "split-campaign": _split_campaign,
    "isolate-leader": _isolate_leader,
    "heal-stale-leader": _heal_stale_leader,
    "restart-down": _restart_down,
}


def fire(c: SimCluster) -> str | None:
    """Try the run's scenarios in a seeded order; the first whose window is open acts. (No rest
    between firings: Figure 8 needs two crashes in a row; a seed whose scenarios leave the
    cluster no progress gives an unknown verdict, never a false alarm.)"""
    names = list(c.config.scenarios)
    c.rng.shuffle(names)
    for name in names:
        if ACTIONS[name](c):
            c.stats["scenarios"] += 1
            c.trace.append(f"scenario {name}")
            return name
    return None
