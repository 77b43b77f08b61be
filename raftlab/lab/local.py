"""The local lab (the default, no root): hosts n1..nN are directories on this machine.

Commands run with asyncio subprocesses in the host's directory and files move by copying. How
hosts reach each other, and so how partitions work, is the lab option ``net``:

* ``net=proxy`` (the default): every node listens on 127.0.0.1 on its own ports and peers reach
  each other through the ``ProxyMesh``: ``endpoint(src, dst, port)`` is ``127.0.0.1:port`` for the
  control machine and for a host reaching itself, and a per-link proxy listener otherwise. Needs
  nothing; fits systems that accept a different address for a peer on each host (dtkv).
* ``net=ns`` (address mode, ``raftlab.lab.userns``): each host is its own network namespace in a
  user namespace of the lab's own (no root), with its own address ``address(host)`` that every
  peer uses, and partitions are iptables rules by source address. Commands run through
  ``nsenter``; the control machine reaches ``address:port`` through the gateway
  (``endpoint(None, dst, port)`` is a 127.0.0.1 listener). Needs unprivileged user namespaces,
  util-linux, iproute2 and iptables; fits systems whose members must agree on one address per
  member (etcd), and runs never collide on ports. The namespaces live as long as the attached lab
  (one campaign): ``close()`` removes them.

``net`` is chosen when a campaign attaches (``--lab-opt net=ns``, or the system module's
``LAB_OPTS``), not when the lab is brought up.

``down`` removes what runs left behind: it lazily unmounts FUSE mounts under the lab directory,
SIGKILLs every process named in a ``*.pid`` file under it (only when that process's command line
names the lab directory, so a recycled pid is never hit) and deletes the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftlab.lab import LabError, LabState, RemoteError
from raftlab.lab.iptables import IptablesNet
from raftlab.lab.proxy import GatewayLinks, ProxyMesh
from raftlab.lab.userns import HostNamespaces, kill_recorded
from raftlab.protocols import Host, RunResult


class LocalRemote:
    """Runs shell commands on this machine, in the host's directory (and namespace, in address mode)."""

    def __init__(self, host: Host, cwd: Path, namespaces: HostNamespaces | None = None) -> None:
        self.host = host
        self.cwd = cwd
        self.namespaces = namespaces

    async def run(self, cmd: str, *, stdin: str | None = None, check: bool = True,
                  timeout: float | None = None) -> RunResult:
        """Run ``cmd`` with ``sh -c``. Background processes must redirect their output (as over SSH),
        or the command only ends when they do; ``timeout`` (seconds) bounds the wait."""
        argv = ["sh", "-c", cmd] if self.namespaces is None else self.namespaces.run_argv(self.host, cmd)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.cwd, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(None if stdin is None else stdin.encode()), timeout)
        except TimeoutError:
            # Kill the command and everything it started in its session, so its pipes close.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.communicate(), 5)
            raise LabError(f"{self.host}: `{cmd}` did not finish within {timeout}s "
                           "(a background process still holding its output?)") from None
        result = RunResult(exit_status=proc.returncode if proc.returncode is not None else -1,
                           stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"))
        if check and result.exit_status != 0:
            raise RemoteError(self.host, cmd, result.exit_status, result.stderr)
        return result

    async def put(self, local: str, remote: str) -> None:
        await asyncio.to_thread(_copy, Path(local), self.cwd / remote)

    async def get(self, remote: str, local: str) -> None:
        await asyncio.to_thread(_copy, self.cwd / remote, Path(local))


def _copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise LabError(f"cannot copy {src}: no such file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


NETS = ("proxy", "ns")
ATTACH_OPTS = frozenset({"net"})
"""Options a campaign may set when it attaches, whatever the lab was brought up with."""


class LocalLab:
    """Hosts as directories on this machine, linked through a proxy mesh or by per-host namespaces."""

    kind = "local"

    def __init__(self, state: LabState, mesh: ProxyMesh | None, namespaces: HostNamespaces | None = None) -> None:
        self.state = state
        self._root = Path(state.workdir)
        self._mesh = mesh
        self._namespaces = namespaces
        self._gateway = GatewayLinks(namespaces.gateway_socket) if namespaces else None
        self._net: ProxyMesh | IptablesNet
        self._remotes = {h: LocalRemote(h, self._root / "hosts" / h, namespaces) for h in state.hosts}
        if namespaces is not None:
            self._net = IptablesNet(self._remotes, {h: namespaces.address(h) for h in state.hosts})
        else:
            assert mesh is not None
            self._net = mesh

    @property
    def hosts(self) -> Sequence[Host]:
        return self.state.hosts

    def _check(self, host: Host) -> None:
        if host not in self._remotes:
            raise LabError(f"unknown host {host!r} (this lab has {', '.join(self.hosts)})")

    def remote(self, host: Host) -> LocalRemote:
        self._check(host)
        return self._remotes[host]

    @property
    def net(self) -> ProxyMesh | IptablesNet:
        return self._net

    def address(self, host: Host) -> str:
        """The one address every peer reaches ``host`` at (127.0.0.1 in proxy mode: unpartitionable)."""
        self._check(host)
        return self._namespaces.address(host) if self._namespaces else "127.0.0.1"

    def endpoint(self, src: Host | None, dst: Host, port: int) -> tuple[str, int]:
        self._check(dst)
        if self._namespaces is not None:
            assert self._gateway is not None
            if src is None:
                return self._gateway.endpoint(self._namespaces.address(dst), port)
            self._check(src)
            return (self._namespaces.address(dst), port)
        if src is None or src == dst:
            return ("127.0.0.1", port)
        self._check(src)
        assert self._mesh is not None
        return self._mesh.endpoint(src, dst, port)

    def node_dir(self, host: Host) -> str:
        self._check(host)
        return str(self._root / "hosts" / host)

    def python(self, host: Host) -> str:
        return sys.executable

    async def stop_leftovers(self) -> list[str]:
        """Kill every process still working in a host directory (after teardown); what was killed."""
        found = await asyncio.to_thread(processes_under, self._root / "hosts")
        for pid, _ in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return [f"pid {pid} ({cmd[:80]})" for pid, cmd in found]

    async def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
        if self._gateway is not None:
            self._gateway.close()
        if self._namespaces is not None:
            await self._namespaces.stop()


async def up(state: LabState) -> None:
    net = state.opts.get("net", "proxy")
    if net not in NETS:
        raise LabError(f"the local lab's net must be one of {', '.join(NETS)}, not {net!r}")
    for host in state.hosts:
        (Path(state.workdir) / "hosts" / host).mkdir(parents=True, exist_ok=True)


async def attach(state: LabState) -> LocalLab:
    await up(state)  # cheap and idempotent: a removed host directory comes back
    if state.opts.get("net", "proxy") == "ns":
        namespaces = HostNamespaces(Path(state.workdir), state.hosts)
        await namespaces.start()
        return LocalLab(state, None, namespaces)
    return LocalLab(state, ProxyMesh(asyncio.get_running_loop()))


async def down(state: LabState) -> None:
    kill_recorded(Path(state.workdir))
    await asyncio.to_thread(sweep, Path(state.workdir))
    shutil.rmtree(state.workdir, ignore_errors=True)


async def status(state: LabState) -> dict[str, Any]:
    root = Path(state.workdir)
    return {"hosts": {h: {"dir": str(root / "hosts" / h), "exists": (root / "hosts" / h).is_dir(),
                          "running": [p for p, _ in _pid_files(root / "hosts" / h)]} for h in state.hosts}}


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them)."""
    prefix = str(directory.resolve())
    found = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) > 1:
            point = parts[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _pid_files(directory: Path) -> list[tuple[int, Path]]:
    """Live processes named by ``*.pid`` files under ``directory`` whose command line names it."""
    if not directory.is_dir():
        return []
    marker = str(directory.resolve())
    found = []
    for pid_file in directory.rglob("*.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, ValueError, IndexError):
            continue
        if marker in cmdline or cwd == marker or cwd.startswith(marker + "/"):
            found.append((pid, pid_file))
    return found


def processes_under(directory: Path) -> list[tuple[int, str]]:
    """Processes (pid, command line) whose working directory is ``directory`` or below it.

    Every node a DB starts in the local lab runs in its host directory, so this finds them even
    before they have written a pid file (a Ctrl-C during start); another user's or lab's
    processes never work there.
    """
    marker = str(directory.resolve())
    found = []
    mine = _ancestors()  # never this process or the shell that started it, wherever they stand
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            if cwd != marker and not cwd.startswith(marker + "/"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        found.append((int(entry.name), cmdline))
    return found


def _ancestors() -> set[int]:
    pids = set()
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def sweep(directory: Path) -> None:
    """Unmount FUSE layers and kill processes a lab left under ``directory``.

    Unmounting comes first: a process blocked on a paused FUSE disk ignores SIGKILL until its
    request is answered (LAB-NOTES), and a lazy unmount aborts the request.
    """
    for point in mounts_under(directory):
        for tool in ("fusermount3", "fusermount"):
            if shutil.which(tool):
                os.system(f"{tool} -u -z '{point}' >/dev/null 2>&1")
                break
        if point in mounts_under(directory) and shutil.which("umount"):
            os.system(f"umount -l '{point}' >/dev/null 2>&1")
    for pid in {p for p, _ in _pid_files(directory)} | {p for p, _ in processes_under(directory)}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise LabError(f"cannot kill pid {pid} left under {directory}: {e}") from None
