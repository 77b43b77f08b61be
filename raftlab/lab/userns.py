"""The local lab's address mode: one network namespace per host, inside one user namespace, no root.

Why: some systems need every member to be known by one address that all peers agree on (etcd
derives its member and cluster IDs from the advertised peer URLs), so the per-link proxy of
``raftlab.lab.proxy`` cannot partition them. Cutting traffic by source and destination address
needs a firewall, and a firewall needs ``CAP_NET_ADMIN``, which an unprivileged user has inside a
user namespace of its own (``unshare -r``, Linux >= 3.8 with unprivileged user namespaces on).
One shared network namespace is not enough either: a connection between two local addresses
takes its destination as its source address, so every host must have its own stack.

Layout (all inside one user namespace, invisible to the rest of the machine, so two labs never
collide whatever addresses they use):

* a hub network namespace, held by ``unshare -Urn sleep`` (its pid is the handle), with the bridge
  ``rlsbr0`` at ``10.81.0.254/24`` and the gateway on ``WORKDIR/gateway.sock`` (below);
* host ``nI`` is a network namespace of its own, held by a ``sleep`` made with ``unshare -n``
  from the hub, with ``eth0`` at ``10.81.0.I/24`` whose veth peer ``rlsvI`` is on the bridge;
* commands for ``nI`` run as ``nsenter -t PID -U -n --preserve-credentials sh -c CMD``; the
  process table and file system are the machine's own, so pids, pid files and signals work as
  in the plain local lab;
* a partition is iptables ``DROP`` rules on ``INPUT`` in each host's namespace, by source
  address (``IptablesNet``, as on SSH hosts): it cuts exactly the named links, both ways.

The gateway is the control machine's way in: the harness cannot enter the namespaces, but unix
sockets are named in the file system, which namespaces do not split. It runs in the hub as
``python -m raftlab.lab.userns SOCKET``; a connection starts with one header line
``ADDRESS PORT\n``, the gateway connects there from the hub (which reaches every host over the
bridge and is never partitioned) and copies bytes both ways until either side closes. A refused
or failed connect closes the unix connection at once with nothing sent.

The holders' pids are written to ``WORKDIR/userns.pids``; ``stop()`` kills them and the gateway.
Node processes keep their namespace alive after that, so the lab's ``down``/``sweep`` (and every
DB's teardown) still kill them by pid file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from raftlab.lab import LabError
from raftlab.protocols import Host

SUBNET = "10.81.0"
BRIDGE = "rlsbr0"
PIDS_FILE = "userns.pids"
NEEDS = ("unshare", "nsenter", "ip", "iptables")


def address(hosts: Sequence[Host], host: Host) -> str:
    return f"{SUBNET}.{list(hosts).index(host) + 1}"


def enter(pid: int, cmd: str) -> list[str]:
    """The argv that runs ``cmd`` with ``sh -c`` in the network namespace held by ``pid``."""
    return ["nsenter", "-t", str(pid), "-U", "-n", "--preserve-credentials", "sh", "-c", cmd]


async def _run(argv: list[str], what: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise LabError(f"local lab (address mode): {what} failed (exit {proc.returncode}): "
                       f"{err.decode(errors='replace').strip() or out.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def _holder(argv: list[str]) -> asyncio.subprocess.Process:
    """Start a process that only holds a namespace; returns once it is in it (``argv`` execs, so
    the printed pid is the process's own)."""
    proc = await asyncio.create_subprocess_exec(*argv, "sh", "-c", "echo $$; exec sleep 2147483647",
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    if not line.strip().isdigit():
        err = (await proc.stderr.read()).decode(errors="replace").strip() if proc.stderr else ""
        raise LabError(f"local lab (address mode): cannot create a namespace with `{' '.join(argv)}`: "
                       f"{err or 'no pid printed'} (are unprivileged user namespaces enabled? "
                       "see /proc/sys/user/max_user_namespaces)")
    return proc


class HostNamespaces:
    """The hub and one network namespace per host; ``start`` makes them, ``stop`` removes the holders."""

    def __init__(self, workdir: Path, hosts: Sequence[Host]) -> None:
        self.workdir = workdir
        self.hosts = list(hosts)
        self.hub = 0
        self.pids: dict[Host, int] = {}
        self.gateway: asyncio.subprocess.Process | None = None
        self._holders: list[asyncio.subprocess.Process] = []

    @property
    def gateway_socket(self) -> str:
        return str(self.workdir / "gateway.sock")

    def address(self, host: Host) -> str:
        return address(self.hosts, host)

    async def start(self) -> None:
        missing = [b for b in NEEDS if shutil.which(b) is None]
        if missing:
            raise LabError(f"the local lab's address mode needs {', '.join(missing)} "
                           "(Debian: util-linux iproute2 iptables); use --lab-opt net=proxy otherwise")
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._holders.append(await _holder(["unshare", "-U", "-r", "-n", "--"]))
        self.hub = self._holders[-1].pid
        self._record()
        await _run(enter(self.hub, f"ip link set lo up && ip link add {BRIDGE} type bridge && "
                                   f"ip addr add {SUBNET}.254/24 dev {BRIDGE} && ip link set {BRIDGE} up"),
                   "creating the bridge")
        for i, host in enumerate(self.hosts, 1):
            self._holders.append(await _holder(["nsenter", "-t", str(self.hub), "-U", "-n", "--preserve-credentials",
                                                "unshare", "-n", "--"]))
            pid = self._holders[-1].pid
            self.pids[host] = pid
            self._record()
            await _run(enter(self.hub, f"ip link add rlsv{i} type veth peer name eth0 netns {pid} && "
                                       f"ip link set rlsv{i} master {BRIDGE} up"), f"linking {host}")
            await _run(enter(pid, f"ip link set lo up && ip addr add {SUBNET}.{i}/24 dev eth0 && "
                                  "ip link set eth0 up"), f"addressing {host}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.gateway_socket)
        gw = [sys.executable, "-m", "raftlab.lab.userns", self.gateway_socket]
        self.gateway = await asyncio.create_subprocess_exec(
            *enter(self.hub, " ".join(shlex.quote(a) for a in ["exec", *gw])), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        assert self.gateway.stdout is not None and self.gateway.stderr is not None
        if (await asyncio.wait_for(self.gateway.stdout.readline(), 15)).strip() != b"ready":
            err = (await asyncio.wait_for(self.gateway.stderr.read(), 5)).decode(errors="replace").strip()
            raise LabError(f"local lab (address mode): the gateway did not start: {err.splitlines()[-1:] or 'no output'}")
        self._record()

    def _record(self) -> None:
        pids = [self.hub, *self.pids.values(), *([self.gateway.pid] if self.gateway else [])]
        (self.workdir / PIDS_FILE).write_text(" ".join(str(p) for p in pids if p) + "\n")

    async def stop(self) -> None:
        if self.gateway is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.gateway.pid, signal.SIGKILL)
            await self.gateway.wait()
            self.gateway = None
        kill_recorded(self.workdir)
        for holder in self._holders:
            with contextlib.suppress(ProcessLookupError):
                holder.kill()
            await holder.wait()
        self._holders.clear()
        self.pids.clear()
        self.hub = 0

    def run_argv(self, host: Host, cmd: str) -> list[str]:
        return enter(self.pids[host], cmd)


def kill_recorded(workdir: Path) -> list[int]:
    """Kill the namespace holders (and gateway) recorded under ``workdir``; the pids that were alive."""
    path = workdir / PIDS_FILE
    try:
        pids = [int(p) for p in path.read_text().split()]
    except (OSError, ValueError):
        return []
    killed = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"sleep" not in cmdline and b"raftlab.lab.userns" not in cmdline:
            continue  # a recycled pid: not ours
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    path.unlink(missing_ok=True)
    return killed


# --- the gateway (runs inside the hub) -----------------------------------------------------

HEADER_LIMIT = 128
"""Bytes a header line may take (``255.255.255.255 65535`` is 21)."""


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
        address, port = line.decode().split()
        if len(line) > HEADER_LIMIT:
            raise ValueError("header too long")
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(address, int(port)), 5)
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_copy(reader, up_writer))
            tg.create_task(_copy(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def serve(path: str) -> None:
    server = await asyncio.start_unix_server(_serve, path)
    print("ready", flush=True)  # the lab waits for this line before using the socket
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1]))
