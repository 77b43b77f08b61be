"""The package's lanes alternate fault and heal from its seed; the healer heals in rank order."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from raftlab.nemesis import FAMILIES, FAMILY_OF, FAULTS, UnknownFault, package, parse_faults
from raftlab.nemesis.package import Family, NemesisContractError, noop, validated
from raftlab.nemesis.targets import op

from raftlab import generator as gen
from raftlab.generator import NS, simulate
from raftlab.history import NEMESIS, Op, OpType


def drive(g: object, seconds: float = 40.0) -> list[Op]:
    """The nemesis invokes ``g`` makes under ``simulate``, each completing after 10 ms."""
    def complete(o: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return OpType.INFO, None, NS // 100

    h = simulate(gen.on_nemesis(g), concurrency=1, complete=complete, max_time=seconds)
    return [o for o in h if o.type is OpType.INVOKE]


def test_schedule_alternates_fault_and_heal_and_replays(seed: int) -> None:
    def ops() -> list[tuple[str, object]]:
        pkg = package("kill,pause,partition", db=None, rng=random.Random(seed), interval=1.0)
        return [(o.f, o.value) for o in drive(pkg.generator)]

    first = ops()
    assert first == ops()
    assert len(first) >= 20
    heals = {"kill": "start", "pause": "resume", "start-partition": "stop-partition"}
    for start, stop in zip(first[::2], first[1::2], strict=False):
        assert heals[start[0]] == stop[0] and stop[1] is None


def test_the_bag_draws_every_fault_before_any_again(seed: int) -> None:
    pkg = package("kill,pause,partition", db=None, rng=random.Random(seed), interval=0.2)
    starts = [o.extra["fault"] for o in drive(pkg.generator) if o.f in ("kill", "pause", "start-partition")]
    assert len(starts) >= 9
    for i in range(0, 9, 3):
        assert sorted(starts[i:i + 3]) == ["kill", "partition", "pause"]


def test_waits_are_between_half_and_one_and_a_half_intervals(seed: int) -> None:
    pkg = package("kill", db=None, rng=random.Random(seed), interval=2.0)
    times = [o.time for o in drive(pkg.generator, 60)]
    gaps = [(b - a) / NS for a, b in itertools.pairwise(times)]
    assert gaps and all(0.99 <= g <= 3.02 for g in gaps), gaps  # 1-3 s, plus the 10 ms completion


def test_lanes_overlap_a_clock_fault_with_a_partition(seed: int) -> None:
    """Faults of one lane alternate; the clock lane runs beside the main one (Jepsen's combined)."""
    pkg = package("partition,clock-strobe", db=None, rng=random.Random(seed), interval=1.0)
    fs = [o.f for o in drive(pkg.generator, 60)]
    open_faults: set[str] = set()
    overlapped = False
    for f in fs:
        if f in ("start-partition", "clock-skew"):
            open_faults.add(f)
            overlapped |= len(open_faults) == 2
        else:
            open_faults.discard({"stop-partition": "start-partition", "clock-reset": "clock-skew"}[f])
    assert overlapped


def test_the_healer_heals_disks_first_then_processes_network_nodes() -> None:
    pkg = package("kill,partition,disk-pause,pause,lose-unfsynced", db=None, rng=random.Random(0), interval=1.0)
    assert [o.f for o in drive(pkg.healer())] == ["disk-resume", "resume", "stop-partition", "restart", "start"]
    assert [o.f for o in drive(pkg.healer())] == [o.f for o in drive(pkg.healer())]  # a fresh one each time
    assert {p["name"] for p in pkg.perf} == {"kill", "partition", "disk-pause", "pause", "lose-unfsynced"}


def test_every_family_ranks_its_heals_and_every_fault_is_named_once() -> None:
    assert {"process", "partition", "disk", "host"} <= set(FAMILIES)
    for name, fault in FAULTS.items():
        assert fault.name == name and fault.stop in FAMILY_OF[name].heal_ranks
    with pytest.raises(ValueError, match="no heal rank"):
        Family(name="x", faults=(FAULTS["kill"],), heal_ranks={}, needs="", build=lambda ctx: noop())


def test_unknown_fault_is_named() -> None:
    with pytest.raises(UnknownFault, match="unknown fault 'meteor'"):
        parse_faults("kill,meteor")
    assert parse_faults("none") == []


def test_validated_wrapper_rejects_a_broken_nemesis() -> None:
    class Liar:
        def fs(self) -> frozenset[str]:
            return frozenset({"kill"})

        async def setup(self, lab: object) -> None: ...

        async def invoke(self, o: Op) -> Op:
            return Op(type=OpType.OK, process=NEMESIS, f=o.f)  # must be info

        async def teardown(self) -> None: ...

    nem = validated(Liar())  # type: ignore[arg-type]
    with pytest.raises(NemesisContractError, match="must be an info op"):
        asyncio.run(nem.invoke(op("kill", "one")))
    with pytest.raises(NemesisContractError, match="non-nemesis invoke"):
        asyncio.run(nem.invoke(Op(type=OpType.INVOKE, process=3, f="kill")))


def test_only_the_member_family_observes_and_its_observer_names_the_moment() -> None:
    """Observations (``Family.observe``) run only for families that declare them, so a run without
    the member nemesis gets exactly the generator it had before."""
    assert [name for name, family in FAMILIES.items() if family.observe] == ["member"]
    assert package("kill,partition", db=None, rng=random.Random(1)).observe_fs == ()
    pkg = package("member,kill", db=None, rng=random.Random(1))
    assert pkg.observe_fs == ("membership",)
    assert [(o.f, o.value) for o in drive(pkg.observer("end"))] == [("membership", "end")]
    assert "membership" in pkg.nemesis.fs() and "membership" not in pkg.heal_fs
