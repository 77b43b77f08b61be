"""A tiny user system plugged in with ``--system toysys``: the example of docs/campaigns.md.

Every host runs ``toyserver`` (a JSON-lines TCP key-value server that fsyncs its state file
before answering a write). In ``single`` mode every client talks to n1's server: one copy,
durable, so linearizable. In ``split`` mode each client talks to its own host's server: five
independent copies, so a read on one host misses a write made on another (a violation the
checker must find). Real processes, real signals: kill, pause and primaries work as for dtkv.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from raftlab.nemesis.process import pid_file_process, signal_pid_file

from raftlab.history import Op, OpType
from raftlab.protocols import Host, HostLab
from raftlab.systems import System, SystemOptions

SERVER = (Path(__file__).resolve().parents[1] / "jsonkv_server.py").read_text()


class ToyDB:
    def __init__(self, lab: HostLab, options: SystemOptions) -> None:
        self.lab = lab
        self.hosts = list(lab.hosts)
        self.base = options.base_port
        self.mode = options.extra.get("mode", "single")
        self.start_delay = float(options.extra.get("start-delay", 0))  # a slow start, for Ctrl-C tests

    def port(self, host: Host) -> int:
        return self.base + self.hosts.index(host)

    def dir(self, host: Host) -> str:
        return self.lab.node_dir(host)

    def pid_file(self, host: Host) -> str:
        return f"{self.dir(host)}/toy.pid"

    def log_files(self, host: Host) -> dict[str, str]:
        return {f"{self.dir(host)}/toy.out": "toy.out"}

    async def setup(self, host: Host) -> None:
        d = self.dir(host)
        await self.lab.remote(host).run(f"mkdir -p {d} && cat > {d}/toyserver.py", stdin=SERVER)
        await self.start(host)

    async def teardown(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT")
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=5)
        await self.lab.remote(host).run(f"rm -f {self.dir(host)}/state.json {self.dir(host)}/toy.*")

    async def start(self, host: Host) -> None:
        d = shlex.quote(self.dir(host))
        py = self.lab.python(host)
        if await pid_file_process(self.lab.remote(host), self.pid_file(host)) is not None:
            return  # running (a killed server may linger as a zombie: that one is dead)
        server = f"{py} toyserver.py state.json {self.port(host)} 127.0.0.1"
        if self.start_delay:
            server = f"sh -c {shlex.quote(f'sleep {self.start_delay}; exec {server}')}"
        await self.lab.remote(host).run(
            f"cd {d} && nohup setsid {server} >> toy.out 2>&1 < /dev/null & echo $! > {d}/toy.pid")
        for _ in range(100 + int(self.start_delay * 20)):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port(host))
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{host}: toyserver did not start")

    async def kill(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=5) is None:
            raise RuntimeError(f"{host}: not running")

    async def pause(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "STOP")

    async def resume(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT")

    async def primaries(self) -> list[Host]:
        return [self.hosts[0]]


class ToyClient:
    def __init__(self, db: ToyDB, timeout: float, host: Host | None = None) -> None:
        self.db = db
        self.timeout = timeout
        self.host = host
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self, host: Host) -> ToyClient:
        return ToyClient(self.db, self.timeout, host if self.db.mode == "split" else self.db.hosts[0])

    async def invoke(self, op: Op) -> Op:
        assert self.host is not None
        try:
            if self.conn is None:
                self.conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.db.port(self.host)),
                                                   self.timeout)
        except (OSError, TimeoutError) as e:
            return replace(op, type=OpType.FAIL, error=f"connect: {e}", index=-1)
        reader, writer = self.conn
        writer.write((json.dumps({"f": op.f, "key": op.key, "value": op.value}) + "\n").encode())
        try:
            line = await asyncio.wait_for(reader.readline(), self.timeout)
            resp: dict[str, Any] = json.loads(line)
        except (OSError, TimeoutError, ValueError) as e:
            self.conn = None
            return replace(op, type=OpType.INFO, error=f"{type(e).__name__}: {e}", index=-1)
        served = {**(op.extra or {}), "node": self.host}  # the server that answered (n1 in single mode)
        if not resp["ok"]:
            return replace(op, type=OpType.FAIL, error=resp["error"], index=-1, extra=served)
        return replace(op, type=OpType.OK, value=resp["value"], index=-1, extra=served)

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


def system(lab: HostLab, options: SystemOptions) -> System:
    db = ToyDB(lab, options)
    return System(name="toy", db=db, client=ToyClient(db, options.op_timeout))
