"""One host of the containers lab: its overlay, identity, network namespace, cgroup and PID 1.

A host is a copy-on-write overlay of the cached rootfs (``WORKDIR/hosts/nI/{upper,work,root}``),
booted either by ``systemd-nspawn -b`` (systemd as PID 1, the faithful mode) or, where nspawn is
missing, by ``unshare --pid`` + ``chroot`` with sshd as PID 1 (the fallback mode), inside network
namespace ``PREFIXi`` whose ``eth0`` the lab has already configured. The start script first moves
itself into cgroup ``raftlab-PREFIXi`` in every cgroup hierarchy (LAB-NOTES trap 4: hosts sharing
one cgroup act on each other), then ``exec``s the supervisor (nspawn or unshare), whose pid goes to
``supervisor.pid``. The host's PID 1 is the supervisor's child.

Controller-side faults a hypervisor could do: ``freeze``/``thaw`` (cgroup freezer, through
``raftlab/lab/freezer.py``: every process of the host stops at once; SSH connects but gets no banner) and ``power_cut`` (SIGKILL of PID 1:
the kernel kills every process of the host's PID namespace, labfs's un-fsynced pages with them;
killing the supervisor instead would leave the container running). The overlay survives a power
cut, like a VM's disk, so ``start`` boots the same host again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from raftlab.lab import LabError
from raftlab.lab.freezer import Freezer

CGROUP_FS = ("cgroup", "cgroup2")


def hierarchies() -> list[tuple[str, str, str]]:
    """(mount point, fstype, options) of every cgroup hierarchy mounted on this machine."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, point, fstype, options, *_ = line.split()
        if fstype in CGROUP_FS:
            out.append((point, fstype, options))
    return out


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first (so they can be unmounted in order)."""
    prefix = str(directory.resolve())
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    return sorted(set(inside), key=lambda p: p.count("/"), reverse=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerHost:
    """Paths and names of one host; the methods act on the real thing."""

    name: str           # n1
    netns: str          # rlc1
    address: str        # 10.79.0.11
    lab: str            # the lab's name, for the machine id
    home: Path          # WORKDIR/hosts/n1
    rootfs: Path        # the cached base
    mode: str           # nspawn | chroot

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def cgroup(self) -> str:
        return f"raftlab-{self.netns}"

    def cgroup_dirs(self) -> list[Path]:
        return [Path(point) / self.cgroup for point, _, _ in hierarchies()]

    # --- filesystem ------------------------------------------------------------------------

    def mount_overlay(self) -> None:
        if str(self.root) in mounts_under(self.root):
            return
        for d in ("upper", "work", "root"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        _check(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={self.rootfs},upperdir={self.home / 'upper'},workdir={self.home / 'work'}", str(self.root)])

    def write_identity(self, *, hosts_lines: str, authorized_key: str, users: tuple[str, ...]) -> None:
        """Hostname, hosts file, machine id, host key and authorized keys, in this host's overlay only."""
        r = self.root
        (r / "etc" / "hostname").write_text(self.name + "\n")
        (r / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n" + hosts_lines)
        (r / "etc" / "machine-id").write_text(hashlib.sha256(f"{self.lab}/{self.name}".encode()).hexdigest()[:32] + "\n")
        key = r / "etc" / "ssh" / "ssh_host_ed25519_key"
        if not key.exists():
            _check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}", "-f", str(key)])
        passwd = {f[0]: f for f in (line.split(":") for line in (r / "etc" / "passwd").read_text().splitlines()) if len(f) > 5}
        for user in users:
            if user not in passwd:
                raise LabError(f"{self.name}: no user {user!r} in the rootfs")
            uid, gid, home = int(passwd[user][2]), int(passwd[user][3]), passwd[user][5]
            ssh_dir = r / home.lstrip("/") / ".ssh"
            ssh_dir.mkdir(parents=True, exist_ok=True)
            (ssh_dir / "authorized_keys").write_text(authorized_key)
            for p in (ssh_dir, ssh_dir / "authorized_keys"):
                os.chown(p, uid, gid)
            os.chmod(ssh_dir, 0o700)

    # --- the host's processes --------------------------------------------------------------

    def start_script(self) -> str:
        lines = ["#!/bin/sh", f"# raftlab containers lab: boots host {self.name} ({self.mode} mode)", "set -e"]
        for d in self.cgroup_dirs():
            g = shlex.quote(str(d))
            lines.append(f"mkdir -p {g}")
            if (d.parent / "cpuset.cpus").exists():  # v1 cpuset: a group needs cpus and mems before tasks
                lines.append(f"cat {d.parent}/cpuset.cpus > {g}/cpuset.cpus; cat {d.parent}/cpuset.mems > {g}/cpuset.mems")
            lines.append(f"echo $$ > {g}/cgroup.procs")
        lines.append(f"echo $$ > {shlex.quote(str(self.home / 'supervisor.pid'))}")
        root = shlex.quote(str(self.root))
        if self.mode == "nspawn":
            lines.append(f"exec env SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 systemd-nspawn -q -D {root} -M {self.netns} "
                         "--register=no --keep-unit --capability=all --bind=/dev/fuse "
                         f"--network-namespace-path=/run/netns/{self.netns} --hostname={self.name} "
                         "--console=passive -b")
        else:
            inner = "; ".join([
                f"hostname {self.name}", f"R={root}",
                "mount -t proc proc $R/proc", "mount -t sysfs sysfs $R/sys",
                "mount -t tmpfs cgroup $R/sys/fs/cgroup",
                *[f"mkdir -p $R{p} && mount -t {t} -o {o} {t} $R{p}" for p, t, o in hierarchies()
                  if p.startswith("/sys/fs/cgroup/")],
                "mount --rbind /dev $R/dev", "mount -t tmpfs tmpfs $R/run", "mkdir -p $R/run/sshd",
                "mount -t tmpfs tmpfs $R/tmp", "exec chroot $R /usr/sbin/sshd -D -e",
            ])
            lines.append(f"exec ip netns exec {self.netns} unshare --uts --pid --fork --mount --propagation private "
                         f"sh -c {shlex.quote(inner)}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Boot the host (detached: it outlives this process); returns once PID 1 exists."""
        if self.pid1() is not None:
            return
        script = self.home / "start.sh"
        script.write_text(self.start_script())
        (self.home / "supervisor.pid").unlink(missing_ok=True)
        with open(self.home / "console.log", "ab") as log:  # setsid -f: detached, never our child
            subprocess.run(["setsid", "-f", "sh", str(script)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                           check=True)
        deadline = time.monotonic() + 20
        while self.pid1() is None:
            if time.monotonic() > deadline:
                raise LabError(f"host {self.name} did not start within 20 s; see {self.home / 'console.log'}")
            time.sleep(0.05)

    def supervisor(self) -> int | None:
        """The pid of systemd-nspawn (or unshare) for this host, when it runs."""
        try:
            pid = int((self.home / "supervisor.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.root).encode() in cmdline else None

    def pid1(self) -> int | None:
        """The host's PID 1 (systemd, or sshd in chroot mode), seen from this machine."""
        sup = self.supervisor()
        if sup is None:
            return None
        try:
            children = Path(f"/proc/{sup}/task/{sup}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    @property
    def freezer(self) -> Freezer:
        return Freezer(tuple(self.cgroup_dirs()), f"host {self.name} (cgroup {self.cgroup})")

    def frozen(self) -> bool:
        return self.freezer.frozen()

    async def freeze(self) -> str:
        """Stop every process of the host at once, like pausing a VM; returns once none can run
        (raftlab/lab/freezer.py says why a task held in a kernel wait counts as paused)."""
        if self.pid1() is None:
            raise LabError(f"host {self.name} is not running")
        return await self.freezer.freeze()

    async def thaw(self) -> None:
        await self.freezer.thaw()

    async def power_cut(self) -> int | None:
        """SIGKILL the host's PID 1 (thawed first: a frozen task dies only when thawed); waits for
        the supervisor to exit. Returns the pid killed, or None if the host was not running."""
        pid = self.pid1()
        sup = self.supervisor()
        await self.thaw()
        if pid is not None:
            _kill(pid)
        for _ in range(200):
            if sup is None or not _alive(sup):
                return pid
            await asyncio.sleep(0.025)
        raise LabError(f"host {self.name}: supervisor {sup} still runs 5 s after PID 1 {pid} was killed")

    # --- removal ---------------------------------------------------------------------------

    async def remove(self) -> list[str]:
        """Stop the host and remove its mounts, cgroups and nspawn leftovers; what could not be removed."""
        await self.power_cut()
        sup = self.supervisor()
        if sup is not None:
            _kill(sup)
        problems = []
        for d in self.cgroup_dirs():  # stragglers (a process that escaped PID 1's death), then the tree
            for procs in sorted(d.rglob("cgroup.procs"), key=lambda p: -len(p.parts)) if d.exists() else []:
                for pid in procs.read_text().split():
                    _kill(int(pid))
        for d in self.cgroup_dirs():
            if d.exists():
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    await _rmdir(sub)
                if not await _rmdir(d):
                    problems.append(f"cgroup {d}")
        for point in mounts_under(self.home):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
        problems += [f"mount {p}" for p in mounts_under(self.home)]
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.netns}", ignore_errors=True)
        return problems


def _check(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _rmdir(d: Path) -> bool:
    """rmdir a cgroup, retrying briefly while its last tasks exit."""
    for _ in range(100):
        try:
            d.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            await asyncio.sleep(0.02)
    return False
