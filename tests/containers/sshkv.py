"""A tiny durable key-value system for campaigns over SSH labs (``--system sshkv``), until the Raft node.

Every host runs ``kvserver.py`` (uploaded over SSH, run by the host's provisioned python) on its
own address; it keeps its state in ``<node_dir>/data/state.json`` and fsyncs it before answering
a write, so a paused disk stalls writes and a power cut loses nothing acknowledged. Every client
talks to n1's server (one copy: linearizable), reached at ``lab.endpoint(None, "n1", port)``
exactly as a real client reaches a VM. Kill, pause, start, primaries and the data dir are real.
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
from raftlab.protocols import Host, Lab
from raftlab.systems import System, SystemOptions

SERVER = (Path(__file__).resolve().parents[1] / "jsonkv_server.py").read_text()


class SshKvDB:
    def __init__(self, lab: Lab, options: SystemOptions) -> None:
        self.lab = lab
        self.hosts = list(lab.hosts)
        self.base = options.base_port

    def port(self, host: Host) -> int:
        return self.base + self.hosts.index(host)

    def dir(self, host: Host) -> str:
        return self.lab.node_dir(host)  # type: ignore[attr-defined, no-any-return]

    def data_dir(self, host: Host) -> str:
        return f"{self.dir(host)}/data"

    def pid_file(self, host: Host) -> str:
        return f"{self.dir(host)}/kv.pid"

    def log_files(self, host: Host) -> dict[str, str]:
        return {f"{self.dir(host)}/kv.out": "kv.out"}

    async def setup(self, host: Host) -> None:
        d = shlex.quote(self.dir(host))
        await self.lab.remote(host).run(f"mkdir -p {d}/data && cat > {d}/kvserver.py", stdin=SERVER)
        await self.start(host)

    async def teardown(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT")
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=5)
        await self.lab.remote(host).run(f"rm -rf {shlex.quote(self.dir(host))}/data/state.json* "
                                        f"{shlex.quote(self.dir(host))}/kv.*")

    async def start(self, host: Host) -> None:
        remote = self.lab.remote(host)
        d = shlex.quote(self.dir(host))
        if await pid_file_process(remote, self.pid_file(host)) is not None:
            return  # running (after a power cut the file names a pid the new boot reuses: not ours)
        py = self.lab.python(host)  # type: ignore[attr-defined]
        await remote.run(f"cd {d} && nohup setsid {py} kvserver.py data/state.json {self.port(host)} 0.0.0.0 "
                         f">> kv.out 2>&1 < /dev/null & echo $! > {d}/kv.pid")
        address = self.lab.endpoint(None, host, self.port(host))  # type: ignore[attr-defined]
        for _ in range(200):
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(*address), 1.0)
                w.close()
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{host}: kvserver did not start (see {self.dir(host)}/kv.out)")

    async def kill(self, host: Host) -> None:
        if await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=5) is None:
            raise RuntimeError(f"{host}: not running")

    async def pause(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "STOP")

    async def resume(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT")

    async def primaries(self) -> list[Host]:
        return [self.hosts[0]]


class SshKvClient:
    def __init__(self, db: SshKvDB, timeout: float) -> None:
        self.db = db
        self.timeout = timeout
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self, host: Host) -> SshKvClient:
        return SshKvClient(self.db, self.timeout)

    async def invoke(self, op: Op) -> Op:
        primary = self.db.hosts[0]
        try:
            if self.conn is None:
                address = self.db.lab.endpoint(None, primary, self.db.port(primary))  # type: ignore[attr-defined]
                self.conn = await asyncio.wait_for(asyncio.open_connection(*address), self.timeout)
        except (OSError, TimeoutError) as e:
            return replace(op, type=OpType.FAIL, error=f"connect: {e}", index=-1)
        reader, writer = self.conn
        writer.write((json.dumps({"f": op.f, "key": op.key, "value": op.value}) + "\n").encode())
        try:
            line = await asyncio.wait_for(reader.readline(), self.timeout)
            resp: dict[str, Any] = json.loads(line)
        except (OSError, TimeoutError, ValueError) as e:
            writer.close()
            self.conn = None
            return replace(op, type=OpType.INFO, error=f"{type(e).__name__}: {e}", index=-1)
        if not resp["ok"]:
            return replace(op, type=OpType.FAIL, error=resp["error"], index=-1)
        return replace(op, type=OpType.OK, value=resp["value"], index=-1)

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


def system(lab: Lab, options: SystemOptions) -> System:
    db = SshKvDB(lab, options)
    return System(name="sshkv", db=db, client=SshKvClient(db, options.op_timeout))
