"""Temp nodes, locks and watches on real `raftlab node` processes over loopback, through the
`raftlab kv` CLI and the client library, across a SIGKILLed leader.

Claims: a watcher that keeps polling sees exactly the committed changes under its key, in index
order, with no gap or duplicate, although the leader it polls is killed mid-stream; a temp node
refreshed within its TTL survives a leader change, and expires after its owner stops; a lock is
owner-only, handed to the queued waiter on unlock with a larger fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from raftlab.impl.client import IndeterminateError, KvClient, LockHeld, NotOwner, WatchEvent
from raftlab.impl.cluster import LocalCluster, raftlab_command

from tests.impl.test_cluster import leader_of

pytestmark = pytest.mark.slow
BASE = 27100


def kv(cluster: LocalCluster, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*raftlab_command(), "kv", "--endpoints", cluster.endpoints_arg(), "--timeout", "5", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_cli_temp_node_lock_and_watch(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=BASE) as cluster:
        cluster.start_all()
        assert kv(cluster, "mkdir", "svc").returncode == 0
        put = kv(cluster, "put", "svc.a", "up", "--ttl", "1500", "--owner", "o1")
        assert put.returncode == 0 and "ttl_ms=1500" in put.stdout, put.stderr
        created = int(put.stdout.split("index=")[1].split()[0])
        assert kv(cluster, "refresh", "svc.a", "--ttl", "1500", "--owner", "o2").returncode == 1  # not the owner
        got = kv(cluster, "lock", "locks", "--owner", "w1", "--lease", "5000")
        assert got.returncode == 0 and got.stdout.startswith("ok token="), got.stderr
        other = kv(cluster, "lock", "locks", "--owner", "w2")
        assert other.returncode == 1 and "lock-held" in other.stderr and "w1" in other.stderr
        assert kv(cluster, "unlock", "locks", "--owner", "w2").returncode == 1
        assert kv(cluster, "unlock", "locks", "--owner", "w1").returncode == 0
        held = kv(cluster, "lock", "locks", "--owner", "w3", "--lease", "300", "--hold", "1")
        assert held.returncode == 0 and "ok unlocked" in held.stdout, held  # refreshed past its 300 ms lease
        watched = kv(cluster, "watch", "svc", "--from", str(created), "--count", "2", timeout=60)
        # the put, then (nobody refreshes) the expiry about 1.5 s later
        lines = watched.stdout.splitlines()
        assert watched.returncode == 0 and lines[0] == f"{created} put svc.a up", watched
        assert lines[1].endswith("del svc.a") and int(lines[1].split()[0]) > created


async def watch_through_a_leader_kill(cluster: LocalCluster) -> tuple[list[int], list[WatchEvent], list[WatchEvent]]:
    client = KvClient(cluster.endpoints(), timeout=2.0)
    await client.mkdir("w")
    start = await client.put("w.k", b"0")
    seen: list[WatchEvent] = []
    acked: list[int] = []

    async def watcher() -> None:
        async for event in client.watch("w", start):
            seen.append(event)

    task = asyncio.create_task(watcher())
    for i in range(1, 61):
        if i == 20:
            leader = await leader_of(client)
            cluster.kill(leader)
        if i == 40:
            cluster.start(leader)
        with contextlib.suppress(IndeterminateError):
            acked.append(await client.put("w.k", str(i).encode()))
        await asyncio.sleep(0.02)
    end = await client.put("w.k", b"end")
    deadline = time.monotonic() + 20
    while (not seen or seen[-1].index < end) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    task.cancel()
    reread = KvClient(cluster.endpoints(), timeout=2.0)
    truth: list[WatchEvent] = []
    async for event in reread.watch("w", start):
        truth.append(event)
        if event.index >= end:
            break
    await client.close()
    await reread.close()
    return acked, seen, truth


def test_a_watch_has_no_gap_or_duplicate_across_a_killed_leader(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=BASE + 200) as cluster:
        cluster.start_all()
        acked, seen, truth = asyncio.run(watch_through_a_leader_kill(cluster))
        indexes = [e.index for e in seen]
        assert indexes == sorted(set(indexes)), "duplicates or out of order"
        assert seen == truth[: len(seen)] and seen[-1] == truth[-1], "the watcher's events are not the log's"
        assert set(acked) <= set(indexes), "an acknowledged write was never reported"
        assert len(acked) > 40


async def lease_failover(cluster: LocalCluster) -> None:
    client = KvClient(cluster.endpoints(), timeout=2.0)
    await client.put_temp("t", b"alive", "owner", 1500)
    token = await client.try_lock("l", "a", 60_000)
    with pytest.raises(LockHeld):
        await client.try_lock("l", "b", 60_000, wait=True)
    leader = await leader_of(client)
    cluster.kill(leader)
    for _ in range(8):  # 4 s of refreshes every 0.5 s, through the election
        await asyncio.sleep(0.5)
        with contextlib.suppress(IndeterminateError):
            await client.refresh("t", "owner", 1500)
    assert await client.get("t") == b"alive"
    with pytest.raises(NotOwner):
        await client.unlock("l", "c")
    await client.unlock("l", "a")
    handed = await client.try_lock("l", "b", 60_000)  # b was queued: the lock is already b's
    assert handed > token and await client.get("l") == b"b"
    stopped = time.monotonic()
    while await client.get("t") is not None:
        await asyncio.sleep(0.1)
        assert time.monotonic() - stopped < 15, "the temp node outlived its TTL by far"
    assert time.monotonic() - stopped >= 1.0
    await client.close()


def test_temp_node_and_lock_across_a_killed_leader(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=BASE + 400) as cluster:
        cluster.start_all()
        asyncio.run(lease_failover(cluster))


def test_a_watch_older_than_the_compacted_log_says_re_read(tmp_path: Path) -> None:
    with LocalCluster(1, tmp_path, base_port=BASE + 600, node_args=("--snapshot-margin", "0")) as cluster:
        cluster.start_all()
        for i in range(20):
            assert kv(cluster, "put", f"k{i % 3}", str(i)).returncode == 0
        assert kv(cluster, "snapshot").returncode == 0
        cluster.stop(1)
        cluster.start(1)  # restarted from the snapshot: events before it are gone
        old = kv(cluster, "watch", "", "--from", "1", "--count", "1")
        assert old.returncode == 1 and "compacted" in old.stderr and "re-read" in old.stderr, old
        put = kv(cluster, "put", "k0", "new")
        index = int(put.stdout.split("index=")[1])
        fresh = kv(cluster, "watch", "", "--from", str(index), "--count", "1")
        assert fresh.stdout.strip() == f"{index} put k0 new", fresh
