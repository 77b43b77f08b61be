"""State-timed faults: kill or cut off the leader when the cluster is inside a risky window.

The thin shell around nemesis/windows.py: a ``timed-kill`` or ``timed-partition`` op names a
window (``{"when": "uncommitted"}``); ``TimedNemesis`` polls the system's status (a DB with an
``async status()``, as ``DtkvDB`` has: each node's ``NodeMachine.status``) every ``poll`` seconds,
feeds each snapshot to a ``Watch``, and once the window opens hands the real fault to the
process or partition component (``kill`` of the leader the snapshot named, ``start-partition
leader``). The heal is the usual one (``start``, ``stop-partition``), so the final phase heals
timed faults like any other. If the window does not open within ``max_wait`` seconds the fault
is not applied and the completion says so: a fault is never assumed to have happened.

The completion adds ``when``, ``waited`` (seconds until the window opened) and ``polls``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from raftlab.nemesis.process import failure
from raftlab.nemesis.windows import WINDOWS, Watch

from raftlab.history import Op
from raftlab.protocols import Lab, Nemesis

INNER = {"timed-kill": "kill", "timed-partition": "start-partition"}


class TimedNemesis:
    """``timed-kill`` / ``timed-partition``: wait for a window in the status, then fault."""

    def __init__(self, db: object, process: Nemesis, partition: Nemesis, *, poll: float = 0.05,
                 max_wait: float = 10.0) -> None:
        self.db = db
        self.inner = {"timed-kill": process, "timed-partition": partition}
        self.poll = poll
        self.max_wait = max_wait

    def fs(self) -> frozenset[str]:
        return frozenset(INNER)

    async def setup(self, lab: Lab) -> None:  # the process and partition components are set up on their own
        return None

    async def teardown(self) -> None:
        return None

    async def invoke(self, op: Op) -> Op:
        status = getattr(self.db, "status", None)
        when = op.value.get("when") if isinstance(op.value, dict) else None
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
                value: Any = [leader] if op.f == "timed-kill" else "leader"
                done = await self.inner[op.f].invoke(replace(op, f=INNER[op.f], value=value))
                extra = {"when": when, "waited": round(loop.time() - start, 3), "polls": polls}
                return replace(done, f=op.f, value={**(done.value or {}), **extra})
            await asyncio.sleep(self.poll)
        return failure(op, f"window {when} not seen in {self.max_wait:g}s ({polls} status polls)")
