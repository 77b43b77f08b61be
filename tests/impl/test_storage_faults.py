"""Storage faults on real `raftlab node` processes (issue 10): a damaged member refuses to start
naming the file, `raftlab node repair --empty` brings it back as a member that grants no vote
until caught up, and no acknowledged write is lost through further crashes.

The issue measured the old node accepting a deleted ``meta`` or a deleted last segment silently;
one such fault plus two crashes lost 10 of 10 acknowledged writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from raftlab.impl.client import KvClient, KvError
from raftlab.impl.cluster import LocalCluster, raftlab_command
from raftlab.impl.storage.meta import load_manifest
from raftlab.impl.storage.recovery import MAGIC, RECORD

from tests.impl.test_cluster import converged, leader_of

pytestmark = pytest.mark.slow
KEYS = [f"acked-{i}" for i in range(10)]


def damage(data: Path, fault: str) -> Path:
    segs = sorted((data / "wal").glob("*.seg"))
    if fault == "meta":
        victim = data / "meta"
        victim.unlink()
    elif fault == "last-segment":
        victim = segs[-1]
        victim.unlink()
    else:  # a flipped bit in the length of a record in the middle of the last segment
        victim = segs[-1]
        raw = bytearray(victim.read_bytes())
        off = len(MAGIC)
        for _ in range(4):
            off += RECORD.size + RECORD.unpack_from(raw, off)[0]
        raw[off + 1] ^= 0x01
        victim.write_bytes(raw)
    return victim


async def write_keys(cluster: LocalCluster) -> None:
    client = KvClient(cluster.endpoints(), timeout=5.0)
    await leader_of(client)
    for k in KEYS:
        await client.put(k, k.encode())
    await converged(client)
    await client.close()


async def no_leader_for(cluster: LocalCluster, ids: list[int], seconds: float) -> None:
    client = KvClient([("127.0.0.1", cluster.client_port(i)) for i in ids], timeout=1.0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = await client.status()
        assert not [r for r in rows if r.get("role") == "leader"], rows
        await asyncio.sleep(0.2)
    await client.close()


async def current_leader(cluster: LocalCluster) -> int:
    client = KvClient(cluster.endpoints(), timeout=2.0)
    try:
        return await leader_of(client)
    finally:
        await client.close()


async def all_keys(cluster: LocalCluster) -> list[bytes | None]:
    client = KvClient(cluster.endpoints(), timeout=5.0)
    await leader_of(client)
    values = await client.batch_get(KEYS)
    rows = await converged(client)
    await client.close()
    assert len({r["applied"] for r in rows}) == 1
    return values


@pytest.mark.parametrize("fault", ["meta", "last-segment", "flip-length"])
def test_damaged_member_refuses_then_repairs_without_losing_writes(tmp_path: Path, fault: str) -> None:
    base = {"meta": 22000, "last-segment": 22200, "flip-length": 22400}[fault]
    with LocalCluster(3, tmp_path, base_port=base) as cluster:
        cluster.start_all()
        asyncio.run(write_keys(cluster))
        cluster.stop(3)
        data = cluster.node_dir(3) / "data"
        victim = damage(data, fault)
        proc = subprocess.run(cluster.argv(3), capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert str(victim) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]

        repaired = subprocess.run([*raftlab_command(), "node", "repair", "--data-dir", str(data), "--id", "3",
                                   "--empty"], capture_output=True, text=True, timeout=60)
        assert repaired.returncode == 0, repaired.stderr
        # crash one: the other intact member. The empty member grants no vote, so node 2 alone
        # cannot win an election (without the fence it would, and with a log of writes node 3
        # no longer holds, that is how writes vanished)
        cluster.kill(1)
        cluster.kill(2)
        cluster.start(2)
        cluster.start(3)
        asyncio.run(no_leader_for(cluster, [2, 3], 3.0))
        cluster.start(1)
        assert asyncio.run(all_keys(cluster)) == [k.encode() for k in KEYS]
        # crash two: kill the leader now that node 3 caught up; the survivors still hold everything
        leader = asyncio.run(current_leader(cluster))
        cluster.kill(leader)
        cluster.start(leader)
        assert asyncio.run(all_keys(cluster)) == [k.encode() for k in KEYS]
        log = cluster.log_file(3).read_text()
        assert "rejoining" in log and "votes again" in log, log[-3000:]
        cluster.stop(3)
        manifest = load_manifest(data / "manifest")
        assert manifest is not None and not manifest.rejoin  # cleared once caught up


def _file_size_limit() -> None:  # in the child: a real kernel refusal (EFBIG) past 100 KB per file
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_a_full_disk_at_run_time_names_the_file_and_operation(tmp_path: Path) -> None:
    """The issue's node said 'cannot start' for a disk that filled while it ran."""
    cluster = LocalCluster(1, tmp_path, base_port=22500)
    cluster.node_dir(1).mkdir(parents=True)
    with open(cluster.node_dir(1) / "node.out", "wb") as out:
        proc = subprocess.Popen(cluster.argv(1), stdout=out, stderr=out, preexec_fn=_file_size_limit)
    cluster.procs[1] = proc
    try:
        cluster.wait_listening(1)

        async def fill() -> None:
            client = KvClient(cluster.endpoints(), timeout=2.0)
            with contextlib.suppress(KvError):
                for i in range(400):
                    await client.put(f"k{i}", b"x" * 1000)
            await client.close()

        asyncio.run(fill())
        assert proc.wait(20) == 2
    finally:
        cluster.close()
    text = (cluster.node_dir(1) / "node.out").read_text()
    seg = sorted((cluster.node_dir(1) / "data" / "wal").glob("*.seg"))[-1]
    assert "stopped: [Errno 27] write of" in text and str(seg) in text and "File too large" in text, text[-2000:]
    assert "cannot start" not in text


def test_a_follower_emptied_while_the_leader_lasts_is_sent_everything_again(tmp_path: Path) -> None:
    """The issue's follower whose log was cut was never re-sent the missing entries while that
    leader lasted, and reads through it hung; the leader's match for it is now corrected by the
    follower's heartbeat answers (back-tracking)."""
    with LocalCluster(3, tmp_path, base_port=22100) as cluster:
        cluster.start_all()
        asyncio.run(write_keys(cluster))
        leader = asyncio.run(current_leader(cluster))
        victim = next(i for i in cluster.ids if i != leader)
        cluster.stop(victim)
        data = cluster.node_dir(victim) / "data"
        repaired = subprocess.run([*raftlab_command(), "node", "repair", "--data-dir", str(data), "--id",
                                   str(victim), "--empty"], capture_output=True, text=True, timeout=60)
        assert repaired.returncode == 0, repaired.stderr
        cluster.start(victim)

        async def read_through_victim() -> list[bytes | None]:
            client = KvClient([("127.0.0.1", cluster.client_port(victim))], timeout=10.0)
            try:
                return await client.batch_get(KEYS)
            finally:
                await client.close()

        assert asyncio.run(read_through_victim()) == [k.encode() for k in KEYS]
        assert asyncio.run(current_leader(cluster)) == leader  # the same leader did it
        assert "back-tracks" in cluster.log_file(leader).read_text()
