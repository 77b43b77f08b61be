"""Disk faults through labfs (``fusefs.py``) mounted over each node's data directory.

* ``disk-pause`` / ``disk-resume``: every operation on the target's data directory blocks until
  resumed, like a hung disk.
* ``lose-unfsynced``: ``crash`` kills the target's node and drops every write it had not fsynced
  (labfs ``--lazy``); ``restart`` starts it again on what was durable.

Mounting: ``setup`` moves each host's data directory aside to ``DATA.labfs`` (the backing
directory) and mounts labfs at ``DATA``, restarting the node around it when the DB is
``Killable`` (the node must reopen its files through the mount). ``teardown`` resumes, unmounts
and moves the data back. The data directory is the DB's ``data_dir(host)`` when it has one, else
``<node_dir>/data``. Where FUSE is missing (no /dev/fuse, no fusermount, no mfusepy or libfuse on a
host) ``setup`` records why, every disk op then fails with that reason, and other faults run.

Healing order matters: a process blocked in a paused FUSE operation ignores SIGKILL until the
operation is answered, so ``crash`` resumes a paused disk first, and the final phase resumes
disks before anything else.
"""

from __future__ import annotations

import asyncio
import random
import shlex
from typing import Protocol, runtime_checkable

from raftlab.nemesis.package import BuildContext, Family, Fault
from raftlab.nemesis.targets import TargetError, choose, completion, failure, on_each

from raftlab.history import Op
from raftlab.protocols import Host, Killable, Lab, Remote

MOUNT_WAIT = 10.0


@runtime_checkable
class HasDataDir(Protocol):
    """A DB that says where a host keeps its data (the directory labfs is mounted over)."""

    def data_dir(self, host: Host) -> str: ...


class FuseDisk:
    """labfs on one host: the commands that mount, control and unmount it over ``data``."""

    def __init__(self, remote: Remote, python: str, data: str) -> None:
        self.remote = remote
        self.python = python
        self.data = data.rstrip("/")
        self.backing = self.data + ".labfs"
        self.sock = self.data + ".labfs.sock"
        self.pid_file = self.data + ".labfs.pid"
        self.log = self.data + ".labfs.log"

    async def unavailable(self) -> str | None:
        """Why labfs cannot run on this host, or None when it can."""
        py = shlex.quote(self.python)
        r = await self.remote.run(
            "test -c /dev/fuse || { echo 'no /dev/fuse'; exit 1; }; "
            "command -v fusermount3 >/dev/null || command -v fusermount >/dev/null || "
            "{ echo 'no fusermount (Debian: fuse3)'; exit 1; }; "
            f"{py} -c 'import mfusepy' 2>&1 | tail -1 | sed 's/^/mfusepy: /'; "
            f"{py} -c 'import mfusepy' >/dev/null 2>&1", check=False)
        return None if r.exit_status == 0 else (r.stdout.strip() or r.stderr.strip() or "labfs cannot start")

    async def mounted(self) -> bool:
        r = await self.remote.run(f"grep -q ' {self.data} fuse' /proc/mounts", check=False)
        return r.exit_status == 0

    async def mount(self, *, lazy: bool) -> None:
        d, b = shlex.quote(self.data), shlex.quote(self.backing)
        await self.remote.run(
            f"mkdir -p {d} && if [ ! -d {b} ]; then mv {d} {b} && mkdir {d}; fi")
        lazy_flag = " --lazy" if lazy else ""
        await self.remote.run(
            f"nohup {shlex.quote(self.python)} -m raftlab.nemesis.fusefs mount {b} {d} "
            f"--ctl {shlex.quote(self.sock)}{lazy_flag} > {shlex.quote(self.log)} 2>&1 < /dev/null & "
            f"echo $! > {shlex.quote(self.pid_file)}")
        for _ in range(int(MOUNT_WAIT / 0.05)):
            if await self.mounted():
                return
            await asyncio.sleep(0.05)
        log = await self.remote.run(f"tail -3 {shlex.quote(self.log)}", check=False)
        raise RuntimeError(f"labfs did not mount over {self.data}: {log.stdout.strip()}")

    async def ctl(self, command: str) -> str:
        r = await self.remote.run(f"{shlex.quote(self.python)} -m raftlab.nemesis.fusefs ctl "
                                  f"{shlex.quote(self.sock)} {command}", check=False)
        if r.exit_status != 0:
            raise RuntimeError(f"labfs {command}: {(r.stdout + r.stderr).strip()}")
        return r.stdout.strip()

    async def unmount(self) -> None:
        """Resume, unmount (lazily, so nothing can hang) and move the data back in place."""
        d, b = shlex.quote(self.data), shlex.quote(self.backing)
        if await self.mounted():
            await self.remote.run(f"{shlex.quote(self.python)} -m raftlab.nemesis.fusefs ctl "
                                  f"{shlex.quote(self.sock)} resume", check=False)
            await self.remote.run(f"fusermount3 -u -z {d} 2>/dev/null || fusermount -u -z {d} 2>/dev/null "
                                  f"|| umount -l {d}", check=False)
        await self.remote.run(f"if [ -d {b} ]; then rmdir {d} 2>/dev/null; mv {b} {d}; fi; "
                              f"rm -f {shlex.quote(self.pid_file)}", check=False)


