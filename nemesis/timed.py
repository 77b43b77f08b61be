"""State-timed faults: kill or cut off the leader when the cluster is inside a risky window.

The thin shell around nemesis/windows.py: a ``timed-kill`` or ``timed-partition`` op names a
window (``{"when": "uncommitted"}``); ``TimedNemesis`` polls the system's status (a DB with an
``async status()``, as ``DtkvDB`` has: each node's ``NodeMachine.status``) every ``poll`` seconds,
feeds each snapshot to a ``Watch``, and once the window opens hands the real fault to the
process or partition component (``kill`` of the leader the snapshot named, ``start-partition``
of the op's shape, ``leader`` or ``leader-minority``). The heal is the usual one (``start``,
``stop-partition``), so the final phase heals timed faults like any other.

``stale-candidate`` (``timed-stale``) is timed by the lag it makes: it isolates a follower
(shape ``follower``) for at least ``hold`` seconds and until it has missed ``lag`` committed
entries (``windows.stale_leader``; at most ``stale_wait`` seconds, at least one entry or the
fault is not applied), then SIGKILLs the leader, lets the candidate rejoin all but the dead
leader until a new leader is seen, and heals. Its completion names ``candidate``, ``lag``,
``leader`` and ``elected``; ``start`` heals the leader. If the window does not open within ``max_wait`` seconds the fault
is not applied and the completion says so: a fault is never assumed to have happened.

The completion adds ``when``, ``waited`` (seconds until the window opened) and ``polls``.
The family uses the campaign's process and partition components when it has them (one
component per family); otherwise it owns private ones for the inner faults and their heals.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from raftlab.nemesis.package import BuildContext, Family, Fault
from raftlab.nemesis.partition import PartitionNemesis
from raftlab.nemesis.process import ProcessNemesis, failure
from raftlab.nemesis.windows import LAG, WINDOWS, Watch, lag_of, leader_of, stale_leader

from raftlab.history import Op
from raftlab.protocols import Lab, Nemesis

INNER = {"timed-kill": "kill", "timed-partition": "start-partition"}
USES = {"timed-kill": ("process",), "timed-partition": ("partition",), "timed-stale": ("process", "partition")}
# The stale candidate stays cut off at least HOLD seconds, long enough for its election timer to
# run out (it then stands the moment the voters' leases let it, racing the up-to-date voters'
# own timers), and at most STALE_WAIT seconds waiting to miss LAG committed entries.
HOLD = 1.5
STALE_WAIT = 4.0


class TimedNemesis:
    """``timed-kill`` / ``timed-partition``: wait for a window in the status, then fault;
    ``timed-stale``: make a stale candidate, then take its leader away."""

    def __init__(self, db: object, timed: frozenset[str], inner: dict[str, Nemesis], *, owned: tuple[Nemesis, ...] = (),
                 poll: float = 0.05, max_wait: float = 10.0, hold: float = HOLD, stale_wait: float = STALE_WAIT) -> None:
        self.db = db
        self.timed = timed  # the timed fs this campaign asked for (each one's USES are in inner)
        self.inner = inner  # component family (process, partition) -> the component doing its faults
        self.owned = owned  # inner components no other family built: this one sets them up and heals through them
        self.poll = poll
        self.max_wait = max_wait
        self.hold = hold
        self.stale_wait = stale_wait

    def fs(self) -> frozenset[str]:
        return self.timed.union(*(c.fs() for c in self.owned))

    async def setup(self, lab: Lab) -> None:
        for c in self.owned:
            await c.setup(lab)

    async def teardown(self) -> None:
        for c in self.owned:
            await c.teardown()

    async def invoke(self, op: Op) -> Op:
        status = getattr(self.db, "status", None)
        if op.f not in self.timed:  # the heal of a fault an owned component did
            return await next(c for c in self.owned if op.f in c.fs()).invoke(op)
        if status is None:
            return failure(op, "the DB offers no status() to time faults by")
        if op.f == "timed-stale":
            return await self._stale(op, status)
        when = op.value.get("when") if isinstance(op.value, dict) else None
        if when not in WINDOWS:
            return failure(op, f"unknown window {when!r} (known: {', '.join(WINDOWS)})")
        watch = Watch(when)
        loop = asyncio.get_running_loop()
        start = loop.time()
        polls = 0
        component = self.inner[USES[op.f][0]]
        while loop.time() - start < self.max_wait:
            polls += 1
            leader = watch.observe(await status(timeout=max(0.2, self.poll * 4)), loop.time())
            if leader is not None:
                value: Any = [leader] if op.f == "timed-kill" else op.value.get("shape", "leader")
                done = await component.invoke(replace(op, f=INNER[op.f], value=value))
                extra = {"when": when, "waited": round(loop.time() - start, 3), "polls": polls}
                return replace(done, f=op.f, value={**(done.value or {}), **extra})
            await asyncio.sleep(self.poll)
        return failure(op, f"window {when} not seen in {self.max_wait:g}s ({polls} status polls)")

    async def _stale(self, op: Op, status: Any) -> Op:
        """Cut one follower off until its election timer ran out and it missed ``lag`` committed
        entries, then SIGKILL the leader and heal, in that order (healed first, the leader would
        catch it up within a heartbeat).

        Why: the follower's election timer ran out long ago, so it stands as soon as the voters'
        leases let it, with a log that lacks committed entries. Only the election restriction
        (the up-to-date check, §5.4.1) keeps it from winning and truncating them away; no random
        kill or partition lines this up. The killed leader is healed by ``start`` as usual."""
        process, partition = self.inner["process"], self.inner["partition"]
        want = int(op.value.get("lag", LAG)) if isinstance(op.value, dict) else LAG
        loop = asyncio.get_running_loop()
        start = loop.time()
        before = await status(timeout=0.5)
        cut = await partition.invoke(replace(op, f="start-partition", value="follower"))
        if cut.error:
            return replace(cut, f=op.f)
        candidate = next(h for h, drops in cut.value["grudge"].items() if len(drops) == len(cut.value["grudge"]) - 1)
        last = int(before.get(candidate, {}).get("applied", 0)) if "error" not in before.get(candidate, {}) else 0
        lag, leader, polls = None, None, 0
        while loop.time() - start < self.stale_wait:
            polls += 1
            snapshot = await status(timeout=max(0.2, self.poll * 4))
            lag = lag_of(snapshot, candidate, last)
            ready = stale_leader(snapshot, candidate, last, want)
            leader = ready or stale_leader(snapshot, candidate, last, 1)  # when time runs out, one missed entry does
            if ready is not None and loop.time() - start >= self.hold:
                break
            await asyncio.sleep(self.poll)
        extra = {"candidate": candidate, "lag": lag, "waited": round(loop.time() - start, 3), "polls": polls}
        if leader is None:  # past stale_wait with no leader, or one the candidate lags by nothing
            healed = await partition.invoke(replace(op, f="stop-partition", value=None))
            why = "no leader" if lag is None else f"{candidate} missed no committed entry"
            reason = f"no stale candidate in {self.stale_wait:g}s ({why})" + (f"; {healed.error}" if healed.error else "")
            return replace(failure(op, reason), value={"applied": False, **extra})
        killed = await process.invoke(replace(op, f="kill", value=[leader]))
        # The candidate rejoins the others, but not the dead leader: the heartbeats queued on that
        # link while it was cut (TCP delivers them on heal, raftlab/lab/proxy.py) would make it a
        # follower again and restart its election timer, and it would stand no sooner than anyone.
        rejoined = await partition.invoke(replace(op, f="start-partition", value={"isolate": leader}))
        elected = None
        while elected is None and loop.time() - start < self.stale_wait + self.max_wait:
            found = leader_of(await status(timeout=max(0.2, self.poll * 4)))
            elected = found[0] if found is not None and found[0] != leader else None
            if elected is None:
                await asyncio.sleep(self.poll)
        healed = await partition.invoke(replace(op, f="stop-partition", value=None))
        value = {**(killed.value or {}), **extra, "leader": leader, "elected": elected,
                 "healed": rejoined.error is None and healed.error is None}
        errors = "; ".join(e for e in (killed.error, rejoined.error, healed.error) if e)
        return replace(killed, f=op.f, value=value, error=errors or None)


def _build(ctx: BuildContext) -> TimedNemesis:
    wanted = {FAULT_F[name] for name in ctx.names if name in FAULT_F}
    inner: dict[str, Nemesis] = {}
    owned: list[Nemesis] = []
    for family, make in (("process", ProcessNemesis), ("partition", PartitionNemesis)):
        if any(family in USES[f] for f in wanted):
            component = ctx.built.get(family)
            if component is None:
                component = make(ctx.db, ctx.rng)
                owned.append(component)
            inner[family] = component
    return TimedNemesis(ctx.db, frozenset(wanted), inner, owned=tuple(owned))


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
        Fault(name="stale-candidate", start="timed-stale", stop="start", values=({"lag": LAG},), color=_KILL,
              doc="cut a follower off until it misses committed entries, then SIGKILL the leader and heal"),
        Fault(name="partition-leader-uncommitted", start="timed-partition", stop="stop-partition",
              values=({"when": "uncommitted", "shape": "leader"}, {"when": "uncommitted", "shape": "leader-minority"}),
              color=_CUT, doc="isolate the leader, or put it in a minority, while it holds uncommitted entries"),
    ),
)
FAULT_F = {f.name: f.start for f in FAMILY.faults}
