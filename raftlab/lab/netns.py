"""The netns lab (Linux, root): N network namespaces on a bridge, each a host with its own sshd.

raftlab drives these hosts exactly as it drives VMs: paramiko over SSH to each host's address,
and partitions with iptables inside each namespace (``SshLab`` and ``IptablesNet``). It is the
fast way to exercise the whole SSH path for real in CI.

Layout (options, recorded in the lab state; defaults in brackets): namespaces ``PREFIX1..N``
[``rl``], a bridge ``BRIDGE`` [``rlbr0``] holding ``SUBNET.1/24`` [``10.77.0``], host ``nI`` at
``SUBNET.(10+I)`` on ``eth0`` (its veth peer ``PREFIXvI`` is on the bridge). Each host's sshd is
started as ``ip netns exec NS unshare --uts sh -c "hostname nI; <cgroup mounts>; exec sshd ..."``
(LAB-NOTES: without ``--uts`` every host has the same hostname; ``ip netns exec`` remounts /sys,
so cgroup hierarchies are mounted again for the sessions). Its config, host key, log and pid file
live in ``WORKDIR/sshd/nI``; raftlab's client key is ``WORKDIR/ssh/id_ed25519``.

The hosts share this machine's filesystem and process table: ``python(host)`` is this venv's
python and ``node_dir(host)`` is ``WORKDIR/hosts/nI``. ``down`` kills every process inside the
namespaces, deletes them (their iptables rules go with them) and the bridge, unmounts what runs
mounted under the work dir and removes it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from raftlab.lab import LabConflict, LabError, LabState
from raftlab.lab.local import sweep
from raftlab.lab.nodesfile import NodeSpec
from raftlab.lab.ssh import SshLab

SSHD = "/usr/sbin/sshd"
CGROUPS = ("freezer", "blkio", "memory", "cpu,cpuacct", "pids", "devices", "cpuset")
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_SUBNET = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def layout(state: LabState) -> dict[str, Any]:
    prefix = state.opts.get("prefix", "rl")
    bridge = state.opts.get("bridge", f"{prefix}br0")
    subnet = state.opts.get("subnet", "10.77.0")
    if not _NAME.match(prefix) or not re.match(r"^[a-z][a-z0-9]{0,14}$", bridge):
        raise LabError(f"netns prefix/bridge must be short lowercase names, not {prefix!r}/{bridge!r}")
    if not _SUBNET.match(subnet) or any(int(x) > 255 for x in subnet.split(".")):
        raise LabError(f"netns subnet must be the first three octets of a /24, like 10.77.0, not {subnet!r}")
    if state.nodes > 200:
        raise LabError("the netns lab has at most 200 hosts")
    return {"prefix": prefix, "bridge": bridge, "subnet": subnet}


def specs(state: LabState) -> list[NodeSpec]:
    lay = layout(state)
    root = Path(state.workdir)
    return [NodeSpec(name=h, address=f"{lay['subnet']}.{10 + i}", key=str(root / "ssh" / "id_ed25519"),
                     python=sys.executable, dir=str(root / "hosts" / h))
            for i, h in enumerate(state.hosts, 1)]


async def sh(cmd: str, *, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_shell(cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                 stdin=asyncio.subprocess.DEVNULL)
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise LabError(f"netns lab: `{cmd}` exited {proc.returncode}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def _require() -> None:
    if os.geteuid() != 0:
        raise LabError("the netns lab needs root (network namespaces, bridges, sshd); use --lab local otherwise")
    missing = [b for b in ("ip", "unshare", "ssh-keygen", "iptables") if shutil.which(b) is None]
    if not Path(SSHD).exists():
        missing.append(SSHD)
    if missing:
        raise LabError(f"the netns lab needs {', '.join(missing)} (Debian: iproute2 util-linux openssh-server iptables)")


def _sshd_config(host: str, address: str, directory: Path, authorized: Path) -> str:
    return "\n".join([
        f"ListenAddress {address}",
        f"HostKey {directory / 'ssh_host_ed25519_key'}",
        f"PidFile {directory / 'sshd.pid'}",
        "PermitRootLogin prohibit-password",
        f"AuthorizedKeysFile {authorized}",
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "MaxSessions 100",
        "MaxStartups 100:30:200",
        "Subsystem sftp internal-sftp",
        f"# raftlab netns lab host {host}",
        "",
    ])


async def up(state: LabState) -> None:
    _require()
    lay = layout(state)
    await _check_free(state, lay)
    root = Path(state.workdir)
    ssh_dir = root / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        await sh(f"ssh-keygen -q -t ed25519 -N '' -C raftlab-lab -f {key}")
    authorized = ssh_dir / "authorized_keys"
    shutil.copy(key.with_suffix(".pub"), authorized)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    br, subnet = lay["bridge"], lay["subnet"]
    await sh(f"ip link add {br} type bridge 2>/dev/null || ip link show {br} >/dev/null")
    await sh(f"ip addr replace {subnet}.1/24 dev {br} && ip link set {br} up")
    mounts = "; ".join(["mount -t tmpfs cgroup /sys/fs/cgroup"]
                       + [f"mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}"
                          for c in CGROUPS]
                       + ["mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified"])
    for i, spec in enumerate(specs(state), 1):
        ns, veth = f"{lay['prefix']}{i}", f"{lay['prefix']}v{i}"
        host_dir = root / "sshd" / spec.name
        host_dir.mkdir(parents=True, exist_ok=True)
        Path(spec.dir).mkdir(parents=True, exist_ok=True)
        if not (host_dir / "ssh_host_ed25519_key").exists():
            await sh(f"ssh-keygen -q -t ed25519 -N '' -f {host_dir / 'ssh_host_ed25519_key'}")
        config = host_dir / "sshd_config"
        config.write_text(_sshd_config(spec.name, spec.address, host_dir, authorized))
        await sh(f"ip netns add {ns}")
        await sh(f"ip link add {veth} type veth peer name eth0 netns {ns} && ip link set {veth} master {br} up")
        await sh(f"ip -n {ns} link set lo up && ip -n {ns} addr add {spec.address}/24 dev eth0 && "
                 f"ip -n {ns} link set eth0 up && ip -n {ns} route add default via {subnet}.1")
        inner = f"hostname {spec.name}; {{ {mounts}; }} 2>/dev/null; exec {SSHD} -f {config} -E {host_dir / 'sshd.log'}"
        await sh(f"ip netns exec {ns} unshare --uts sh -c \"{inner}\"")
    lab = SshLab(specs(state), kind="netns")
    try:
        await _wait_reachable(lab)
    finally:
        await lab.close()


async def _check_free(state: LabState, lay: dict[str, Any]) -> None:
    listed = await sh("ip netns list", check=False)
    taken = [f"{lay['prefix']}{i}" for i in range(1, state.nodes + 1)
             if re.search(rf"^{lay['prefix']}{i}\b", listed, re.M)]
    if (await sh(f"ip link show {lay['bridge']} 2>/dev/null", check=False)).strip():
        taken.append(f"bridge {lay['bridge']}")
    if taken:
        raise LabConflict(f"netns lab {state.name!r}: {', '.join(taken)} already exist (another lab?); "
                          "pick another --prefix/--bridge/--subnet or bring that lab down")


async def _wait_reachable(lab: SshLab, attempts: int = 50) -> None:
    for host in lab.hosts:
        for attempt in range(attempts):
            try:
                await lab.remote(host).run("true")
                break
            except LabError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.1)


async def attach(state: LabState) -> SshLab:
    lay = layout(state)
    listed = await sh("ip netns list", check=False)
    missing = [f"{lay['prefix']}{i}" for i in range(1, state.nodes + 1)
               if not re.search(rf"^{lay['prefix']}{i}\b", listed, re.M)]
    if missing:
        raise LabError(f"netns lab {state.name!r} is recorded but namespaces {', '.join(missing)} are gone; "
                       f"run `raftlab lab down --name {state.name}` and up again")
    return SshLab(specs(state), kind="netns")


async def down(state: LabState) -> None:
    lay = layout(state)
    root = Path(state.workdir)
    await asyncio.to_thread(sweep, root)
    for i in range(1, state.nodes + 1):
        ns = f"{lay['prefix']}{i}"
        pids = (await sh(f"ip netns pids {ns} 2>/dev/null", check=False)).split()
        if pids:
            await sh(f"kill -9 {' '.join(pids)}", check=False)
        await sh(f"ip netns del {ns} 2>/dev/null", check=False)
        await sh(f"ip link del {lay['prefix']}v{i} 2>/dev/null", check=False)
    await sh(f"ip link del {lay['bridge']} 2>/dev/null", check=False)
    shutil.rmtree(root, ignore_errors=True)


async def status(state: LabState) -> dict[str, Any]:
    lay = layout(state)
    listed = await sh("ip netns list", check=False)
    hosts = {}
    for i, spec in enumerate(specs(state), 1):
        ns = f"{lay['prefix']}{i}"
        pid_file = Path(state.workdir) / "sshd" / spec.name / "sshd.pid"
        try:
            sshd = Path(f"/proc/{int(pid_file.read_text())}").exists()
        except (OSError, ValueError):
            sshd = False
        hosts[spec.name] = {"netns": ns, "exists": bool(re.search(rf"^{ns}\b", listed, re.M)),
                            "address": spec.address, "sshd": sshd}
    return {"bridge": lay["bridge"], "hosts": hosts}
