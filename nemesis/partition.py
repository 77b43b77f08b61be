"""Network partitions: Jepsen's shapes as pure grudge builders, and the nemesis that applies them.

A grudge maps each host to the hosts whose traffic it drops (``raftlab.protocols.Grudge``). The
builders are pure functions of (hosts, rng, leader): no I/O, so they are tested as plain values
and a seed replays the same schedule. ``PartitionNemesis`` resolves the leader when a shape needs
one (through the DB's ``primaries()``), builds the grudge and applies it through ``lab.net``.

Shapes (after jepsen.nemesis.combined):

* ``one``: isolate one random host from all others;
* ``halves``: a random minority and majority, each complete inside;
* ``ring``: majorities ring, every host sees a majority and no two see the same one;
* ``bridge``: two halves that cannot talk, joined by one host that sees both;
* ``leader``: isolate the current leader;
* ``leader-minority``: the leader in the minority side of a halves split;
* ``random``: a random non-empty proper subset against the rest;
* ``follower``: isolate one follower (not the leader): what ``stale-candidate`` (nemesis/timed.py)
  builds on; the ``partition`` fault does not draw it, so its seeds keep their schedules.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from raftlab.nemesis.package import Family, Fault
from raftlab.nemesis.targets import TargetError, completion, current_leader, failure

from raftlab.history import Op
from raftlab.protocols import Grudge, Host, Lab


class ShapeError(ValueError):
    """A shape cannot be built (unknown name, too few hosts, no leader known)."""


def complete(components: Iterable[Collection[Host]]) -> Grudge:
    """The grudge where hosts talk only within their own component."""
    comps = [frozenset(c) for c in components]
    everyone = frozenset().union(*comps)
    return {h: everyone - c for c in comps for h in sorted(c)}


def isolate(hosts: Sequence[Host], target: Host) -> Grudge:
    if target not in hosts:
        raise ShapeError(f"cannot isolate {target!r}: not one of {', '.join(hosts)}")
    return complete([[target], [h for h in hosts if h != target]])


def _need(hosts: Sequence[Host], n: int, shape: str) -> None:
    if len(hosts) < n:
        raise ShapeError(f"shape {shape!r} needs at least {n} hosts, the lab has {len(hosts)}")


def isolate_one(hosts: Sequence[Host], rng: random.Random) -> Grudge:
    _need(hosts, 2, "one")
    return isolate(hosts, rng.choice(list(hosts)))


def halves(hosts: Sequence[Host], rng: random.Random) -> Grudge:
    _need(hosts, 2, "halves")
    shuffled = list(hosts)
    rng.shuffle(shuffled)
    cut_at = len(shuffled) // 2
    return complete([shuffled[:cut_at], shuffled[cut_at:]])


def majorities_ring(hosts: Sequence[Host], rng: random.Random) -> Grudge:
    """Each host sees the hosts within distance k of it on a shuffled ring, a majority (2k+1 >= n/2+1)."""
    _need(hosts, 4, "ring")
    ring = list(hosts)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    k = majority // 2  # 2k + 1 >= majority
    everyone = frozenset(ring)
    grudge: Grudge = {}
    for i, h in enumerate(ring):
        sees = frozenset(ring[(i + d) % n] for d in range(-k, k + 1))
        grudge[h] = everyone - sees
    return grudge


def bridge(hosts: Sequence[Host], rng: random.Random) -> Grudge:
    """Two halves cut from each other; one bridge host is in both."""
    _need(hosts, 3, "bridge")
    shuffled = list(hosts)
    rng.shuffle(shuffled)
    middle = len(shuffled) // 2
    left, joint, right = shuffled[:middle], shuffled[middle], shuffled[middle + 1:]
    grudge: Grudge = {h: frozenset(right) for h in left}
    grudge.update({h: frozenset(left) for h in right})
    grudge[joint] = frozenset()
    return grudge


def isolate_leader(hosts: Sequence[Host], rng: random.Random, leader: Host | None) -> Grudge:
    if leader is None:
        raise ShapeError("shape 'leader' needs the current leader, and none is known")
    return isolate(hosts, leader)


def leader_minority(hosts: Sequence[Host], rng: random.Random, leader: Host | None) -> Grudge:
    """The leader and a random set of others, a minority, against a majority."""
    _need(hosts, 3, "leader-minority")
    if leader is None:
        raise ShapeError("shape 'leader-minority' needs the current leader, and none is known")
    if leader not in hosts:
        raise ShapeError(f"leader {leader!r} is not one of {', '.join(hosts)}")
    others = [h for h in hosts if h != leader]
    rng.shuffle(others)
    size = (len(hosts) - 1) // 2  # minority size, leader included
    return complete([[leader, *others[: size - 1]], others[size - 1:]])


def isolate_follower(hosts: Sequence[Host], rng: random.Random, leader: Host | None) -> Grudge:
    if leader is None:
        raise ShapeError("shape 'follower' needs the current leader, and none is known")
    _need(hosts, 2, "follower")
    return isolate(hosts, rng.choice([h for h in hosts if h != leader]))


def random_split(hosts: Sequence[Host], rng: random.Random) -> Grudge:
    _need(hosts, 2, "random")
    shuffled = list(hosts)
    rng.shuffle(shuffled)
    size = rng.randint(1, len(shuffled) - 1)
    return complete([shuffled[:size], shuffled[size:]])


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    name: str
    build: Callable[[Sequence[Host], random.Random, Host | None], Grudge]
    needs_leader: bool = False


SHAPES: dict[str, Shape] = {s.name: s for s in [
    Shape(name="one", build=lambda h, r, _: isolate_one(h, r)),
    Shape(name="halves", build=lambda h, r, _: halves(h, r)),
    Shape(name="ring", build=lambda h, r, _: majorities_ring(h, r)),
    Shape(name="bridge", build=lambda h, r, _: bridge(h, r)),
    Shape(name="random", build=lambda h, r, _: random_split(h, r)),
    Shape(name="leader", build=isolate_leader, needs_leader=True),
    Shape(name="leader-minority", build=leader_minority, needs_leader=True),
    Shape(name="follower", build=isolate_follower, needs_leader=True),
]}
JEPSEN_SHAPES = ("one", "halves", "ring", "bridge", "random", "leader", "leader-minority")  # what `partition` draws


def build(shape: str, hosts: Sequence[Host], rng: random.Random, leader: Host | None = None) -> Grudge:
    if shape not in SHAPES:
        raise ShapeError(f"unknown partition shape {shape!r} (known: {', '.join(SHAPES)})")
    return SHAPES[shape].build(hosts, rng, leader)


def components(grudge: Grudge) -> list[list[Host]] | None:
    """The components of a complete grudge, or None when it is not one (ring, bridge)."""
    hosts = sorted(grudge)
    groups: list[list[Host]] = []
    for h in hosts:
        sees = frozenset(hosts) - grudge[h]
        if any(sees == frozenset(g) for g in groups):
            continue
        if any(h in g for g in groups) or any(frozenset(hosts) - grudge[x] != sees for x in sees):
            return None
        groups.append(sorted(sees))
    return groups


def describe(grudge: Grudge) -> str:
    """One line: ``n1 n2 | n3 n4 n5`` for components, else each host's cut links."""
    if not any(grudge.values()):
        return "fully connected"
    groups = components(grudge)
    if groups is not None:
        return " | ".join(" ".join(g) for g in groups)
    return "; ".join(f"{h} drops {','.join(sorted(v))}" for h, v in sorted(grudge.items()) if v)


