"""Freezing a cgroup as a hypervisor pauses a VM, and deciding when that pause is in effect.

Theory of operation. A cgroup freezer (v1 ``freezer.state``, or v2 ``cgroup.freeze``) stops each
task at its next freeze point: at once for a task sleeping interruptibly or running user code,
only on its way out of the kernel for a task in an uninterruptible wait. The second kind is
common in a lab: a node blocked in a FUSE request while ``disk-pause`` holds its disk, or while
labfs itself (a process of the same host) was frozen first, sits in ``request_wait_answer`` in
state D, and the cgroup stays ``FREEZING`` until the request is answered. Such a task cannot run
one user instruction before it freezes, so the host is paused exactly as a VM is paused during a
hung disk. That is why the decision is not "did the cgroup reach FROZEN" but "can any task of
it still run user code" (:func:`still_running`): a frozen task shows as D (v1) or sleeps in
``do_freezer_trap`` (v2); stopped (T, t) and dead (Z, X) tasks cannot run either. A task still
running or sleeping interruptibly after the grace period means the freeze really failed: the
freeze is undone, because a half-frozen host with the fault recorded as not applied would never
be thawed by a healer.

The pure decision takes thread states as values, so a test drives it without a kernel; the shell
reads them from ``/proc/TID/stat`` and ``/proc/TID/wchan``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from raftlab.lab import LabError

log = logging.getLogger(__name__)

# States (the third field of /proc/TID/stat) in which a task runs no user code until the kernel
# lets it go: D (uninterruptible, also how a v1-frozen task shows), T/t (stopped, traced), Z/X (dead).
HELD = frozenset("DTtZX")
V2_TRAP = "do_freezer_trap"  # where a task frozen by cgroup v2 sleeps
GRACE_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Thread:
    """One task of the cgroup as /proc shows it."""

    tid: int
    comm: str
    state: str  # R, S, D, T, ...
    wchan: str  # the kernel function it sleeps in, "" when unknown


def still_running(threads: Iterable[Thread]) -> list[Thread]:
    """The tasks that could still run user code: a pause is in effect when this is empty."""
    return [t for t in threads if t.state not in HELD and t.wchan != V2_TRAP]


@dataclass(frozen=True, slots=True)
class Freezer:
    """The freezer of one cgroup, present in one or more hierarchies (``dirs``)."""

    dirs: tuple[Path, ...]
    label: str  # names the host in errors

    def control(self) -> tuple[Path, str, str]:
        """(control file, freeze value, thaw value): the v1 freezer when mounted, else cgroup v2."""
        for d in self.dirs:
            if (d / "freezer.state").exists():
                return d / "freezer.state", "FROZEN", "THAWED"
        for d in self.dirs:
            if (d / "cgroup.freeze").exists():
                return d / "cgroup.freeze", "1", "0"
        raise LabError(f"{self.label}: no cgroup freezer (neither v1 freezer nor cgroup v2) in "
                       f"{', '.join(map(str, self.dirs))}")

    def frozen(self) -> bool:
        """Whether a freeze was asked for and not undone (FREEZING counts: the pause is held)."""
        try:
            control, _, thawed = self.control()
        except LabError:
            return False
        return control.read_text().strip() != thawed

    def threads(self) -> list[Thread]:
        """Every task of the cgroup and its children, in the hierarchy that holds the freezer."""
        control, _, _ = self.control()
        listing = "tasks" if control.name == "freezer.state" else "cgroup.threads"
        tids = {int(tid) for f in control.parent.rglob(listing) for tid in f.read_text().split()}
        return [t for t in map(_thread, sorted(tids)) if t is not None]

    async def freeze(self) -> str:
        """Freeze and return once no task can run user code; what the pause held, for the record.
        Raises LabError (after thawing again) when some task still runs after the grace period."""
        control, value, thaw = self.control()
        control.write_text(value)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRACE_S
        while loop.time() < deadline:
            if self.complete():
                return "frozen"
            await asyncio.sleep(0.01)
        threads = self.threads()
        running = still_running(threads)
        if not running:
            waiting = sum(t.state == "D" and t.wchan not in ("", "__refrigerator") for t in threads)
            note = (f"frozen; {waiting} task(s) held in a kernel wait freeze when it returns "
                    f"({control.read_text().strip()})")
            log.info("%s: %s", self.label, note)
            return note
        control.write_text(thaw)
        named = ", ".join(f"{t.comm}[{t.tid}] {t.state} {t.wchan or '?'}" for t in running[:5])
        raise LabError(f"{self.label}: did not freeze within {GRACE_S:g} s; still running: {named}; thawed again")

    async def thaw(self) -> None:
        try:
            control, _, value = self.control()
        except LabError:
            return
        control.write_text(value)

    def complete(self) -> bool:
        """Whether every task is frozen. v1 reports the state in the control file itself; v2's
        ``cgroup.freeze`` echoes the request at once, and only ``cgroup.events`` says it."""
        control, value, _ = self.control()
        if control.name == "freezer.state":
            return control.read_text().strip() == value
        return "frozen 1" in (control.parent / "cgroup.events").read_text()


def _thread(tid: int) -> Thread | None:
    """A task's state from /proc, or None when it exited meanwhile."""
    try:
        stat = Path(f"/proc/{tid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    state = stat[stat.rindex(")") + 2:].split()[0]
    try:
        wchan = Path(f"/proc/{tid}/wchan").read_text().strip()
    except OSError:
        wchan = ""
    return Thread(tid=tid, comm=comm, state=state, wchan="" if wchan == "0" else wchan)
