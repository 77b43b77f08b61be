"""The reference node as a system under test: DtkvDB (lifecycle and faults) and DtkvClient.

``DtkvDB`` runs ``raftlab node`` on every host of a lab through the host's ``Remote`` only (a
shell command line), so the same code drives the local lab, network namespaces and SSH hosts:

* host ``n<i>`` (the i-th host, from 0) uses peer port ``base_port + 2i`` and client port
  ``base_port + 2i + 1``, so every host can share one IP (the local lab);
* each node reaches each peer at ``lab.endpoint(self, peer, peer_port)`` (a partitionable proxy in
  the local lab); clients reach nodes at ``lab.endpoint(None, host, client_port)``;
* files live in ``lab.node_dir(host)``: ``data/`` (WAL, meta), ``node.log``, ``node.out``
  (stdout/stderr) and ``node.pid``, written by the node itself;
* ``setup`` wipes everything and starts the node detached (``nohup setsid ... &``), then waits
  until it answers on its client port, or raises ``StartError`` (``wait_serving``) naming the host and the node's last
  output; ``teardown`` kills it (SIGCONT first, in case it is paused) and wipes its files;
* ``kill`` is SIGKILL to the pid in the pid file and returns only once that pid is gone;
  ``start`` restarts a dead node on its data; ``pause``/``resume`` are SIGSTOP/SIGCONT;
* ``primaries`` asks every node for its status and returns the leader of the highest term;
* snapshots: campaigns run the nodes with small snapshot intervals, so every campaign crosses
  several snapshots, compactions and (after kills and partitions) InstallSnapshots, as Jepsen's
  etcd test runs with ``--snapshot-count 100``: ``--system-opt snapshot-entries=N`` (default
  100; 0 turns snapshots off), ``snapshot-margin=M`` (default 20) and ``wal-segment-bytes=B``
  (default 16 KiB, so compaction has whole segments to delete). Snapshot files are
  ``data/snapshot-*.snap`` (impl/storage/snapshot.py), WAL segments ``data/wal/*.seg``.
* several Raft groups (impl/groups.py): ``--system-opt groups=N`` starts every node with
  ``--groups N``, and ``group=G`` (default 0) is the group the campaign tests: its clients,
  status (primaries, digests), membership changes, wipes (``node repair --group G``) and file
  faults (``data/groups/G/``) all address G, while the other groups run beside it on the same
  processes and ports (they share every kill, pause and partition).
* both ports bind the host's lab address (``lab.address``: 127.0.0.1 on the local lab), never
  0.0.0.0, and the nodes authenticate: each ``DtkvDB`` makes a fresh cluster key, writes it to
  ``cluster.key`` (mode 0600) in every node's directory at setup and passes ``--secret-file``;
  its clients use the read-write key derived from it (``client_key``).

``DtkvClient`` maps the workloads' ops onto a ``KvClient`` (values are ints stored as decimal
text; the lock, watch and ttl workloads' ops are in ``dtkv_leases.py``): ``DefiniteError`` becomes ``fail``, ``IndeterminateError`` (or any other surprise) ``info``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from raftlab.history import Op, OpType
from raftlab.impl.client import CasMismatch, DefiniteError, IndeterminateError, KeyNotFound, KvClient
from raftlab.impl.groups import GROUPS_DIR, MAX_GROUPS
from raftlab.impl.net.auth import encode_key, new_cluster_key
from raftlab.nemesis.process import pid_file_process, signal_pid_file
from raftlab.protocols import Host, HostLab
from raftlab.systems import System, SystemLoadError, SystemOptions, wait_serving
from raftlab.systems.dtkv_leases import LEASE_FS, LeaseOps

START_TIMEOUT = 15.0
_ENTRY = "import sys; sys.argv[0] = 'raftlab'; from raftlab.cli import main; main()"
KILL_TIMEOUT = 10.0
MEMBER_TIMEOUT = 10.0  # a membership change (enter and leave) completes within this
SET_DIR = "set"
KEY_FILE = "cluster.key"
# campaign defaults: small, so a run of a minute crosses several snapshots
SNAPSHOT_OPTS = {"snapshot-entries": 100, "snapshot-margin": 20, "wal-segment-bytes": 16 * 1024}


def group_args(extra: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """The node flags and the tested group of ``--system-opt groups=N group=G`` (ValueError names a bad one)."""
    try:
        groups, group = int(extra.get("groups", 1)), int(extra.get("group", 0))
    except (TypeError, ValueError):
        raise ValueError("--system-opt groups=N and group=G take whole numbers") from None
    if not 1 <= groups <= MAX_GROUPS or not 0 <= group < groups:
        raise ValueError(f"--system-opt groups={groups} group={group}: need 1 <= groups <= {MAX_GROUPS} and "
                         "0 <= group < groups")
    return (("--groups", str(groups)) if groups > 1 else ()), group


def snapshot_args(extra: dict[str, Any]) -> tuple[str, ...]:
    """Node flags for the snapshot options of ``--system-opt`` (ValueError names a bad one)."""
    args: list[str] = []
    for key, default in SNAPSHOT_OPTS.items():
        raw = extra.get(key, default)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"--system-opt {key}={raw!r}: expected a whole number") from None
        if value < 0 or (key == "wal-segment-bytes" and value < 4096):
            raise ValueError(f"--system-opt {key}={value}: must be >= {4096 if key == 'wal-segment-bytes' else 0}")
        args += [f"--{key}", str(value)]
    return tuple(args)


class DBError(Exception):
    """A node could not be set up, started or stopped; the message names the host and why."""


def _encode(value: Any) -> bytes:
    return str(value).encode()


def _decode(raw: bytes | None) -> int | str | None:
    if raw is None:
        return None
    text = raw.decode(errors="replace")
    try:
        return int(text)
    except ValueError:
        return text


async def _answers(address: str, port: int) -> bool:
    """Whether something accepts connections at address:port."""
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class DtkvDB:
    """``raftlab node`` on every host of ``lab``; Killable, Pausable, HasPrimaries, HasLogFiles, HasStartEnv,
    HasDataFiles, Reconfigurable, ShowsMembership."""

    def __init__(self, lab: HostLab, options: SystemOptions, *, seed: int = 0, group: int = 0) -> None:
        self.lab = lab
        self.options = options
        self.seed = seed
        self.group = group  # the Raft group under test (--system-opt group=G)
        self.hosts = list(lab.hosts)
        self.start_env: dict[Host, dict[str, str]] = {}
        self.cluster_key = new_cluster_key()  # a credential, not a test choice: never from the seed
        self.client_key = self.cluster_key.derive("rw")

    def set_start_env(self, host: Host, env: Mapping[str, str]) -> None:
        """HasStartEnv: the node's next starts run with ``env`` (the clock faults' libfaketime)."""
        self.start_env[host] = dict(env)

    # -- layout --------------------------------------------------------------------------------

    def index(self, host: Host) -> int:
        try:
            return self.hosts.index(host)
        except ValueError:
            raise DBError(f"unknown host {host!r} (the lab has {', '.join(self.hosts)})") from None

    def peer_port(self, host: Host) -> int:
        return self.options.base_port + 2 * self.index(host)

    def client_port(self, host: Host) -> int:
        return self.options.base_port + 2 * self.index(host) + 1

    def client_endpoint(self, host: Host) -> tuple[str, int]:
        return self.lab.endpoint(None, host, self.client_port(host))

    def node_dir(self, host: Host) -> str:
        return self.lab.node_dir(host)

    def data_dir(self, host: Host) -> str:
        return f"{self.node_dir(host)}/data"

    def data_files(self, host: Host) -> dict[str, str]:
        """HasDataFiles: the tested group's WAL segments (impl/storage/wal.py) and snapshot files, for
        the file faults."""
        data = self.data_dir(host) + (f"/{GROUPS_DIR}/{self.group}" if self.group else "")
        return {"wal": f"{data}/wal/*.seg", "snapshot": f"{data}/snapshot-*.snap"}

    def kv(self, endpoints: list[tuple[str, int]], timeout: float) -> KvClient:
        """A client of the tested group."""
        return KvClient(endpoints, timeout=timeout, key=self.client_key, group=self.group)

    def pid_file(self, host: Host) -> str:
        return f"{self.node_dir(host)}/node.pid"

    def log_files(self, host: Host) -> dict[str, str]:
        nd = self.node_dir(host)
        return {f"{nd}/node.log": "node.log", f"{nd}/node.out": "node.out"}

    def command(self, host: Host) -> str:
        """The shell command line that runs the node on ``host`` (detached, output to node.out)."""
        me = self.index(host) + 1
        peers = []
        for i, other in enumerate(self.hosts, start=1):
            if other == host:
                peers.append(f"{i}={self.lab.address(host)}:{self.peer_port(host)}")
            else:
                address, port = self.lab.endpoint(host, other, self.peer_port(other))
                peers.append(f"{i}={address}:{port}")
        nd = self.node_dir(host)
        python = self.lab.python(host)
        args = ["node", "--id", str(me), "--data-dir", f"{nd}/data", "--peers", ",".join(peers),
                "--client-port", str(self.client_port(host)), "--client-host", self.lab.address(host),
                "--log-file", f"{nd}/node.log", "--pid-file", f"{nd}/node.pid", "--secret-file", f"{nd}/{KEY_FILE}",
                "--seed", str((self.seed * 1000 + me) % 2**32), *self.options.node_args]
        env = [f"{k}={v}" for k, v in sorted(self.start_env.get(host, {}).items())]
        run = " ".join(shlex.quote(a) for a in [*(["env", *env] if env else []), python, "-c", _ENTRY, *args])
        # sh without job control: setsid and nohup exec in place, so $! is the node's own pid
        # `&` must apply to the node alone: a backgrounded `cd && ...` list would be a subshell
        # that holds the remote command's output open (an SSH run would never end) and whose
        # pid $! would name instead of the node's
        return (f"cd {shlex.quote(nd)} || exit 1; mkdir -p data || exit 1; "
                f"nohup setsid {run} >> node.out 2>&1 < /dev/null & echo $!")

    # -- DB ------------------------------------------------------------------------------------

    async def setup(self, host: Host) -> None:
        await self._wipe(host)
        nd = shlex.quote(self.node_dir(host))
        await self.lab.remote(host).run(f"cd {nd} && umask 077 && cat > {KEY_FILE}", stdin=encode_key(self.cluster_key))
        await self.start(host)

    async def teardown(self, host: Host) -> None:
        await self._stop(host)
        await self._wipe(host)

    async def _wipe(self, host: Host) -> None:
        nd = shlex.quote(self.node_dir(host))
        await self.lab.remote(host).run(f"mkdir -p {nd} && cd {nd} && rm -rf data node.log node.out node.pid {KEY_FILE}")

    async def _stop(self, host: Host) -> None:
        remote = self.lab.remote(host)
        await signal_pid_file(remote, self.pid_file(host), "CONT")
        await signal_pid_file(remote, self.pid_file(host), "KILL", wait_gone=KILL_TIMEOUT)

    async def running(self, host: Host) -> int | None:
        """The node's pid if it is alive (a zombie, or a pid reused after a reboot, is not), else None."""
        return await pid_file_process(self.lab.remote(host), self.pid_file(host))

    # -- Killable ------------------------------------------------------------------------------

    async def kill(self, host: Host) -> None:
        pid = await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=KILL_TIMEOUT)
        if pid is None:
            raise DBError(f"{host}: no running node to kill")
        await self.lab.remote(host).run(f"rm -f {shlex.quote(self.pid_file(host))}")

    async def start(self, host: Host) -> None:
        if await self.running(host) is not None:
            return
        # Another run's node on a shared address would answer for ours. In the local lab's address
        # mode every host is a private network namespace (and the control machine's endpoint is a
        # gateway listener that always accepts), so there is nothing to collide with or probe.
        own_stack = getattr(self.lab, "kind", None) == "local" and self.lab.address(host) != "127.0.0.1"
        for port in () if own_stack else (self.peer_port(host), self.client_port(host)):
            address, reached = self.lab.endpoint(None, host, port)
            if await _answers(address, reached):
                raise DBError(f"{host}: port {port} is already in use by another process (pick another --base-port)")
        remote = self.lab.remote(host)
        await remote.run(f"rm -f {shlex.quote(self.pid_file(host))}")
        r = await remote.run(self.command(host))
        try:
            pid = int(r.stdout.split()[-1])
        except (IndexError, ValueError):
            raise DBError(f"{host}: starting the node printed no pid ({r.stdout.strip()!r})") from None
        await self._await_listening(host, pid)

    async def _await_listening(self, host: Host, pid: int) -> None:
        async def answers() -> bool:  # a status request, not a connect: a gateway accepts any connect
            return "error" not in (await self.status(timeout=0.5, hosts=[host]))[host]

        await wait_serving(self.lab, host, pid, answers, log_file=f"{self.node_dir(host)}/node.out",
                           timeout=START_TIMEOUT, what="the node")

    # -- Pausable ------------------------------------------------------------------------------

    async def pause(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "STOP") is None:
            raise DBError(f"{host}: no running node to pause")

    async def resume(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT") is None:
            raise DBError(f"{host}: no running node to resume")

    # -- HasPrimaries --------------------------------------------------------------------------

    async def primaries(self) -> list[Host]:
        statuses = await self.status()
        leaders = [(s.get("term", 0), h) for h, s in statuses.items()
                   if s.get("role") == "leader" and "error" not in s]
        return [h for _, h in sorted(leaders, reverse=True)]

    # -- HasReplicaDigests ---------------------------------------------------------------------

    async def digests(self) -> dict[Host, dict[str, Any]]:
        return {h: s.get("digest") or {"error": s.get("error", "no digest in the status reply")}
                for h, s in (await self.status()).items()}

    async def status(self, timeout: float = 0.5, hosts: list[Host] | None = None) -> dict[Host, dict[str, Any]]:
        """Each host's own status (``{"error": ...}`` for a host that did not answer)."""
        asked = self.hosts if hosts is None else hosts
        kv = self.kv([self.client_endpoint(h) for h in asked], timeout)
        try:
            rows = await kv.status()
        finally:
            await kv.close()
        return dict(zip(asked, rows, strict=True))

    # -- Reconfigurable (nemesis/member.py, through `raftlab admin`'s requests) -----------------

    async def _membership(self) -> dict[str, Any]:
        """The configuration as a leader reports it (ids), with ``leader``: that leader's id."""
        async def ask(h: Host) -> dict[str, Any]:
            kv = self.kv([self.client_endpoint(h)], 1.0)
            try:
                return await kv.admin("membership")
            except Exception as e:  # an unreachable member answers nothing
                return {"error": str(e)}
            finally:
                await kv.close()
        rows = await asyncio.gather(*(ask(h) for h in self.hosts))
        leaders = [r for r in rows if r.get("role") == "leader"]
        if not leaders:
            raise DBError("no leader answered for the membership")
        return {**leaders[0]["membership"], "leader": leaders[0]["id"]}

    async def members(self) -> list[Host]:
        return [self.hosts[i - 1] for i in (await self._membership())["voters"]]

    async def membership(self) -> dict[str, Any]:
        """ShowsMembership: voters, learners, outgoing (while joint) and the leader, as hosts."""
        m = await self._membership()
        named = {key: [self.hosts[i - 1] for i in m[key]] for key in ("voters", "learners", "outgoing")}
        return {**named, "leader": self.hosts[m["leader"] - 1]}

    async def set_members(self, hosts: Any) -> None:
        voters = sorted(self.index(h) + 1 for h in hosts)
        kv = self.kv([self.client_endpoint(h) for h in self.hosts], MEMBER_TIMEOUT)
        try:
            await kv.admin("change", voters=voters, learners=[])
        finally:
            await kv.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MEMBER_TIMEOUT
        while loop.time() < deadline:
            with contextlib.suppress(DBError):
                m = await self._membership()
                if not m["outgoing"] and m["voters"] == voters:
                    return
            await asyncio.sleep(0.2)
        raise DBError(f"the membership did not settle on voters {voters} within {MEMBER_TIMEOUT}s")

    async def wipe(self, host: Host) -> None:
        """Kill, then `raftlab node repair --empty` (the data moves aside; the node rejoins with no
        vote until a leader caught it up), then start."""
        await self._stop(host)
        nd = self.node_dir(host)
        repair = [self.lab.python(host), "-c", _ENTRY, "node", "repair", "--empty", "--data-dir", f"{nd}/data",
                  "--id", str(self.index(host) + 1), "--group", str(self.group)]
        await self.lab.remote(host).run(" ".join(shlex.quote(a) for a in repair))
        await self.start(host)


class DtkvClient:
    """One worker's connection to the cluster, through ``KvClient`` (its own node tried first).

    Writes follow the leader (the KvClient remembers it). Reads, with ``reads="local"`` (the
    default), start afresh at the worker's own node every time, as a client that prefers its
    nearest replica does: a correct node redirects (not-leader) or confirms leadership first, a
    node that serves reads from local state answers at once, stale if it lags or is cut off.
    ``reads="leader"`` sends reads to the remembered leader like writes.
    """

    def __init__(self, db: DtkvDB, timeout: float, *, reads: str = "local",
                 endpoints: list[tuple[str, int]] | None = None) -> None:
        if reads not in ("local", "leader"):
            raise ValueError(f"reads must be local or leader, not {reads!r}")
        self.db = db
        self.timeout = timeout
        self.reads = reads
        self.endpoints = endpoints
        self.kv = db.kv(endpoints, timeout) if endpoints else None
        self.leases = LeaseOps()  # this worker's watch index and temp node

    async def open(self, host: Host) -> DtkvClient:
        mine = self.db.client_endpoint(host)
        others = [self.db.client_endpoint(h) for h in self.db.hosts if h != host]
        return DtkvClient(self.db, self.timeout, reads=self.reads, endpoints=[mine, *others])

    async def close(self) -> None:
        if self.kv is not None:
            await self.kv.close()

    async def invoke(self, op: Op) -> Op:
        if self.kv is None or self.endpoints is None:
            raise RuntimeError("invoke on a client that was not opened")
        fresh = self.reads == "local" and op.f == "read"
        kv = self.db.kv(self.endpoints, self.timeout) if fresh else self.kv
        kv.answered_by = None
        try:
            value = await self._call(kv, op)
        except CasMismatch as e:
            return self._served(kv, replace(op, type=OpType.FAIL, error=f"cas mismatch: found {_decode(e.current)!r}",
                                            index=-1))
        except DefiniteError as e:
            return self._served(kv, replace(op, type=OpType.FAIL, error=f"{type(e).__name__}: {e}", index=-1))
        except IndeterminateError as e:
            return replace(op, type=OpType.INFO, value=None, error=f"{type(e).__name__}: {e}", index=-1)
        finally:
            if fresh:
                await kv.close()
        return self._served(kv, replace(op, type=OpType.OK, value=value, index=-1))

    def _served(self, kv: KvClient, op: Op) -> Op:
        """``op`` naming the node whose reply decided it (the history's ``node``; writes follow the leader)."""
        host = next((h for h in self.db.hosts if self.db.client_endpoint(h) == kv.answered_by), None)
        return op if host is None else replace(op, extra={**(op.extra or {}), "node": host})

    async def _call(self, kv: KvClient, op: Op) -> Any:
        if op.f in LEASE_FS:
            return await self.leases.call(kv, op)
        match op.f:
            case "read" if op.key is not None:
                return _decode(await kv.get(str(op.key)))
            case "write":
                await kv.put(str(op.key), _encode(op.value))
                return op.value
            case "cas":
                expected, new = op.value
                await kv.cas(str(op.key), None if expected is None else _encode(expected), _encode(new))
                return op.value
            case "add":
                try:
                    await kv.put(f"{SET_DIR}.{op.value}", b"")
                except KeyNotFound:  # definite: the directory is missing and nothing was written
                    await kv.mkdir(SET_DIR)
                    await kv.put(f"{SET_DIR}.{op.value}", b"")
                return op.value
            case "read":
                try:
                    names = await kv.list(SET_DIR)
                except KeyNotFound:
                    return []
                return sorted(int(n) for n in names)
        return await _tree_call(kv, op)


async def _tree_call(kv: KvClient, op: Op) -> Any:
    """The tree workload's ops (workloads/tree.py): one directory ``op.key``, leaves ``key.name``."""
    d, arg = str(op.key), op.value
    match op.f:
        case "mkdir":
            await kv.mkdir(d)
        case "rmdir":
            await kv.remove(d)
        case "list":
            return sorted(await kv.list(d))
        case "put":
            await kv.put(f"{d}.{arg[0]}", _encode(arg[1]))
        case "get":
            return _decode(await kv.get(f"{d}.{arg[0]}"))
        case "cas-key":
            await kv.cas(f"{d}.{arg[0]}", None if arg[1] is None else _encode(arg[1]), _encode(arg[2]))
        case "remove":
            await kv.remove(f"{d}.{arg[0]}")
        case "batch-put":
            await kv.batch_put({f"{d}.{n}": _encode(v) for n, v in arg})
        case "batch-get":
            return [_decode(v) for v in await kv.batch_get([f"{d}.{n}" for n in arg])]
        case "batch-remove":
            await kv.batch_remove([f"{d}.{n}" for n in arg])
        case _:
            raise ValueError(f"the dtkv client cannot run {op.f!r}")
    return arg


def system(lab: HostLab, options: SystemOptions) -> System:
    try:
        groups, group = group_args(options.extra)
        options = replace(options, node_args=(*snapshot_args(options.extra), *groups, *options.node_args))
    except ValueError as e:
        raise SystemLoadError(f"dtkv: {e}") from None
    db = DtkvDB(lab, options, seed=int(options.extra.get("seed", 0)), group=group)
    return System(name="dtkv", db=db, client=DtkvClient(db, options.op_timeout,
                                                         reads=str(options.extra.get("reads", "local"))))
