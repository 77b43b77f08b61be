"""etcd as a system under test (``--system etcd``): a system raftlab did not write, built in.

``EtcdDB`` runs one ``etcd`` member per host (the binary on the host's PATH, or
``--system-opt etcd-bin=PATH``; Debian's ``etcd-server`` is 3.4) through the host's ``Remote``:

* member ``nI`` listens for peers on ``address(nI):base_port+2i`` and for clients on
  ``address(nI):base_port+2i+1``. etcd derives member and cluster IDs from the advertised peer
  URLs, so every member must be known by one address that all agree on: ``lab.address(host)``.
  On the local lab that needs the address mode (``LAB_OPTS`` asks for ``net=ns``), where
  partitions are iptables rules by address; the proxy mode cannot partition etcd and is refused;
* files live in ``node_dir(host)``: ``data/``, ``etcd.log`` (the member's stdout and stderr) and
  ``etcd.pid``; ``setup`` wipes them and starts the member; ``start`` is a no-op on a running
  member and otherwise starts it on its data, returning once it answers its status endpoint;
  ``kill`` is SIGKILL and waits for the pid to go; ``pause``/``resume`` SIGSTOP/SIGCONT;
* ``primaries`` asks every member for its status and returns the leader that the member with the
  highest raft term names.

``EtcdClient`` speaks etcd's v3 API through the JSON gateway etcd serves on its client port
(``/v3/kv/range``, ``put``, ``txn``, ``/v3/maintenance/status``) with a small HTTP/1.1 client on
asyncio streams: no dependency, and a timeout cancels a request (a thread-based client cannot be
cancelled, and a pool of threads would queue ten workers behind two cores). Each worker talks to
its own host's member, as a client that prefers its nearest replica does. Reads are linearizable
unless ``--system-opt serializable=1``, which serves them from the member's local state (stale on a
cut-off member: the register workload catches it).

Errors are mapped as Jepsen's etcd client does (``jepsen.etcd.client/with-errors``): a read that
fails in any way is ``fail`` (it changed nothing); a request that was never sent (connect refused
or timed out), or that etcd refused before proposing (``too many requests``, ``not capable``,
``no leader``, a compacted revision) is ``fail``; anything else after sending (a timeout, a lost
connection, ``request timed out``, ``leader changed``) is ``info``, since it may have committed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shlex
import shutil
from dataclasses import replace
from typing import Any

from raftlab.history import Op, OpType
from raftlab.nemesis.process import pid_file_process, signal_pid_file
from raftlab.protocols import Host, HostLab
from raftlab.systems import System, SystemLoadError, SystemOptions, wait_serving

LAB_OPTS = {"net": "ns"}
"""Lab options this system wants on the local lab: one address per host (see the docstring)."""

START_TIMEOUT = 20.0
KILL_TIMEOUT = 10.0
SET_PREFIX = "set/"
DEFINITE = ("too many requests", "not capable", "no leader", "required revision has been compacted",
            "key not found", "duplicate key", "permission denied", "invalid auth token")
"""etcd errors that mean the request was refused before it could take effect."""


class DBError(Exception):
    """A member could not be set up, started or stopped; the message names the host and why."""


class NotSent(Exception):
    """The request never left: the connection could not be made (definite)."""


class Lost(Exception):
    """The request was sent but no answer came (a timeout or a closed connection: indefinite)."""


class EtcdError(Exception):
    """etcd answered with an error (``message`` is etcd's own words)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)

    @property
    def definite(self) -> bool:
        return any(word in str(self) for word in DEFINITE)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode(errors="replace")


def _decode(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


class Gateway:
    """One keep-alive HTTP/1.1 connection to a member's JSON gateway; ``post`` is one request."""

    def __init__(self, address: str, port: int, timeout: float) -> None:
        self.address = address
        self.port = port
        self.timeout = timeout
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer; raises NotSent, Lost or EtcdError."""
        if self._conn is None:
            try:
                self._conn = await asyncio.wait_for(asyncio.open_connection(self.address, self.port), self.timeout)
            except (OSError, TimeoutError) as e:
                raise NotSent(f"cannot connect to {self.address}:{self.port}: {e or type(e).__name__}") from None
        reader, writer = self._conn
        data = json.dumps(body).encode()
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.address}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            status, answer = await asyncio.wait_for(self._response(reader), self.timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            await self.close()  # a late answer would be read as the next request's
            raise Lost(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
        if status != 200:
            raise EtcdError(status, str(answer.get("error") or answer.get("message") or f"HTTP {status}"))
        return answer

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        status = int((await reader.readuntil(b"\r\n")).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        answer = json.loads(body) if body else {}
        return status, answer if isinstance(answer, dict) else {"answer": answer}

    async def close(self) -> None:
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class EtcdDB:
    """One etcd member per host; Killable, Pausable, HasPrimaries, HasLogFiles."""

    def __init__(self, lab: HostLab, options: SystemOptions) -> None:
        self.lab = lab
        self.options = options
        self.hosts = list(lab.hosts)
        self.binary = str(options.extra.get("etcd-bin") or "etcd")
        self.token = f"raftlab-{options.extra.get('seed', 0)}"

    def index(self, host: Host) -> int:
        return self.hosts.index(host)

    def peer_url(self, host: Host) -> str:
        return f"http://{self.lab.address(host)}:{self.options.base_port + 2 * self.index(host)}"

    def client_port(self, host: Host) -> int:
        return self.options.base_port + 2 * self.index(host) + 1

    def client_endpoint(self, host: Host) -> tuple[str, int]:
        return self.lab.endpoint(None, host, self.client_port(host))

    def pid_file(self, host: Host) -> str:
        return f"{self.lab.node_dir(host)}/etcd.pid"

    def log_files(self, host: Host) -> dict[str, str]:
        return {f"{self.lab.node_dir(host)}/etcd.log": "etcd.log"}

    def command(self, host: Host) -> str:
        """The shell line that starts the member detached (output to etcd.log) and prints its pid."""
        client_url = f"http://{self.lab.address(host)}:{self.client_port(host)}"
        args = [self.binary, "--name", host, "--data-dir", "data",
                "--listen-peer-urls", self.peer_url(host), "--initial-advertise-peer-urls", self.peer_url(host),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--initial-cluster", ",".join(f"{h}={self.peer_url(h)}" for h in self.hosts),
                "--initial-cluster-state", "new", "--initial-cluster-token", self.token,
                "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap"]
        nd = shlex.quote(self.lab.node_dir(host))
        # `&` applies to the member alone (no subshell holds the command's output), so $! is its pid
        return (f"cd {nd} || exit 1; nohup setsid {' '.join(shlex.quote(a) for a in args)} "
                f">> etcd.log 2>&1 < /dev/null & echo $! > etcd.pid; echo $!")

    # -- DB ------------------------------------------------------------------------------------

    async def setup(self, host: Host) -> None:
        remote = self.lab.remote(host)
        found = await remote.run(f"command -v {shlex.quote(self.binary)}", check=False)
        if found.exit_status != 0:
            raise DBError(f"{host}: no etcd binary {self.binary!r} (install etcd-server, or "
                          "--system-opt etcd-bin=PATH)")
        await self._wipe(host)
        await self.start(host)

    async def teardown(self, host: Host) -> None:
        remote = self.lab.remote(host)
        await signal_pid_file(remote, self.pid_file(host), "CONT")
        await signal_pid_file(remote, self.pid_file(host), "KILL", wait_gone=KILL_TIMEOUT)
        await self._wipe(host)

    async def _wipe(self, host: Host) -> None:
        nd = shlex.quote(self.lab.node_dir(host))
        await self.lab.remote(host).run(f"mkdir -p {nd} && cd {nd} && rm -rf data etcd.log etcd.pid")

    async def running(self, host: Host) -> int | None:
        """The member's pid if it is alive (a zombie, or a pid reused after a reboot, is not), else None."""
        return await pid_file_process(self.lab.remote(host), self.pid_file(host))

    # -- Killable ------------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        if await self.running(host) is not None:
            return
        r = await self.lab.remote(host).run(self.command(host))
        if not r.stdout.strip().isdigit():
            raise DBError(f"{host}: starting etcd printed no pid ({r.stdout.strip()!r})")
        await self._await_serving(host, int(r.stdout))

    async def _await_serving(self, host: Host, pid: int) -> None:
        async def answers() -> bool:
            return await self.status(host) is not None

        await wait_serving(self.lab, host, pid, answers, log_file=f"{self.lab.node_dir(host)}/etcd.log",
                           timeout=START_TIMEOUT, what="etcd")

    async def kill(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=KILL_TIMEOUT) is None:
            raise DBError(f"{host}: no running etcd to kill")

    # -- Pausable ------------------------------------------------------------------------------

    async def pause(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "STOP") is None:
            raise DBError(f"{host}: no running etcd to pause")

    async def resume(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT") is None:
            raise DBError(f"{host}: no running etcd to resume")

    # -- HasPrimaries --------------------------------------------------------------------------

    async def status(self, host: Host, timeout: float = 0.5) -> dict[str, Any] | None:
        """The member's own ``/v3/maintenance/status`` answer, or None if it did not answer."""
        gateway = Gateway(*self.client_endpoint(host), timeout)
        try:
            return await gateway.post("/v3/maintenance/status", {})
        except (NotSent, Lost, EtcdError):
            return None
        finally:
            await gateway.close()

    async def primaries(self) -> list[Host]:
        answers = await asyncio.gather(*(self.status(h) for h in self.hosts))
        ids = {str(a["header"]["member_id"]): h for h, a in zip(self.hosts, answers, strict=True) if a}
        named = [(int(a["header"].get("raft_term", 0)), str(a.get("leader", ""))) for a in answers if a]
        if not named:
            return []
        leader = ids.get(max(named)[1])
        return [leader] if leader is not None else []


class EtcdClient:
    """One worker's client, bound to its own host's member (see the module docstring for errors)."""

    def __init__(self, db: EtcdDB, timeout: float, *, serializable: bool, host: Host | None = None) -> None:
        self.db = db
        self.timeout = timeout
        self.serializable = serializable
        self.gateway = Gateway(*db.client_endpoint(host), timeout) if host is not None else None

    async def open(self, host: Host) -> EtcdClient:
        return EtcdClient(self.db, self.timeout, serializable=self.serializable, host=host)

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()

    async def invoke(self, op: Op) -> Op:
        if self.gateway is None:
            raise RuntimeError("invoke on a client that was not opened")
        try:
            return await self._call(self.gateway, op)
        except NotSent as e:
            return replace(op, type=OpType.FAIL, error=str(e), index=-1)
        except Lost as e:
            return replace(op, type=OpType.FAIL if op.f == "read" else OpType.INFO, error=f"no answer: {e}", index=-1)
        except EtcdError as e:
            definite = e.definite or op.f == "read"
            return replace(op, type=OpType.FAIL if definite else OpType.INFO, error=f"etcd: {e}", index=-1)

    async def _call(self, gateway: Gateway, op: Op) -> Op:
        match op.f:
            case "read" if op.key is not None:
                query: dict[str, Any] = {"key": _b64(str(op.key))}
                if self.serializable:
                    query["serializable"] = True
                kvs = (await gateway.post("/v3/kv/range", query)).get("kvs") or []
                value = _decode(_unb64(kvs[0]["value"])) if kvs else None
                return replace(op, type=OpType.OK, value=value, index=-1)
            case "write":
                await gateway.post("/v3/kv/put", {"key": _b64(str(op.key)), "value": _b64(str(op.value))})
                return replace(op, type=OpType.OK, index=-1)
            case "cas":
                expected, new = op.value
                key = _b64(str(op.key))
                compare = ({"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                           if expected is None else
                           {"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(str(expected))})
                answer = await gateway.post("/v3/kv/txn", {"compare": [compare], "success": [
                    {"requestPut": {"key": key, "value": _b64(str(new))}}]})
                if not answer.get("succeeded"):  # the gateway leaves out a false field
                    return replace(op, type=OpType.FAIL, error="cas mismatch", index=-1)
                return replace(op, type=OpType.OK, index=-1)
            case "add":
                await gateway.post("/v3/kv/put", {"key": _b64(f"{SET_PREFIX}{op.value}"), "value": ""})
                return replace(op, type=OpType.OK, index=-1)
            case "read":
                query = {"key": _b64(SET_PREFIX), "range_end": _b64(SET_PREFIX[:-1] + chr(ord(SET_PREFIX[-1]) + 1)),
                         "keys_only": True}
                if self.serializable:
                    query["serializable"] = True
                kvs = (await gateway.post("/v3/kv/range", query)).get("kvs") or []
                values = sorted(int(_unb64(kv["key"])[len(SET_PREFIX):]) for kv in kvs)
                return replace(op, type=OpType.OK, value=values, index=-1)
        raise ValueError(f"the etcd client cannot run {op.f!r}")


def system(lab: HostLab, options: SystemOptions) -> System:
    if getattr(lab, "kind", None) == "local" and len({lab.address(h) for h in lab.hosts}) < len(lab.hosts):
        raise SystemLoadError("etcd needs one address per host, and this local lab shares 127.0.0.1 "
                              "(its proxy mode cannot partition etcd): use --lab-opt net=ns")
    binary = str(options.extra.get("etcd-bin") or "etcd")
    if getattr(lab, "kind", None) == "local" and shutil.which(binary) is None:
        raise SystemLoadError(f"no etcd binary {binary!r} on PATH (Debian: apt-get install etcd-server; "
                              "or --system-opt etcd-bin=PATH)")
    serializable = str(options.extra.get("serializable", "0")).lower() in ("1", "true", "yes")
    db = EtcdDB(lab, options)
    return System(name="etcd", db=db, client=EtcdClient(db, options.op_timeout, serializable=serializable))