class DiskNemesis:
    """disk-pause/disk-resume and crash/restart (lose-unfsynced) over labfs mounts."""

    def __init__(self, db: object, rng: random.Random, *, pause: bool = True, lose_unfsynced: bool = False) -> None:
        self.db = db
        self.rng = rng
        self.pause = pause
        self.lose_unfsynced = lose_unfsynced
        self.disks: dict[Host, FuseDisk] = {}
        self.hosts: list[Host] = []
        self.unavailable: str | None = None
        self.paused: set[Host] = set()
        self.crashed: set[Host] = set()

    def fs(self) -> frozenset[str]:
        fs: set[str] = set()
        if self.pause:
            fs |= {"disk-pause", "disk-resume"}
        if self.lose_unfsynced:
            fs |= {"crash", "restart"}
        return frozenset(fs)

    def _data_dir(self, lab: Lab, host: Host) -> str:
        if isinstance(self.db, HasDataDir):
            return self.db.data_dir(host)
        return f"{lab.node_dir(host)}/data"  # type: ignore[attr-defined]

    async def setup(self, lab: Lab) -> None:
        self.hosts = list(lab.hosts)
        self.disks = {h: FuseDisk(lab.remote(h), lab.python(h), self._data_dir(lab, h))  # type: ignore[attr-defined]
                      for h in self.hosts}
        reasons = {h: await d.unavailable() for h, d in self.disks.items()}
        missing = {h: r for h, r in reasons.items() if r}
        if missing:
            self.unavailable = "FUSE disk faults unavailable: " + "; ".join(f"{h}: {r}" for h, r in sorted(missing.items()))
            return
        if self.lose_unfsynced and not isinstance(self.db, Killable):
            self.unavailable = "lose-unfsynced needs a DB that can kill and start nodes (Killable)"
            return
        killable = isinstance(self.db, Killable)

        async def mount(host: Host) -> None:
            if killable:
                await self.db.kill(host)  # type: ignore[attr-defined]
            await self.disks[host].mount(lazy=self.lose_unfsynced)
            if killable:
                await self.db.start(host)  # type: ignore[attr-defined]

        _, failed = await on_each(self.hosts, mount)
        if failed:
            self.unavailable = "labfs could not be mounted: " + "; ".join(f"{h}: {r}" for h, r in sorted(failed.items()))

    async def invoke(self, op: Op) -> Op:
        if self.unavailable:
            return failure(op, self.unavailable)
        if op.f in ("disk-pause", "crash"):
            try:
                targets = await choose(op.value, self.hosts, self.rng, self.db)
            except TargetError as e:
                return failure(op, str(e))
            action = self._pause if op.f == "disk-pause" else self._crash
            done, failed = await on_each(targets, action)
            return completion(op, {"targets": targets, "done": done}, failed)
        hit = self.paused if op.f == "disk-resume" else self.crashed
        hosts = list(self.hosts) if op.value == "all" else sorted(hit)
        done, failed = await on_each(hosts, self._resume if op.f == "disk-resume" else self._restart)
        return completion(op, {"targets": hosts, "done": done}, failed)

    async def _pause(self, host: Host) -> None:
        await self.disks[host].ctl("pause")
        self.paused.add(host)

    async def _resume(self, host: Host) -> None:
        await self.disks[host].ctl("resume")
        self.paused.discard(host)

    async def _crash(self, host: Host) -> None:
        if host in self.paused:  # a process blocked on a paused disk cannot die until resumed
            await self._resume(host)
        await self.db.kill(host)  # type: ignore[attr-defined]
        self.crashed.add(host)
        await self.disks[host].ctl("crash")

    async def _restart(self, host: Host) -> None:
        await self.db.start(host)  # type: ignore[attr-defined]
        self.crashed.discard(host)

    async def teardown(self) -> None:
        await on_each(list(self.disks), lambda h: self.disks[h].unmount())
        self.paused.clear()


def _build(ctx: BuildContext) -> DiskNemesis:
    return DiskNemesis(ctx.db, ctx.rng, pause="disk-pause" in ctx.names, lose_unfsynced="lose-unfsynced" in ctx.names)


FAMILY = Family(
    name="disk",
    needs="FUSE on the hosts (/dev/fuse, fusermount3, mfusepy); lose-unfsynced also a Killable DB",
    # disk-resume first of all healers: a process blocked on a paused disk cannot even die.
    heal_ranks={"disk-resume": 20, "restart": 50},
    build=_build,
    faults=(
        Fault(name="disk-pause", start="disk-pause", stop="disk-resume", values=("one", "leader"), color="#A0C8E9",
              doc="stall every operation on a node's data directory, then resume"),
        Fault(name="lose-unfsynced", start="crash", stop="restart", values=("one", "minority"), color="#A0E9B8",
              doc="kill a node and drop the writes it had not fsynced, then restart it"),
    ),
)
