"""Jepsen's partition shapes as pure grudges: each property stated as in jepsen.nemesis."""

from __future__ import annotations

import random

import pytest
from raftlab.nemesis.partition import FAMILY, SHAPES, ShapeError, build, components, describe, halves

HOSTS = ["n1", "n2", "n3", "n4", "n5"]


def sees(grudge: dict[str, frozenset[str]], host: str) -> frozenset[str]:
    return frozenset(grudge) - grudge[host]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_is_a_real_partition_and_replays_from_its_seed(shape: str, seed: int) -> None:
    a = build(shape, HOSTS, random.Random(seed), leader="n3")
    assert a == build(shape, HOSTS, random.Random(seed), leader="n3")
    assert set(a) == set(HOSTS)
    assert any(a.values()), "some link must be cut"
    for h, enemies in a.items():
        assert h not in enemies and enemies <= set(HOSTS)


def test_halves_is_minority_and_majority(seed: int) -> None:
    groups = components(halves(HOSTS, random.Random(seed)))
    assert groups is not None and sorted(map(len, groups)) == [2, 3]


def test_isolate_one_and_leader() -> None:
    g = build("leader", HOSTS, random.Random(0), leader="n4")
    assert components(g) == [["n1", "n2", "n3", "n5"], ["n4"]]
    assert describe(g) == "n1 n2 n3 n5 | n4"
    with pytest.raises(ShapeError, match="none is known"):
        build("leader", HOSTS, random.Random(0), leader=None)


def test_leader_minority_puts_the_leader_on_the_small_side(seed: int) -> None:
    g = build("leader-minority", HOSTS, random.Random(seed), leader="n2")
    side = sees(g, "n2")
    assert "n2" in side and len(side) == 2
    assert len(frozenset(HOSTS) - side) == 3


def test_majorities_ring_every_host_sees_a_different_majority(seed: int) -> None:
    g = build("ring", HOSTS, random.Random(seed))
    views = [sees(g, h) for h in HOSTS]
    assert all(len(v) >= 3 for v in views)
    assert len(set(views)) == len(HOSTS)
    assert all(g[a].__contains__(b) == g[b].__contains__(a) for a in HOSTS for b in HOSTS)  # symmetric
    assert components(g) is None


def test_bridge_has_one_host_seeing_both_halves(seed: int) -> None:
    g = build("bridge", HOSTS, random.Random(seed))
    bridges = [h for h in HOSTS if not g[h]]
    assert len(bridges) == 1
    others = [h for h in HOSTS if g[h]]
    assert all(len(g[h]) == 2 and bridges[0] not in g[h] for h in others)


def test_random_split_and_errors(seed: int) -> None:
    groups = components(build("random", HOSTS, random.Random(seed)))
    assert groups is not None and len(groups) == 2 and sum(map(len, groups)) == 5
    with pytest.raises(ShapeError, match="unknown partition shape 'zigzag'"):
        build("zigzag", HOSTS, random.Random(0))
    with pytest.raises(ShapeError, match="needs at least 4 hosts"):
        build("ring", HOSTS[:3], random.Random(0))
    assert describe({h: frozenset() for h in HOSTS}) == "fully connected"


def test_follower_isolates_one_host_that_is_not_the_leader(seed: int) -> None:
    g = build("follower", HOSTS, random.Random(seed), leader="n2")
    groups = components(g)
    assert groups is not None and sorted(map(len, groups)) == [1, 4]
    alone = next(grp for grp in groups if len(grp) == 1)[0]
    assert alone != "n2"
    with pytest.raises(ShapeError, match="none is known"):
        build("follower", HOSTS, random.Random(seed), leader=None)
    assert "follower" not in FAMILY.faults[0].values  # `partition` never draws it: seeds keep their schedules
