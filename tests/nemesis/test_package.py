"""The package's schedule alternates fault and heal from its seed; the final phase heals in a safe order."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest
from raftlab.nemesis import UnknownFault, package, parse_faults
from raftlab.nemesis.package import PENDING, NemesisContractError, validated
from raftlab.nemesis.process import op

from raftlab.history import NEMESIS, Op, OpType


@dataclass
class Ctx:
    time: int = 0
    free_processes: list[object] = field(default_factory=lambda: [NEMESIS, 0, 1])


def drive(gen: object, steps: int, step_ns: int = 100_000_000) -> list[Op]:
    """Poll like an interpreter whose nemesis ops complete at once; return the ops emitted."""
    ctx, out = Ctx(), []
    for _ in range(steps):
        o = gen.op(ctx)  # type: ignore[attr-defined]
        if o is None:
            break
        if o is not PENDING:
            out.append(o)
            gen.update(ctx, o.__class__(type=OpType.INFO, process=NEMESIS, f=o.f))  # type: ignore[attr-defined]
        ctx.time += step_ns
    return out


def test_schedule_alternates_fault_and_heal_and_replays(seed: int) -> None:
    def ops() -> list[tuple[str, object]]:
        pkg = package("kill,pause,partition", db=None, lab=None, rng=random.Random(seed), interval=1.0)
        return [(o.f, o.value) for o in drive(pkg.generator, 400)]

    first = ops()
    assert first == ops()
    assert len(first) >= 20
    heals = {"kill": "start", "pause": "resume", "start-partition": "stop-partition"}
    for start, stop in zip(first[::2], first[1::2], strict=False):
        assert heals[start[0]] == stop[0] and stop[1] is None


def test_schedule_waits_for_the_nemesis_to_be_free() -> None:
    pkg = package("kill", db=None, lab=None, rng=random.Random(1), interval=0.1)
    ctx = Ctx(time=10**9, free_processes=[0, 1])
    assert pkg.generator.op(ctx) is PENDING


def test_final_generator_heals_disks_first_then_processes_network_nodes() -> None:
    pkg = package("kill,partition,disk-pause,pause,lose-unfsynced", db=None, lab=None,
                  rng=random.Random(0), interval=1.0)
    assert [o.f for o in drive(pkg.final_generator, 50)] == [
        "disk-resume", "resume", "stop-partition", "restart", "start"]
    assert {p["name"] for p in pkg.perf} == {"kill", "partition", "disk-pause", "pause", "lose-unfsynced"}


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
