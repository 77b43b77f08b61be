"""The containers lab (Linux, root): N Debian bookworm hosts that stand in for Vagrant VMs.

Each host is a systemd-nspawn container (``mode=chroot`` where nspawn is missing) booting a
copy-on-write overlay of a cached debootstrap'd rootfs (``containers_rootfs``), in its own network
namespace on a bridge, with its own address, hostname, PID table, mounts, firewall, cgroup, and
systemd + sshd (``containers_host``). raftlab reaches the hosts exactly as it reaches Vagrant VMs:
paramiko SSH as ``vagrant`` with passwordless sudo (``SshLab``), and ``up`` provisions them by
uploading ``vagrant/provision.sh`` with a wheelhouse built here (hosts reach no registry) and
running it unchanged. Campaigns then use real iptables partitions, kills, pauses and FUSE disk
faults inside the hosts; ``ContainersLab`` adds the faults only a hypervisor could do: whole-host
pause (cgroup freezer) and power cut (SIGKILL of the host's PID 1), with ``power_on`` after it.

Options (``--prefix/--bridge/--subnet``, the rest via ``--opt KEY=VALUE``; defaults in brackets):
``prefix`` [rlc]: namespaces PREFIX1..N and veths PREFIXv1..N; ``bridge`` [rlcbr0];
``subnet`` [10.79.0]: the bridge is .1, host nI is .(10+I); ``mode`` [auto: nspawn if installed,
else chroot]; ``rootfs`` [~/.cache/raftlab/rootfs-bookworm-<recipe digest>]; ``mirror`` [from apt sources];
``user`` [vagrant]; ``provision`` [1: run provision.sh on up; 0 to skip]; ``wheelhouse`` [built
with ``pip wheel`` from this checkout]; ``provision_script`` [vagrant/provision.sh of this checkout].

``down`` power-cuts every host, then removes cgroups, mounts, namespaces, veths, the bridge and the
work dir; it reports anything it could not remove.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import raftlab
from raftlab.lab import LabConflict, LabError, LabState, containers_rootfs
from raftlab.lab.containers_host import ContainerHost
from raftlab.lab.netns import sh
from raftlab.lab.nodesfile import NodeSpec
from raftlab.lab.ssh import SshLab
from raftlab.protocols import Host

VENV_PYTHON = "/opt/raftlab/venv/bin/python"
NODE_DIR = "/var/lib/raftlab"
UPLOAD_DIR = "/var/tmp/raftlab-provision"
SSH_WAIT = 60.0
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_SUBNET = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def layout(state: LabState) -> dict[str, Any]:
    o = state.opts
    prefix = o.get("prefix", "rlc")
    bridge = o.get("bridge", f"{prefix}br0")
    subnet = o.get("subnet", "10.79.0")
    mode = o.get("mode", "auto")
    if not _NAME.match(prefix) or not re.match(r"^[a-z][a-z0-9]{0,14}$", bridge):
        raise LabError(f"containers prefix/bridge must be short lowercase names, not {prefix!r}/{bridge!r}")
    if not _SUBNET.match(subnet) or any(int(x) > 255 for x in subnet.split(".")):
        raise LabError(f"containers subnet must be the first three octets of a /24, like 10.79.0, not {subnet!r}")
    if mode == "auto":
        mode = "nspawn" if shutil.which("systemd-nspawn") else "chroot"
    if mode not in ("nspawn", "chroot"):
        raise LabError(f"containers mode must be auto, nspawn or chroot, not {mode!r}")
    user = o.get("user", "vagrant")
    if user not in ("root", "vagrant"):
        raise LabError(f"containers user must be root or vagrant, not {user!r}")
    rootfs = Path(o.get("rootfs") or containers_rootfs.default_path()).expanduser()
    return {"prefix": prefix, "bridge": bridge, "subnet": subnet, "mode": mode, "user": user, "rootfs": rootfs}


def hosts(state: LabState) -> list[ContainerHost]:
    lay = layout(state)
    return [ContainerHost(name=h, netns=f"{lay['prefix']}{i}", address=f"{lay['subnet']}.{10 + i}", lab=state.name,
                          home=Path(state.workdir) / "hosts" / h, rootfs=lay["rootfs"].resolve(), mode=lay["mode"])
            for i, h in enumerate(state.hosts, 1)]


def specs(state: LabState) -> list[NodeSpec]:
    lay = layout(state)
    key = str(Path(state.workdir) / "ssh" / "id_ed25519")
    return [NodeSpec(name=h.name, address=h.address, user=lay["user"], key=key, python=VENV_PYTHON, dir=NODE_DIR)
            for h in hosts(state)]


class ContainersLab(SshLab):
    """The SSH lab over container hosts, plus the controller-side faults a hypervisor could do."""

    def __init__(self, state: LabState) -> None:
        super().__init__(specs(state), kind="containers")
        self.machines = {h.name: h for h in hosts(state)}

    def machine(self, host: Host) -> ContainerHost:
        try:
            return self.machines[host]
        except KeyError:
            raise LabError(f"unknown host {host!r} (this lab has {', '.join(self.machines)})") from None

    async def pause_host(self, host: Host) -> str:
        """Freeze every process of the host (cgroup freezer), like pausing its VM; "frozen", or
        what the pause held in a kernel wait (raftlab/lab/freezer.py)."""
        return await self.machine(host).freeze()

    async def resume_host(self, host: Host) -> None:
        await self.machine(host).thaw()

    async def power_cut(self, host: Host) -> int | None:
        """SIGKILL the host's PID 1: every process on it dies at once; its disk (overlay) stays."""
        self.remote(host).close()
        return await self.machine(host).power_cut()

    async def power_on(self, host: Host) -> None:
        """Boot a host again after a power cut; returns once it answers over SSH."""
        await asyncio.to_thread(self.machine(host).start)
        await _wait_ssh(self, host)

    def host_pid1(self, host: Host) -> int | None:
        return self.machine(host).pid1()


