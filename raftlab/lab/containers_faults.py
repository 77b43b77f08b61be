"""Faults only the containers lab (and a hypervisor) can do, as a nemesis component.

* ``host-pause`` / ``host-resume``: freeze every process of the target hosts at once through
  their cgroup freezer, driven from the controller, like pausing a VM (the node, sshd, labfs and
  the kernel's TCP stack answers aside, nothing on the host runs; SSH gets no banner);
* ``power-cut`` / ``power-on``: SIGKILL each target host's PID 1, so all of its processes die
  at the same instant (labfs ``--lazy`` pages not fsynced are lost with them), then boot the host
  again from its disk (overlay), mount the disk-fault layer (labfs) again when the campaign has
one, and, when the DB is ``Killable``, start its node again.

Declared as a fault family in ``nemesis/host.py`` (``host-pause``, ``power-cut``); targets are
those of the process faults (``one``, ``leader``, ``minority``, ``majority``, ``all``).
Heal order: ``host-resume`` must run before anything else (a frozen host blocks every other
heal on it), ``power-on`` before ``start``. A host that could not be hit is listed under
``failed`` with the reason, never assumed hit.
"""

from __future__ import annotations

import random

from raftlab.history import Op
from raftlab.lab import LabError
from raftlab.lab.containers import ContainersLab
from raftlab.nemesis.disk import DiskNemesis
from raftlab.nemesis.targets import TargetError, choose, completion, failure, on_each
from raftlab.protocols import Host, Killable, Lab


class HostNemesis:
    """host-pause/host-resume and power-cut/power-on on a ``ContainersLab``."""

    def __init__(self, db: object, rng: random.Random, *, disk: DiskNemesis | None = None) -> None:
        self.db = db
        self.rng = rng
        self.disk = disk
        self.lab: ContainersLab | None = None
        self.frozen: set[Host] = set()
        self.off: set[Host] = set()

    def fs(self) -> frozenset[str]:
        return frozenset({"host-pause", "host-resume", "power-cut", "power-on"})

    async def setup(self, lab: Lab) -> None:
        if not isinstance(lab, ContainersLab):
            raise LabError(f"host-pause and power-cut need the containers lab (or a hypervisor), not {lab!r}")
        self.lab = lab

    async def invoke(self, op: Op) -> Op:
        lab = self.lab
        if lab is None:
            return failure(op, "host faults are not set up (no containers lab)")
        if op.f in ("host-pause", "power-cut"):
            try:
                targets = await choose(op.value, list(lab.hosts), self.rng, self.db)
            except TargetError as e:
                return failure(op, str(e))
            held: dict[Host, str] = {}
            hit = self.frozen if op.f == "host-pause" else self.off

            async def pause(host: Host) -> None:
                note = await lab.pause_host(host)
                if note != "frozen":
                    held[host] = note  # frozen, some tasks held in a kernel wait (raftlab/lab/freezer.py)

            done, failed = await on_each(targets, pause if op.f == "host-pause" else self._cut)
            hit.update(done)
            return completion(op, {"targets": targets, "done": done} | ({"held": held} if held else {}), failed)
        hit = self.frozen if op.f == "host-resume" else self.off
        hosts = list(lab.hosts) if op.value == "all" else sorted(hit)
        done, failed = await on_each(hosts, lab.resume_host if op.f == "host-resume" else self._on)
        hit.difference_update(done)
        return completion(op, {"targets": hosts, "done": done}, failed)

    async def _cut(self, host: Host) -> None:
        assert self.lab is not None
        if await self.lab.power_cut(host) is None:
            raise LabError(f"host {host} was not running")

    async def _on(self, host: Host) -> None:
        assert self.lab is not None
        await self.lab.power_on(host)
        disk = self.disk
        if disk is not None and host in disk.disks and not disk.unavailable:
            # The FUSE layer died with the host (its un-fsynced pages too): mount it again over
            # the data before the node starts, or the node would start on the empty mount point.
            disk.paused.discard(host)
            await disk.disks[host].mount(lazy=disk.lose_unfsynced)
        if isinstance(self.db, Killable):
            await self.db.start(host)

    async def teardown(self) -> None:
        if self.lab is None:
            return
        for host in sorted(self.frozen):
            await self.lab.resume_host(host)
        self.frozen.clear()
        for host in sorted(self.off):
            await self._on(host)
        self.off.clear()

