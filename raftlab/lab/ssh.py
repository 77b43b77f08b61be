"""SSH hosts: a paramiko ``Remote``, an iptables ``Net`` in raftlab's own chain, and the ``ssh`` lab.

The same code reaches Vagrant VMs, containers, network namespaces and real machines.

* ``SshRemote`` keeps one connection per host (reconnecting when it drops) and runs paramiko's
  blocking calls in ``asyncio.to_thread``. Commands run with ``sh -c``; for a user other than
  root they run under ``sudo -n`` (passwordless sudo is required, as on Vagrant boxes). Host keys
  are not checked: lab hosts are recreated often and are reached on private networks.
  A host that cannot be reached raises ``LabError`` naming it, its address and the cause.
* ``IptablesNet`` (``raftlab.lab.iptables``) puts every rule in the ``RAFTLAB`` chain, jumped to from INPUT, so healing
  flushes only raftlab's rules and never the host's own firewall (jepsen-io/jepsen#600).
  ``partition(grudge)`` makes each host drop packets from the hosts it holds a grudge against
  (which cuts TCP both ways); it replaces any earlier partition.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paramiko

from raftlab.lab import LabError, LabState, RemoteError
from raftlab.lab.iptables import IptablesNet
from raftlab.lab.nodesfile import NodeSpec, read
from raftlab.protocols import Host, RunResult

CONNECT_TIMEOUT = 10.0


class SshRemote:
    """Runs commands and moves files on one host over SSH (paramiko, in worker threads)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.host = spec.name
        self._client: paramiko.SSHClient | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        s = self.spec
        try:
            client.connect(s.address, port=s.port, username=s.user, key_filename=s.key, timeout=CONNECT_TIMEOUT,
                           banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT,
                           look_for_keys=s.key is None, allow_agent=s.key is None)
        except (OSError, paramiko.SSHException) as e:
            client.close()
            raise LabError(f"cannot reach host {s.name} at {s.user}@{s.address}:{s.port}: "
                           f"{e.__class__.__name__}: {e}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        return client

    async def client(self) -> paramiko.SSHClient:
        async with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                if self._client is not None:
                    self._client.close()
                self._client = await asyncio.to_thread(self._connect)
            return self._client

    def wrap(self, cmd: str) -> str:
        if self.spec.user == "root":
            return cmd
        return f"sudo -n sh -c {shlex.quote(cmd)}"

    async def run(self, cmd: str, *, stdin: str | None = None, check: bool = True,
                  timeout: float | None = None) -> RunResult:
        """Run ``cmd``; background processes must redirect stdout/stderr or the channel stays open
        until they exit. ``timeout`` (seconds without output) bounds the wait."""
        client = await self.client()
        result = await asyncio.to_thread(self._run, client, self.wrap(cmd), stdin, timeout)
        if check and result.exit_status != 0:
            raise RemoteError(self.host, cmd, result.exit_status, result.stderr)
        return result

    def _run(self, client: paramiko.SSHClient, cmd: str, stdin: str | None, timeout: float | None) -> RunResult:
        try:
            chan_in, chan_out, chan_err = client.exec_command(cmd, timeout=timeout)
            if stdin is not None:
                chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            out = chan_out.read()
            err = chan_err.read()
            status = chan_out.channel.recv_exit_status()
        except TimeoutError:
            raise LabError(f"{self.host}: `{cmd}` did not finish within {timeout}s "
                           "(a background process still holding its output?)") from None
        except (OSError, paramiko.SSHException, EOFError) as e:
            raise LabError(f"lost host {self.host} ({self.spec.address}) while running `{cmd}`: {e}") from None
        return RunResult(exit_status=status, stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"))

    async def put(self, local: str, remote: str) -> None:
        client = await self.client()
        await asyncio.to_thread(self._sftp, client, "put", local, remote)

    async def get(self, remote: str, local: str) -> None:
        client = await self.client()
        await asyncio.to_thread(self._sftp, client, "get", remote, local)

    def _sftp(self, client: paramiko.SSHClient, how: str, a: str, b: str) -> None:
        try:
            with client.open_sftp() as sftp:
                if how == "put":
                    sftp.put(a, b)
                else:
                    Path(b).parent.mkdir(parents=True, exist_ok=True)
                    sftp.get(a, b)
        except (OSError, paramiko.SSHException) as e:
            raise LabError(f"{self.host}: cannot {how} {a} -> {b}: {e}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SshLab:
    """A lab of SSH hosts from a nodes file; also the base of the netns, containers and vagrant labs."""

    def __init__(self, specs: Sequence[NodeSpec], *, kind: str = "ssh", iptables: str = "iptables -w") -> None:
        self.kind = kind
        if not specs:
            raise LabError("an SSH lab needs at least one host")
        self.specs = {s.name: s for s in specs}
        self._remotes = {s.name: SshRemote(s) for s in specs}
        self._net = IptablesNet(self._remotes, {s.name: s.internal for s in specs}, iptables=iptables)

    @property
    def hosts(self) -> Sequence[Host]:
        return list(self.specs)

    def _spec(self, host: Host) -> NodeSpec:
        try:
            return self.specs[host]
        except KeyError:
            raise LabError(f"unknown host {host!r} (this lab has {', '.join(self.specs)})") from None

    def remote(self, host: Host) -> SshRemote:
        self._spec(host)
        return self._remotes[host]

    @property
    def net(self) -> IptablesNet:
        return self._net

    def endpoint(self, src: Host | None, dst: Host, port: int) -> tuple[str, int]:
        return (self._spec(dst).internal, port)

    def node_dir(self, host: Host) -> str:
        return self._spec(host).dir

    def address(self, host: Host) -> str:
        return self._spec(host).internal

    def python(self, host: Host) -> str:
        return self._spec(host).python

    async def check(self) -> None:
        """Reach every host once, so an unreachable one is named before anything runs."""
        async with asyncio.TaskGroup() as tg:
            for r in self._remotes.values():
                tg.create_task(r.run("true"))

    async def close(self) -> None:
        for r in self._remotes.values():
            r.close()


def _specs(state: LabState) -> list[NodeSpec]:
    path = state.opts.get("nodes_file")
    if not path:
        raise LabError("the ssh lab needs a nodes file (--nodes-file FILE; format in docs/labs.md)")
    specs = read(path)
    if len(specs) < state.nodes:
        raise LabError(f"{path} lists {len(specs)} hosts, fewer than the {state.nodes} asked for")
    return specs[: state.nodes]


async def up(state: LabState) -> None:
    lab = SshLab(_specs(state))
    try:
        await _check_all(lab)
    finally:
        await lab.close()


async def _check_all(lab: SshLab) -> None:
    try:
        await lab.check()
    except* LabError as group:
        raise LabError("; ".join(str(e) for e in group.exceptions)) from None


async def attach(state: LabState) -> SshLab:
    return SshLab(_specs(state))


async def down(state: LabState) -> None:
    """Remove raftlab's chain on every reachable host (the hosts themselves are not ours)."""
    try:
        lab = SshLab(_specs(state))
    except LabError:
        return
    try:
        await lab.net.remove()
    except* LabError:
        pass
    finally:
        await lab.close()


async def status(state: LabState) -> dict[str, Any]:
    lab = SshLab(_specs(state))
    hosts: dict[str, Any] = {}
    try:
        for host in lab.hosts:
            try:
                r = await lab.remote(host).run("hostname", check=False)
                hosts[host] = {"reachable": True, "hostname": r.stdout.strip()}
            except LabError as e:
                hosts[host] = {"reachable": False, "error": str(e)}
    finally:
        await lab.close()
    return {"hosts": hosts}