def _require(mode: str) -> None:
    if os.geteuid() != 0:
        raise LabError("the containers lab needs root (namespaces, overlay mounts, cgroups); use --lab local otherwise")
    tools = ["ip", "mount", "ssh-keygen", "unshare", "setsid"] + (["systemd-nspawn"] if mode == "nspawn" else ["chroot"])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"the containers lab needs {', '.join(missing)} "
                       "(Debian: iproute2 util-linux openssh-client systemd-container)")


async def _check_free(state: LabState, lay: dict[str, Any]) -> None:
    listed = await sh("ip netns list", check=False)
    taken = [h.netns for h in hosts(state) if re.search(rf"^{h.netns}\b", listed, re.M)]
    if (await sh(f"ip link show {lay['bridge']} 2>/dev/null", check=False)).strip():
        taken.append(f"bridge {lay['bridge']}")
    used = re.search(rf"^\d+: (\S+)\s+inet {re.escape(lay['subnet'])}\.\d+/",
                     await sh("ip -o -4 addr show", check=False), re.M)
    if used:
        taken.append(f"subnet {lay['subnet']}.0/24 (on {used.group(1)})")
    if taken:
        raise LabConflict(f"containers lab {state.name!r}: {', '.join(taken)} already exist (another lab?); "
                          "pick another --prefix/--bridge/--subnet or bring that lab down")


def _checkout() -> Path:
    """The raftlab source tree this module runs from (provision.sh and the wheel come from it)."""
    return Path(raftlab.__file__).resolve().parent.parent


async def up(state: LabState) -> None:
    lay = layout(state)
    _require(lay["mode"])
    await _check_free(state, lay)
    await containers_rootfs.ensure(lay["rootfs"], mirror=state.opts.get("mirror"),
                                   say=lambda m: print(f"containers lab: {m}", file=sys.stderr))
    root = Path(state.workdir)
    key = root / "ssh" / "id_ed25519"
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        await sh(f"ssh-keygen -q -t ed25519 -N '' -C raftlab-containers -f {key}")
    authorized = key.with_suffix(".pub").read_text()
    machines = hosts(state)
    hosts_lines = "".join(f"{h.address} {h.name}\n" for h in machines)
    br, subnet = lay["bridge"], lay["subnet"]
    await sh(f"ip link add {br} type bridge && ip addr replace {subnet}.1/24 dev {br} && ip link set {br} up")
    for i, h in enumerate(machines, 1):
        veth = f"{lay['prefix']}v{i}"
        await sh(f"ip netns add {h.netns}")
        await sh(f"ip link add {veth} type veth peer name eth0 netns {h.netns} && ip link set {veth} master {br} up")
        await sh(f"ip -n {h.netns} link set lo up && ip -n {h.netns} addr add {h.address}/24 dev eth0 && "
                 f"ip -n {h.netns} link set eth0 up && ip -n {h.netns} route add default via {subnet}.1")
        await asyncio.to_thread(h.mount_overlay)
        await asyncio.to_thread(h.write_identity, hosts_lines=hosts_lines, authorized_key=authorized,
                                users=("root", "vagrant"))
        await asyncio.to_thread(h.start)
    lab = ContainersLab(state)
    try:
        try:
            async with asyncio.TaskGroup() as tg:
                for h in machines:
                    tg.create_task(_wait_ssh(lab, h.name))
        except* LabError as group:
            raise LabError("; ".join(str(e) for e in group.exceptions)) from None
        if str(state.opts.get("provision", "1")).lower() not in ("0", "no", "false"):
            await provision(lab, state)
    finally:
        await lab.close()