def to_json(grudge: Grudge) -> dict[str, list[Host]]:
    return {h: sorted(v) for h, v in sorted(grudge.items())}


class PartitionNemesis:
    """``start-partition`` (value: a shape name, or ``{"isolate": HOST}``) and ``stop-partition``,
    through ``lab.net``."""

    def __init__(self, db: object, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        self.lab: Lab | None = None
        self.active: Grudge | None = None

    def fs(self) -> frozenset[str]:
        return frozenset({"start-partition", "stop-partition"})

    async def setup(self, lab: Lab) -> None:
        self.lab = lab

    async def invoke(self, op: Op) -> Op:
        if self.lab is None:
            return failure(op, "partition nemesis used before setup")
        if op.f == "stop-partition":
            try:
                await self.lab.net.heal()
            except Exception as e:  # a heal that fails is recorded, and retried by the final phase
                return failure(op, f"heal failed: {e.__class__.__name__}: {e}")
            self.active = None
            return completion(op, {"healed": True})
        shape = op.value or "halves"
        leader = None
        try:
            if isinstance(shape, dict) and "isolate" in shape:  # one named host (stale-candidate's second cut)
                grudge = isolate(list(self.lab.hosts), shape["isolate"])
            else:
                if shape in SHAPES and SHAPES[shape].needs_leader:
                    leader = await current_leader(self.db)
                grudge = build(shape, list(self.lab.hosts), self.rng, leader)
        except (ShapeError, TargetError) as e:
            return failure(op, str(e))
        try:
            await self.lab.net.partition(grudge)
        except Exception as e:
            return failure(op, f"partition failed: {e.__class__.__name__}: {e}")
        self.active = grudge
        value = {"shape": shape, "grudge": to_json(grudge), "description": describe(grudge)}
        if leader is not None:
            value["leader"] = leader
        return completion(op, value)

    async def teardown(self) -> None:
        if self.lab is not None and self.active is not None:
            await self.lab.net.heal()
            self.active = None


FAMILY = Family(
    name="partition",
    needs="the lab's Net (every lab has one); -leader shapes also a DB with primaries()",
    heal_ranks={"stop-partition": 40},
    build=lambda ctx: PartitionNemesis(ctx.db, ctx.rng),
    faults=(
        Fault(name="partition", start="start-partition", stop="stop-partition", values=JEPSEN_SHAPES,
              color="#E9DCA0", doc="cut the network in one of Jepsen's shapes, then heal"),
        Fault(name="partition-leader", start="start-partition", stop="stop-partition",
              values=("leader", "leader-minority"), color="#E9DCA0",
              doc="isolate the leader, or put it in the minority, then heal"),
    ),
)
