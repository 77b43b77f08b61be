"""The membership fault (`--nemesis member`): shrink the cluster (a member, the leader, or a
member that is then wiped) and grow it back, as Jepsen's etcd ``member`` nemesis does.

Theory of operation. ``shrink`` asks the DB (``Reconfigurable``) for its voters, picks one by
the op's value (``one``: seeded choice, ``leader``: the current leader, ``wipe``: a seeded
choice that is then killed, emptied and restarted as a rejoining member that must be re-added)
and changes the membership to the others in one joint step, returning once the change is
complete. It never shrinks below two voters (the op says "not applied"). ``grow`` (the healer)
re-adds every removed host in one joint step, so the final phase of a campaign ends with the
full membership before the final reads. Every completion names the membership it left
(``members``) and, as the DB shows it right after (``membership``: voters, learners, the old
voters while joint, the leader; ``ShowsMembership``, else the voters alone), the configuration
it reached. ``membership`` is an observation, not a fault: the family's ``observe`` runs it as
the run starts (value ``start``) and once the final reads are done (``end``), so the report's
membership timeline (raftlab/report_members.py) has both ends from the history alone. A fault
that did not take effect (no leader, no quorum for the change) carries an ``error`` and changes
nothing the nemesis believes. ``grow`` heals last (rank 90): a member re-added before its process
is back would make the final phase wait on a node that cannot answer; and since it runs right
after a kill or a partition heals, it asks for the members again until a leader answers (up to
GROW_WAIT), where a shrink that finds no leader simply does not apply.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from raftlab.nemesis.package import Family, Fault
from raftlab.nemesis.targets import completion, current_leader, failure

from raftlab.history import Op
from raftlab.protocols import Host, Lab, Reconfigurable, ShowsMembership

SHRINK_VALUES = ("one", "leader", "wipe")
MIN_VOTERS = 2  # shrink stops here: a campaign that shrinks to one voter tests little
OBSERVE_TIMEOUT = 5.0  # a leader removed a moment ago leaves nobody to ask until the next election
GROW_WAIT = 15.0  # grow heals: after a kill or partition heals, it waits this long for a leader to ask
T = TypeVar("T")


async def patiently(call: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``call()`` again every 0.2 s while it raises (no leader answers yet), for up to ``timeout``
    seconds; then its last error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(0.2)


async def _shown(db: Reconfigurable) -> dict[str, Any]:
    if isinstance(db, ShowsMembership):
        m = await db.membership()
        return {"voters": sorted(m.get("voters", [])), "learners": sorted(m.get("learners", [])),
                "outgoing": sorted(m.get("outgoing", [])), "leader": m.get("leader")}
    return {"voters": sorted(await db.members())}


async def observe(db: Reconfigurable) -> dict[str, Any]:
    """The membership as the DB shows it now (``ShowsMembership``, else the voters alone), asked
    again for up to OBSERVE_TIMEOUT while no leader answers or the leader is a removed voter
    still handing over (the last answer then stands); ``{"error": ...}`` if none answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OBSERVE_TIMEOUT
    seen: dict[str, Any] = {}
    while True:
        try:
            seen = await _shown(db)
        except Exception as e:  # recorded as unknown, never guessed
            seen = seen or {"error": f"{type(e).__name__}: {e}"}
        settled = "error" not in seen and ("leader" not in seen or seen["leader"] in seen["voters"])
        if settled or loop.time() >= deadline:
            return seen
        await asyncio.sleep(0.2)


class MemberNemesis:
    """shrink / grow through the DB's ``Reconfigurable`` capability."""

    def __init__(self, db: object, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        self.hosts: list[Host] = []

    def fs(self) -> frozenset[str]:
        return frozenset({"shrink", "grow", "membership"})

    async def setup(self, lab: Lab) -> None:
        self.hosts = list(lab.hosts)

    async def invoke(self, op: Op) -> Op:
        db = self.db
        if not isinstance(db, Reconfigurable):
            return failure(op, "the DB cannot change its membership (it is not Reconfigurable)")
        try:
            if op.f == "membership":
                return completion(op, {"when": op.value, "membership": await observe(db)})
            if op.f == "grow":  # a healer: it waits for the leader a healed kill or partition is electing
                return await self._grow(op, db, await patiently(db.members, GROW_WAIT))
            return await self._shrink(op, db, await db.members())
        except Exception as e:  # recorded in the history, never assumed to have worked
            return failure(op, f"{e.__class__.__name__}: {e}")

    async def _shrink(self, op: Op, db: Reconfigurable, members: list[Host]) -> Op:
        if op.value not in SHRINK_VALUES:
            return failure(op, f"unknown shrink target {op.value!r} (known: {', '.join(SHRINK_VALUES)})")
        if len(members) <= MIN_VOTERS:
            return failure(op, f"not applied: only {len(members)} voters left ({', '.join(members)})")
        if op.value == "leader":
            target = await current_leader(db)
            if target is None or target not in members:
                return failure(op, "not applied: no leader known")
        else:
            target = self.rng.choice(sorted(members))
        rest = [h for h in members if h != target]
        await db.set_members(rest)
        value: dict[str, Any] = {"removed": target, "members": rest}
        if op.value == "wipe":
            await db.wipe(target)
            value["wiped"] = target
        return completion(op, {**value, "membership": await observe(db)})

    async def _grow(self, op: Op, db: Reconfigurable, members: list[Host]) -> Op:
        missing = [h for h in self.hosts if h not in members]
        if not missing:
            return completion(op, {"added": [], "members": members, "membership": await observe(db)})
        await db.set_members(list(self.hosts))
        return completion(op, {"added": missing, "members": list(self.hosts), "membership": await observe(db)})

    async def teardown(self) -> None:
        """Nothing to undo: the final phase's ``grow`` restores the membership."""


FAMILY = Family(
    name="member",
    needs="a DB that is Reconfigurable (members, set_members, wipe); shrink leader also HasPrimaries",
    heal_ranks={"grow": 90},
    observe=("membership",),
    build=lambda ctx: MemberNemesis(ctx.db, ctx.rng),
    faults=(
        Fault(name="member", start="shrink", stop="grow", values=SHRINK_VALUES, color="#7CC3A8",
              doc="remove a member (the leader too; or wipe it, to be re-added empty), then restore the full membership"),
    ),
)