async def _wait_ssh(lab: SshLab, host: Host, timeout: float = SSH_WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await lab.remote(host).run("true", timeout=10)
            return
        except LabError as e:
            if loop.time() > deadline:
                raise LabError(f"host {host} does not answer over SSH {timeout:.0f} s after boot: {e}") from None
            await asyncio.sleep(0.2)


async def wheelhouse(state: LabState) -> Path:
    """Wheels of raftlab[fuse] and every dependency, built on this machine (which has a registry)."""
    given = state.opts.get("wheelhouse")
    if given:
        path = Path(given).expanduser()
        if not any(path.glob("raftlab-*.whl")):
            raise LabError(f"wheelhouse {path} has no raftlab wheel (build it: pip wheel -w {path} 'raftlab[fuse]')")
        return path
    source = _checkout()
    if not (source / "pyproject.toml").exists():
        raise LabError(f"no raftlab source tree at {source} to build wheels from; pass --opt wheelhouse=DIR")
    path = Path(state.workdir) / "wheelhouse"
    shutil.rmtree(path, ignore_errors=True)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                                                "-w", str(path), f"{source}[fuse]", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        tail = " | ".join(out.decode(errors="replace").strip().splitlines()[-3:])
        raise LabError(f"building the wheelhouse for the hosts failed (pip wheel exited {proc.returncode}): {tail}")
    return path


def _bundle(script: Path, wheels: Path) -> bytes:
    """provision.sh and the wheelhouse as one tar (one SFTP upload per host instead of dozens)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(script, arcname="provision.sh")
        for whl in sorted(wheels.glob("*.whl")):
            tar.add(whl, arcname=f"wheelhouse/{whl.name}")
    return buf.getvalue()


async def provision(lab: SshLab, state: LabState) -> None:
    """Upload vagrant/provision.sh + a wheelhouse to every host over SFTP and run it there, unchanged."""
    script = Path(state.opts.get("provision_script") or _checkout() / "vagrant" / "provision.sh")
    if not script.exists():
        raise LabError(f"provision script {script} not found; pass --opt provision_script=PATH")
    bundle = Path(state.workdir) / "provision.tar"
    bundle.write_bytes(await asyncio.to_thread(_bundle, script, await wheelhouse(state)))

    async def one(host: Host) -> None:
        remote = lab.remote(host)
        user = lab.specs[host].user
        await remote.run(f"rm -rf {UPLOAD_DIR} && mkdir -p {UPLOAD_DIR} && chown {user} {UPLOAD_DIR}")
        await remote.put(str(bundle), f"{UPLOAD_DIR}/provision.tar")
        r = await remote.run(f"cd {UPLOAD_DIR} && tar xf provision.tar && sh provision.sh --wheelhouse {UPLOAD_DIR}/wheelhouse",
                             check=False, timeout=600)
        log = Path(state.workdir) / "hosts" / host / "provision.log"
        log.write_text(r.stdout + r.stderr)
        if r.exit_status != 0:
            tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-3:])
            raise LabError(f"provisioning {host} failed (exit {r.exit_status}, log {log}): {tail}")

    try:
        async with asyncio.TaskGroup() as tg:
            for host in lab.hosts:
                tg.create_task(one(host))
    except* LabError as group:
        raise LabError("; ".join(str(e) for e in group.exceptions)) from None


async def attach(state: LabState) -> ContainersLab:
    """The lab, with hosts an interrupted run left frozen thawed and hosts it left powered off booted."""
    listed = await sh("ip netns list", check=False)
    machines = hosts(state)
    gone = [h.netns for h in machines if not re.search(rf"^{h.netns}\b", listed, re.M)
            or not (h.root / "etc" / "hostname").exists()]
    if gone:
        raise LabError(f"containers lab {state.name!r} is recorded but {', '.join(gone)} are gone; "
                       f"run `raftlab lab down --name {state.name}` and up again")
    lab = ContainersLab(state)
    try:
        for h in machines:
            if h.frozen():
                await h.thaw()
            if h.pid1() is None:
                await lab.power_on(h.name)
    except BaseException:
        await lab.close()
        raise
    return lab


async def down(state: LabState) -> None:
    try:
        lay = layout(state)
    except LabError:  # bad options: `up` refused them before making anything
        shutil.rmtree(state.workdir, ignore_errors=True)
        return
    problems: list[str] = []
    for i, h in enumerate(hosts(state), 1):
        problems += await h.remove()
        pids = (await sh(f"ip netns pids {h.netns} 2>/dev/null", check=False)).split()
        if pids:
            await sh(f"kill -9 {' '.join(pids)}", check=False)
        await sh(f"ip netns del {h.netns} 2>/dev/null", check=False)
        await sh(f"ip link del {lay['prefix']}v{i} 2>/dev/null", check=False)
    await sh(f"ip link del {lay['bridge']} 2>/dev/null", check=False)
    if problems:
        raise LabError(f"containers lab {state.name!r}: could not remove {', '.join(problems)}; "
                       f"work dir {state.workdir} kept")
    root = Path(state.workdir)
    if root.exists():
        await asyncio.to_thread(subprocess.run, ["rm", "-rf", "--one-file-system", str(root)], check=False)


async def status(state: LabState) -> dict[str, Any]:
    lay = layout(state)
    listed = await sh("ip netns list", check=False)
    out = {}
    for h in hosts(state):
        out[h.name] = {"netns": h.netns, "exists": bool(re.search(rf"^{h.netns}\b", listed, re.M)),
                       "address": h.address, "mode": h.mode, "pid1": h.pid1(), "frozen": h.frozen()}
    return {"bridge": lay["bridge"], "rootfs": str(lay["rootfs"]), "hosts": out}
