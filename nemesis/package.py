"""Composition: several fault components as one Nemesis, a seeded schedule, and its healing phase.

``Package(nemesis, generator, final_generator, perf)`` is what the runner consumes (after
jepsen.nemesis.combined):

* ``nemesis`` dispatches each op to the component whose ``fs()`` holds its ``f``;
* ``generator`` alternates fault and heal: wait a seeded delay, start a fault chosen with the
  package's rng (its target or shape chosen too), wait, heal it, and so on. It emits one op at a
  time, only when the ``nemesis`` process is free and the delay has passed (``ctx.time``, ns);
* ``final_generator`` heals everything, in the order that cannot hang: disks resume first (a
  process blocked on a paused disk cannot even die), then paused processes, then the network,
  then crashed and killed nodes restart;
* ``perf`` tells the report which fs start and stop each fault, for shading its intervals.

``validated(nemesis)`` checks the Nemesis contract on every call; ``noop()`` is the nemesis that
does nothing (for runs without faults).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from raftlab.nemesis.process import failure, op

from raftlab.history import NEMESIS, Op, OpType
from raftlab.protocols import Generator, Lab, Nemesis

try:  # the harness's sentinel, once raftlab/generator.py exists
    from raftlab.generator import PENDING  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - until the harness lands
    PENDING = "pending"

HEAL_ORDER = ("host-resume", "disk-resume", "resume", "stop-partition", "restart", "power-on", "start", "grow")


class NemesisContractError(AssertionError):
    """A nemesis broke the protocol (wrong process, type or f); names the op."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A registered fault: the f that starts it, the f that heals it, and what it may target."""

    name: str
    start: str
    stop: str
    values: tuple[Any, ...]
    component: str
    color: str
    doc: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    nemesis: Nemesis
    generator: Generator
    final_generator: Generator
    perf: tuple[dict[str, Any], ...]


class ComposedNemesis:
    """Several components as one nemesis; each f belongs to exactly one component."""

    def __init__(self, components: Sequence[Nemesis]) -> None:
        self.components = list(components)
        self._by_f: dict[str, Nemesis] = {}
        for c in self.components:
            for f in c.fs():
                if f in self._by_f:
                    raise ValueError(f"two nemesis components handle {f!r}")
                self._by_f[f] = c

    def fs(self) -> frozenset[str]:
        return frozenset(self._by_f)

    async def setup(self, lab: Lab) -> None:
        for c in self.components:
            await c.setup(lab)

    async def invoke(self, op: Op) -> Op:
        component = self._by_f.get(op.f)
        if component is None:
            return failure(op, f"no fault handles {op.f!r} (enabled: {', '.join(sorted(self._by_f))})")
        return await component.invoke(op)

    async def teardown(self) -> None:
        errors = []
        for c in self.components:
            try:
                await c.teardown()
            except Exception as e:  # every component gets its teardown, whatever the others do
                errors.append(e)
        if errors:
            raise ExceptionGroup("nemesis teardown failed", errors)


class ValidatedNemesis:
    """Checks every invoke and completion against the Nemesis protocol (Jepsen's Validate)."""

    def __init__(self, inner: Nemesis) -> None:
        self.inner = inner

    def fs(self) -> frozenset[str]:
        fs = self.inner.fs()
        if not isinstance(fs, frozenset) or not all(isinstance(f, str) for f in fs):
            raise NemesisContractError(f"fs() must be a frozenset of strings, not {fs!r}")
        return fs

    async def setup(self, lab: Lab) -> None:
        await self.inner.setup(lab)

    async def invoke(self, op: Op) -> Op:
        if op.process != NEMESIS or op.type != OpType.INVOKE:
            raise NemesisContractError(f"nemesis asked to run a non-nemesis invoke: {op.describe()}")
        if op.f not in self.fs():
            raise NemesisContractError(f"nemesis asked for {op.f!r}, which it does not handle")
        done = await self.inner.invoke(op)
        if not isinstance(done, Op) or done.process != NEMESIS or done.type != OpType.INFO or done.f != op.f:
            raise NemesisContractError(f"nemesis completion must be an info op of process nemesis with f "
                                       f"{op.f!r}, got {done!r}")
        return done

    async def teardown(self) -> None:
        await self.inner.teardown()


def validated(nemesis: Nemesis) -> ValidatedNemesis:
    return ValidatedNemesis(nemesis)


class _Noop:
    def fs(self) -> frozenset[str]:
        return frozenset()

    async def setup(self, lab: Lab) -> None:
        return None

    async def invoke(self, op: Op) -> Op:
        return failure(op, "the noop nemesis does nothing")

    async def teardown(self) -> None:
        return None


def noop() -> Nemesis:
    return _Noop()


class Schedule:
    """Fault, delay, heal, delay, ... forever; every choice from ``rng``, every wait from ``ctx.time``.

    Faults are drawn from a shuffled bag: every requested fault runs once, in a seeded random order,
    before any runs again, so a short campaign with ``kill,pause,partition`` exercises all three.
    """

    def __init__(self, faults: Sequence[Fault], rng: random.Random, interval: float) -> None:
        if not faults:
            raise ValueError("a schedule needs at least one fault")
        self.faults = list(faults)
        self.rng = rng
        self.interval_ns = int(interval * 1e9)
        self.due: int | None = None
        self.busy = False
        self.heal: Op | None = None
        self._bag: list[Fault] = []

    def _delay(self) -> int:
        return int(self.interval_ns * self.rng.uniform(0.5, 1.5))

    def op(self, ctx: Any) -> Op | Any:
        if self.busy or NEMESIS not in ctx.free_processes:
            return PENDING
        if self.due is None:
            self.due = ctx.time + self._delay()
        if ctx.time < self.due:
            return PENDING
        if self.heal is not None:
            next_op, self.heal = self.heal, None
        else:
            if not self._bag:
                self._bag = list(self.faults)
                self.rng.shuffle(self._bag)
            fault = self._bag.pop()
            # The fault's name rides on the op (``"fault"`` in the history), so evidence can tell
            # kill from kill-leader: both start with the same f.
            named = {"fault": fault.name}
            next_op = replace(op(fault.start, self.rng.choice(fault.values)), extra=named)
            self.heal = replace(op(fault.stop), extra=named)
        self.busy = True
        return replace(next_op, time=ctx.time)

    def update(self, ctx: Any, event: Op) -> None:
        if event.process == NEMESIS and event.type != OpType.INVOKE:
            self.busy = False
            self.due = ctx.time + self._delay()


class Sequential:
    """The given ops, one after another, each once the previous one has completed."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = list(ops)
        self.busy = False

    def op(self, ctx: Any) -> Op | Any | None:
        if not self.ops:
            return None if not self.busy else PENDING
        if self.busy or NEMESIS not in ctx.free_processes:
            return PENDING
        self.busy = True
        return replace(self.ops.pop(0), time=ctx.time)

    def update(self, ctx: Any, event: Op) -> None:
        if event.process == NEMESIS and event.type != OpType.INVOKE:
            self.busy = False


def healing(faults: Sequence[Fault]) -> Sequential:
    stops = {f.stop for f in faults}
    return Sequential([op(f) for f in HEAL_ORDER if f in stops])


def perf(faults: Sequence[Fault]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": f.name, "start": [f.start], "stop": [f.stop], "color": f.color} for f in faults)
