"""Faults as families, and the package a campaign runs, built from the generator combinators.

A **fault family** is one module under ``nemesis/`` that defines ``FAMILY = Family(...)``: the
faults it offers (``Fault``: the f that starts it, the f that heals it, the targets it may
draw), the heal rank of each healing f, what it needs (said in words for the docs and the
errors), and ``build``, which makes the family's nemesis component for the chosen faults.
``raftlab.nemesis`` finds the families by importing every module of the package, so adding a
fault touches nothing else (docs/campaigns.md has the recipe).

``package()`` makes the ``Package`` the runner consumes (after jepsen.nemesis.combined):

* ``nemesis`` dispatches each op to the component whose ``fs()`` holds its ``f``;
* ``generator`` is one **lane** per ``Fault.lane``: each lane draws its faults from a shuffled bag
  (every fault of the lane once, in a seeded order, before any again) and runs, with the
  generator combinators, ``phases(wait, start, wait, heal)`` for each draw. Faults in one lane never
  overlap; lanes run at once (``any_of``), so a skewed clock (lane ``clock``) stays skewed while a
  partition comes and goes, as Jepsen's etcd test combines them. The waits are
  ``Fault.trigger`` (default: uniform in [0.5, 1.5] x interval), the place to plug a state-timed
  trigger in; every draw uses the package's own rng (the ``nemesis`` stream), never the clients';
* ``healer()`` is a fresh generator that heals every chosen fault in rank order (lowest first:
  what would block other heals goes first, e.g. a paused disk before a kill can land);
* ``perf`` tells the report which fs start and stop each fault, for shading;
* ``observer(when)`` runs the families' observations (``Family.observe``: ops that record what
  the system looks like and break nothing, e.g. the member family's ``membership``), which the
  runner asks for as the run starts (``start``) and once the final reads are done (``end``).

``validated(nemesis)`` checks the Nemesis contract on every call; ``noop()`` does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftlab.nemesis.targets import failure

from raftlab import generator as gen
from raftlab.history import NEMESIS, Op, OpType
from raftlab.protocols import Generator, Lab, Nemesis


class NemesisContractError(AssertionError):
    """A nemesis broke the protocol (wrong process, type or f); names the op."""


Trigger = Callable[[random.Random, float], gen.GenLike]
"""When a fault (or its heal) comes: a generator that is exhausted when it is time (``wait``)."""


def wait(rng: random.Random, interval: float) -> gen.GenLike:
    """The default trigger: a pause uniform in [0.5, 1.5] x interval, drawn from the package rng."""
    return gen.sleep(interval * rng.uniform(0.5, 1.5))


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A fault a campaign can name: the f that starts it, the f that heals it, what it targets."""

    name: str
    start: str
    stop: str
    values: tuple[Any, ...]
    color: str
    doc: str
    lane: str = "main"
    trigger: Trigger = wait


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildContext:
    """What a family's ``build`` gets: the DB, the package rng, the chosen names, the components built
    so far, and the campaign's ``--nemesis-opt`` options (keys with underscores)."""

    db: object
    rng: random.Random
    names: frozenset[str]
    built: Mapping[str, Nemesis]
    opts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """One module's faults. Invariant: every fault's ``stop`` has a rank in ``heal_ranks``."""

    name: str
    faults: tuple[Fault, ...]
    heal_ranks: Mapping[str, int]
    needs: str
    build: Callable[[BuildContext], Nemesis]
    uses: tuple[str, ...] = ()  # families whose components ``build`` reads from ``built``
    observe: tuple[str, ...] = ()  # fs that record state, run as the run starts and at its end (no fault)

    def __post_init__(self) -> None:
        missing = [f.stop for f in self.faults if f.stop not in self.heal_ranks]
        if missing:
            raise ValueError(f"family {self.name!r}: no heal rank for {', '.join(missing)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    nemesis: Nemesis
    generator: Generator
    heal_fs: tuple[str, ...]
    perf: tuple[dict[str, Any], ...] = field(default=())
    observe_fs: tuple[str, ...] = ()

    def healer(self) -> Generator:
        """A fresh generator that heals everything, one op after another, in rank order."""
        return healing(self.heal_fs)

    def observer(self, when: str) -> Generator:
        """The families' observations (``Family.observe``), one after another, with value ``when``."""
        return gen.phases(*({"f": f, "value": when, "process": NEMESIS} for f in self.observe_fs))


def healing(heal_fs: Sequence[str]) -> Generator:
    return gen.phases(*({"f": f, "process": NEMESIS} for f in heal_fs))


def number_options(opts: Mapping[str, Any], defaults: Mapping[str, float], *,
                   may_be_zero: Sequence[str] = ()) -> dict[str, float]:
    """A family's numeric ``--nemesis-opt`` values over its defaults; every one must be positive
    (or >= 0 when named in ``may_be_zero``); a bad value is named as the flag spells it."""
    out = dict(defaults)
    for key in defaults:
        if key not in opts:
            continue
        flag = key.replace("_", "-")
        try:
            out[key] = float(opts[key])
        except (TypeError, ValueError):
            raise ValueError(f"nemesis option {flag} must be a number, not {opts[key]!r}") from None
        if out[key] < 0 or (out[key] == 0 and key not in may_be_zero):
            raise ValueError(f"nemesis option {flag} must be positive, not {opts[key]!r}")
    return out


def heal_order(faults: Sequence[Fault], families: Sequence[Family]) -> tuple[str, ...]:
    ranks = {f: r for fam in families for f, r in fam.heal_ranks.items()}
    return tuple(sorted({f.stop for f in faults}, key=lambda f: (ranks[f], f)))


def lane(faults: Sequence[Fault], rng: random.Random, interval: float) -> Generator:
    """Fault, heal, fault, heal, ... forever, from a shuffled bag; waits from each fault's trigger."""
    if not faults:
        raise ValueError("a lane needs at least one fault")
    bag: list[Fault] = []

    def cycle() -> gen.GenLike:
        if not bag:
            bag.extend(faults)
            rng.shuffle(bag)
        fault = bag.pop()
        # The fault's name rides on the op (``"fault"`` in the history), so evidence can tell kill
        # from kill-leader: both start with the same f.
        start = {"f": fault.start, "value": rng.choice(fault.values), "process": NEMESIS, "fault": fault.name}
        stop = {"f": fault.stop, "process": NEMESIS, "fault": fault.name}
        return gen.phases(fault.trigger(rng, interval), start, fault.trigger(rng, interval), stop)

    return gen.repeat(cycle)


def schedule(faults: Sequence[Fault], rng: random.Random, interval: float) -> Generator:
    lanes: dict[str, list[Fault]] = {}
    for f in faults:
        lanes.setdefault(f.lane, []).append(f)
    return gen.any_of(*(lane(fs, rng, interval) for fs in lanes.values()))


def perf(faults: Sequence[Fault]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": f.name, "start": [f.start], "stop": [f.stop], "color": f.color} for f in faults)


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
