"""Real processes stopped with SIGSTOP (issue 9): the read path of `raftlab node` under pauses.

* A forwarded read whose leader does not answer (the leader and the third member are stopped,
  so no election can end it) is answered ``dropped``, with its reason, within its deadline of
  two election timeouts (1 s here), not left to the client's own timeout. (main answered this
  one too, by dropping every read when the follower lost its leader; a read lost while the
  follower still hears its leader is covered in tests/impl/test_machine.py.)
* A lease-mode leader stopped with SIGSTOP while reads and writes go on, then resumed, serves
  no read from the lease that ran out while it was stopped: the whole history, reads sent to
  the stopped leader included, is linearizable.
* The same with the leader's disk paused (labfs, FUSE; root only) instead: its WAL write blocks
  in the worker thread, its sockets keep being read, the others elect a leader, and after the
  disk resumes every read is still linearizable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from raftlab.impl.client import DefiniteError, IndeterminateError, KvClient
from raftlab.impl.cluster import LocalCluster
from raftlab.impl.dtkv.commands import Get
from raftlab.impl.net.codec import decode_reply, encode_request
from raftlab.impl.net.framing import FrameDecoder, encode_frame

from raftlab.history import History, Op, OpType
from tests.impl.test_cluster import leader_of

pytestmark = pytest.mark.slow


def raw_get(port: int, key: str, timeout: float) -> tuple[str | None, dict[str, object], float]:
    """One get on one connection, no retries (KvClient would retry a dropped read elsewhere)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(encode_frame(encode_request(1, "get", Get(key=key))))
        decoder = FrameDecoder()
        while True:
            data = s.recv(65536)
            assert data, "the node closed the connection"
            frames = decoder.feed(data)
            if frames:
                _, error, body = decode_reply(frames[0])
                return error, body, time.monotonic() - started


def test_a_forwarded_read_without_an_answer_times_out_at_its_deadline(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=21000) as cluster:
        cluster.start_all()

        async def setup() -> int:
            client = KvClient(cluster.endpoints(), timeout=10.0)
            await client.put("k", b"v")
            leader = await leader_of(client)
            await client.close()
            return leader

        leader = asyncio.run(setup())
        follower, other = [i for i in cluster.ids if i != leader]
        stopped = [cluster.procs[leader].pid, cluster.procs[other].pid]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            error, body, elapsed = raw_get(cluster.client_port(follower), "k", timeout=20.0)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        print(f"forwarded read answered {error} after {elapsed:.2f}s: {body.get('message')}")
        assert error == "dropped" and "read not confirmed" in str(body.get("message")), (error, body)
        assert elapsed < 10.0, f"answered only after {elapsed:.1f}s"  # deadline 1 s; the client waits 20


def assert_linearizable(events: list[Op]) -> None:
    from raftlab.checker import check

    reads = [e for e in events if e.f == "read" and e.type is OpType.OK]
    assert len(reads) > 20 and any(e.type is OpType.OK and e.f == "write" for e in events)
    result = check(History(events), "kv", time_limit=60)
    print(f"{len(events)} events, {len(reads)} reads ok: {result.valid}")
    assert result.valid is True, result.explanation


def test_lease_reads_stay_linearizable_across_a_stopped_leader(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=21200, node_args=("--read-mode", "lease")) as cluster:
        cluster.start_all()

        async def pause(leader: int) -> None:
            os.kill(cluster.procs[leader].pid, signal.SIGSTOP)  # reads keep arriving at its socket

        async def resume(leader: int) -> None:
            os.kill(cluster.procs[leader].pid, signal.SIGCONT)

        assert_linearizable(asyncio.run(fault_the_leader_under_reads(cluster, pause, resume)))


def test_lease_reads_stay_linearizable_across_a_paused_leader_disk(tmp_path: Path) -> None:
    from raftlab.nemesis.disk import FuseDisk

    from raftlab.lab.local import LocalRemote, sweep
    from tests.conftest import need_fuse

    need_fuse()
    cluster = LocalCluster(3, tmp_path / "c", base_port=21300, node_args=("--read-mode", "lease"))
    disks = {i: FuseDisk(LocalRemote(f"n{i}", tmp_path), sys.executable, str(cluster.node_dir(i) / "data"))
             for i in cluster.ids}

    async def pause(leader: int) -> None:
        await disks[leader].ctl("pause")

    async def resume(leader: int) -> None:
        await disks[leader].ctl("resume")

    async def main() -> list[Op]:
        for disk in disks.values():
            await disk.mount(lazy=False)
        try:
            cluster.start_all()
            return await fault_the_leader_under_reads(cluster, pause, resume)
        finally:
            cluster.close()
            for disk in disks.values():
                await disk.unmount()

    try:
        assert_linearizable(asyncio.run(main()))
    finally:
        sweep(tmp_path)


async def fault_the_leader_under_reads(cluster: LocalCluster, pause: Callable[[int], Awaitable[None]],
                                       resume: Callable[[int], Awaitable[None]]) -> list[Op]:
    events: list[Op] = []
    started = time.monotonic_ns()
    client = KvClient(cluster.endpoints(), timeout=3.0)
    leader = await leader_of(client)
    direct = KvClient([cluster.endpoints()[leader - 1]], timeout=3.0)  # reads at the old leader only
    stop = asyncio.Event()

    def record(type_: OpType, process: int, f: str, value: object, error: str | None = None) -> None:
        events.append(Op(type=type_, process=process, f=f, key="r", value=value,
                         time=time.monotonic_ns() - started, error=error))

    async def writer() -> None:
        n, process = 0, 0
        while not stop.is_set():
            n += 1
            record(OpType.INVOKE, process, "write", n)
            try:
                await client.put("r", b"%d" % n)
            except IndeterminateError as e:
                record(OpType.INFO, process, "write", n, str(e))
                process += 10  # a process whose op is indeterminate never invokes again
            except DefiniteError as e:
                record(OpType.FAIL, process, "write", n, str(e))
            else:
                record(OpType.OK, process, "write", n)

    async def reader(kv: KvClient, process: int) -> None:
        while not stop.is_set():
            record(OpType.INVOKE, process, "read", None)
            try:
                value = await kv.get("r")
            except IndeterminateError as e:
                record(OpType.INFO, process, "read", None, str(e))
                process += 10
            except DefiniteError as e:
                record(OpType.FAIL, process, "read", None, str(e))
            else:
                record(OpType.OK, process, "read", int(value) if value is not None else None)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(writer())
        tg.create_task(reader(direct, 1))
        tg.create_task(reader(direct, 2))
        tg.create_task(reader(client, 3))
        await asyncio.sleep(1.0)
        await pause(leader)
        await asyncio.sleep(2.0)  # four election timeouts: the others elect a leader and write on
        await resume(leader)
        await asyncio.sleep(2.0)
        stop.set()
    assert await leader_of(client) != leader, "the fault took no effect: the leader kept leading"
    await client.close()
    await direct.close()
    return events
