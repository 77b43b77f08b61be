"""State-timed faults: kill or cut off the leader when the cluster is inside a risky window.

The thin shell around nemesis/windows.py: a ``timed-kill`` or ``timed-partition`` op names a
window (``{"when": "uncommitted"}``); ``TimedNemesis`` polls the system's status (a DB with an
``async status()``, as ``DtkvDB`` has: each node's ``NodeMachine.status``) every ``poll`` seconds,
feeds each snapshot to a ``Watch``, and once the window opens hands the real fault to the
process or partition component (``kill`` of the leader the snapshot named, ``start-partition``
of the op's shape, ``leader`` or ``leader-minority``). The heal is the usual one (``start``, ``stop-partition``), so the final phase heals
timed faults like any other. If the window does not open within ``max_wait`` seconds the fault
is not applied and the completion says so: a fault is never assumed to have happened.

The completion adds ``when``, ``waited`` (seconds until the window opened) and ``polls``.
The family uses the campaign's process and partition components when it has them (one
component per f); otherwise it owns private ones for the inner fault and its heal.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from raftlab.nemesis.package import BuildContext, Family, Fault
from raftlab.nemesis.partition import PartitionNemesis
from raftlab.nemesis.process import ProcessNemesis, failure
from raftlab.nemesis.windows import WINDOWS, Watch

from raftlab.history import Op
from raftlab.protocols import Lab, Nemesis

INNER = {"timed-kill": "kill", "timed-partition": "start-partition"}


class TimedNemesis:
    """``timed-kill`` / ``timed-partition``: wait for a window in the status, then fault."""

    def __init__(self, db: object, inner: dict[str, Nemesis], *, owned: tuple[Nemesis, ...] = (),
                 poll: float = 0.05, max_wait: float = 10.0) -> None:
        self.db = db
        self.inner = inner  # timed f -> the component doing the real fault
        self.owned = owned  # inner components no other family built: this one sets them up and heals through them
        self.poll = poll
        self.max_wait = max_wait

    def fs(self) -> frozenset[str]:
        return frozenset(self.inner).union(*(c.fs() for c in self.owned))

    async def setup(self, lab: Lab) -> None:
        for c in self.owned:
            await c.setup(lab)

    async def teardown(self) -> None:
        for c in self.owned:
            await c.teardown()

    async def invoke(self, op: Op) -> Op:
        status = getattr(self.db, "status", None)
        when = op.value.get("when") if isinstance(op.value, dict) else None
        if op.f not in INNER:  # the heal of a fault an owned component did
            return await next(c for c in self.owned if op.f in c.fs()).invoke(op)
        if status is None:
            return failure(op, "the DB offers no status() to time faults by")
        if when not in WINDOWS:
            return failure(op, f"unknown window {when!r} (known: {', '.join(WINDOWS)})")
        watch = Watch(when)
        loop = asyncio.get_running_loop()
        start = loop.time()
        polls = 0
        while loop.time() - start < self.max_wait:
            polls += 1
            leader = watch.observe(await status(timeout=max(0.2, self.poll * 4)), loop.time())
            if leader is not None:
                value: Any = [leader] if op.f == "timed-kill" else op.value.get("shape", "leader")
                done = await self.inner[op.f].invoke(replace(op, f=INNER[op.f], value=value))
                extra = {"when": when, "waited": round(loop.time() - start, 3), "polls": polls}
                return replace(done, f=op.f, value={**(done.value or {}), **extra})
            await asyncio.sleep(self.poll)
        return failure(op, f"window {when} not seen in {self.max_wait:g}s ({polls} status polls)")


def _build(ctx: BuildContext) -> TimedNemesis:
    wanted = {FAULT_F[name] for name in ctx.names if name in FAULT_F}
    inner: dict[str, Nemesis] = {}
    owned: list[Nemesis] = []
    for f, family, make in (("timed-kill", "process", ProcessNemesis), ("timed-partition", "partition", PartitionNemesis)):
        if f in wanted:
            component = ctx.built.get(family)
            if component is None:
                component = make(ctx.db, ctx.rng)
                owned.append(component)
            inner[f] = component
    return TimedNemesis(ctx.db, inner, owned=tuple(owned))


_KILL, _CUT = "#E9A4A0", "#E9DCA0"
FAMILY = Family(
    name="timed",
    needs="a DB with an async status() (each node's role, term, log and commit: DtkvDB has it), and Killable or the lab's Net",
    heal_ranks={"start": 70, "stop-partition": 40},
    build=_build,
    uses=("process", "partition"),
    faults=(
        Fault(name="kill-leader-elected", start="timed-kill", stop="start", values=({"when": "just-elected"},),
              color=_KILL, doc="SIGKILL a leader within half a second of its election"),
        Fault(name="kill-leader-uncommitted", start="timed-kill", stop="start", values=({"when": "uncommitted"},),
              color=_KILL, doc="SIGKILL the leader while it holds uncommitted entries"),
        Fault(name="kill-leader-lagging", start="timed-kill", stop="start", values=({"when": "lagging"},),
              color=_KILL, doc="SIGKILL the leader while a follower lags 20+ entries behind"),
        # leader-minority (the leader and one follower of five) lets a commit rule one ack short
        # commit, and a minority elect, on the cut-off side: isolating the leader alone cannot
        Fault(name="partition-leader-uncommitted", start="timed-partition", stop="stop-partition",
              values=({"when": "uncommitted", "shape": "leader"}, {"when": "uncommitted", "shape": "leader-minority"}),
              color=_CUT, doc="isolate the leader, or put it in a minority, while it holds uncommitted entries"),
    ),
)
FAULT_F = {f.name: f.start for f in FAMILY.faults}
