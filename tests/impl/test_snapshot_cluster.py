"""Snapshots with real `raftlab node` processes: compaction, restart from a snapshot, catch-up
of a stopped follower by InstallSnapshot, the on-demand `raftlab kv snapshot`.

The claims of issue 11 at process level: with a small ``--snapshot-entries`` the WAL is
compacted (old segments gone, snapshot files present under the documented glob); a follower
stopped while the others write several snapshots' worth comes back through InstallSnapshot
(its log restarts above index 1) and holds every acknowledged write; a restarted node loads its
snapshot and replays only the entries after it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from raftlab.impl.client import KvClient
from raftlab.impl.cluster import LocalCluster, raftlab_command
from raftlab.impl.storage.snapshot import GLOB

pytestmark = pytest.mark.slow

# small segments so compaction has whole segments to delete within a short test
ARGS = ("--snapshot-entries", "100", "--snapshot-margin", "20", "--wal-segment-bytes", "8192")


async def write_keys(client: KvClient, lo: int, hi: int) -> dict[str, bytes]:
    acked = {}
    for i in range(lo, hi):
        key, value = f"k{i % 300}", f"v{i}".encode()
        await client.put(key, value)
        acked[key] = value
    return acked


async def wait_for(client: KvClient, pred: object, timeout: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await client.status()
        if pred(rows):  # type: ignore[operator]
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached: {rows}")
        await asyncio.sleep(0.1)


def test_a_stopped_follower_catches_up_by_install_snapshot(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=23100, node_args=ARGS) as cluster:
        cluster.start_all()

        async def scenario() -> None:
            client = KvClient(cluster.endpoints(), timeout=5.0)
            try:
                acked = await write_keys(client, 0, 200)
                rows = await client.status()
                follower = next(r["id"] for r in rows if r.get("role") == "follower")
                cluster.stop(follower)
                acked |= await write_keys(client, 200, 1200)  # ten snapshots' worth while it is down
                live = [i for i in cluster.ids if i != follower]
                for i in live:
                    snaps = sorted((cluster.node_dir(i) / "data").glob(GLOB))
                    assert snaps, f"node {i} wrote no snapshot file matching {GLOB}"
                    segs = sorted((cluster.node_dir(i) / "data" / "wal").glob("*.seg"))
                    assert int(segs[0].stem) > 900, f"node {i}: the WAL was not compacted: {segs[:3]}"
                cluster.start(follower)
                rows = await wait_for(client, lambda rs: all("error" not in r for r in rs)
                                      and len({r["applied"] for r in rs}) == 1)
                back = next(r for r in rows if r["id"] == follower)
                assert back["first_index"] > 1000, f"the follower replayed instead of installing: {back}"
                log = cluster.log_file(follower).read_text()
                assert "installed snapshot" in log, log[-2000:]
                # every acknowledged write is on the follower: read it alone
                solo = KvClient([cluster.endpoints()[follower - 1]], timeout=5.0)
                try:
                    status = (await solo.status())[0]
                    assert status["applied"] >= 1200
                finally:
                    await solo.close()
                digests = {str(r["digest"]) for r in rows}
                assert len(digests) == 1, f"replicas differ after the install: {digests}"
                for key, value in list(acked.items())[::17]:
                    assert await client.get(key) == value
            finally:
                await client.close()

        asyncio.run(scenario())


def test_restart_loads_the_snapshot_and_replays_only_later_entries(tmp_path: Path) -> None:
    with LocalCluster(1, tmp_path, base_port=23150, node_args=ARGS) as cluster:
        cluster.start_all()

        async def fill() -> dict[str, bytes]:
            client = KvClient(cluster.endpoints(), timeout=5.0)
            try:
                acked = await write_keys(client, 0, 450)
                out = subprocess.run([*raftlab_command(), "kv", "--endpoints", cluster.endpoints_arg(), "snapshot"],
                                     capture_output=True, text=True, timeout=30)
                assert out.returncode == 0, out.stderr
                assert "snapshot index=" in out.stdout
                acked |= await write_keys(client, 450, 470)
                return acked
            finally:
                await client.close()

        acked = asyncio.run(fill())
        cluster.kill(1)
        cluster.start(1)

        async def check() -> None:
            client = KvClient(cluster.endpoints(), timeout=5.0)
            try:
                for key, value in acked.items():
                    assert await client.get(key) == value
            finally:
                await client.close()

        asyncio.run(check())
        log = cluster.log_file(1).read_text()
        recovered = [line for line in log.splitlines() if "recovered snapshot" in line]
        assert recovered, log[-2000:]
        # the last start began from a snapshot at or past the on-demand one (>= 450 entries)
        index = int(recovered[-1].split("recovered snapshot ")[1].split("/")[1].split(" ")[0])
        assert index >= 450, recovered[-1]
