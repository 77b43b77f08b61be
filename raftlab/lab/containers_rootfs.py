"""The containers lab's base image: a debootstrap'd Debian bookworm rootfs, built once and cached.

Every host of the containers lab boots a copy-on-write overlay of this one directory, so it holds
everything a host needs *before* any host starts (hosts reach no package registry): systemd as
PID 1, sshd, python3 with venv and pip, iptables and nftables, fuse3, sudo, procps, iproute2, and
libfaketime (the clock faults: containers share this kernel's clock, so a node's clock is moved
by preloading the library into it, never by setting the host clock).
A ``vagrant`` user with passwordless sudo mirrors the Vagrant boxes, so raftlab logs in the same
way on both. Per-host identity (host key, hostname, machine id, authorized keys) is written into
each host's overlay by the lab, never into the base.

The cache is ``~/.cache/raftlab/rootfs-bookworm-<digest>`` (or ``rootfs=DIR``), the digest a hash
of the recipe (suite, packages, masked units), so a change of ``PACKAGES`` gets a new directory and
checkouts with different recipes never rebuild each other's cache. A marker file,
``etc/raftlab-rootfs``, records the recipe; a directory made by another recipe (an old cache
given as ``rootfs=DIR``, one without libfaketime) is rebuilt in place. The build
runs in ``DIR.partial`` under a lock file and is renamed into place when complete, so an
interrupted build is never used. Packages come from the Debian mirror in this machine's apt
sources, fetched by debootstrap (the ordinary apt tooling).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from raftlab.lab import LabError

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("systemd-sysv", "dbus", "udev", "kmod", "openssh-server", "openssh-sftp-server", "iproute2",
            "iputils-ping", "python3", "python3-venv", "python3-pip", "iptables", "nftables", "sudo", "procps",
            "netbase", "ca-certificates", "fuse3", "less", "libfaketime")
# Units that make no sense in a container: 20 udev workers per host, gettys, apt timers.
MASKED = ("systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
          "systemd-udev-trigger.service", "systemd-udev-settle.service", "console-getty.service",
          "getty@.service", "apt-daily.timer", "apt-daily-upgrade.timer", "systemd-networkd-wait-online.service")
SSHD_DROPIN = """\
# raftlab containers lab: one ed25519 host key per host, key logins only
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
MaxSessions 100
MaxStartups 100:30:200
"""
RECIPE = f"raftlab-rootfs 1 {SUITE} " + ",".join(PACKAGES) + " masked=" + ",".join(MASKED)
MARKER = "etc/raftlab-rootfs"


def default_path() -> Path:
    """This recipe's cache: a rootfs built from other packages lives (and stays usable) elsewhere."""
    digest = hashlib.sha256(RECIPE.encode()).hexdigest()[:10]
    return Path.home() / ".cache" / "raftlab" / f"rootfs-{SUITE}-{digest}"


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if re.search(r"/debian/?$", uri) and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def is_ready(path: Path) -> bool:
    try:
        return (path / MARKER).read_text().strip() == RECIPE
    except OSError:
        return False


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                stdin=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-4:])
        raise LabError(f"rootfs build: `{' '.join(argv)}` exited {proc.returncode}: {tail}")
    return text


async def ensure(path: Path | None = None, *, mirror: str | None = None,
                 say: Callable[[str], None] = lambda _m: None) -> Path:
    """The cached rootfs at ``path``, built first when missing or made by another recipe."""
    path = (path or default_path()).expanduser().resolve()
    if is_ready(path):
        return path
    if shutil.which("debootstrap") is None:
        raise LabError("building the containers lab's rootfs needs debootstrap (Debian: apt-get install debootstrap)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)  # another lab may be building it
        if not is_ready(path):
            await _build(path, mirror or apt_mirror(), say)
    return path


async def _build(path: Path, mirror: str, say: Callable[[str], None]) -> None:
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    say(f"building the {SUITE} rootfs in {partial} from {mirror} (a few minutes, once per recipe)")
    await _run("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(partial), mirror)
    await _run("chroot", str(partial), "sh", "-c",
               "id vagrant >/dev/null 2>&1 || useradd -m -s /bin/bash vagrant; "
               "echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vagrant; chmod 440 /etc/sudoers.d/vagrant; "
               f"systemctl mask {' '.join(MASKED)}; apt-get clean")
    for key in (partial / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (partial / "etc" / "ssh" / "sshd_config.d" / "raftlab.conf").write_text(SSHD_DROPIN)
    (partial / "etc" / "machine-id").write_text("")
    (partial / MARKER).write_text(RECIPE + "\n")
    if path.exists():  # made by an older recipe; overlays of running labs keep their open files
        old = path.with_name(f"{path.name}.old-{os.getpid()}")
        path.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    partial.rename(path)
    say(f"rootfs ready: {path}")
