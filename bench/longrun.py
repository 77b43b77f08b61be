"""A bounded long run of a local cluster: data-dir size, WAL size, RSS and restart time over time.

Issue 11's target: after 300,000 acknowledged writes of 256-byte values over 2,000 keys on 3
nodes with default settings (snapshots on), every data dir at most 40 MB, every node's RSS at
most 100 MB, and a follower killed with SIGKILL serving a linearizable read again within 3 s of
its restart. This script writes ``--writes`` values from ``--concurrency`` pipelined clients,
prints one line every ``--every`` writes (per node: data dir MB, WAL MB, RSS MB), then kills a
follower with SIGKILL, restarts it and reports the time from the restart to (a) its client port
listening and (b) its first linearizable read answered (a ReadIndex get through that node
alone). ``--snapshot-entries 0`` runs the "before" (no snapshots, no compaction) for comparison.

    flock /tmp/raftlab-bench.lock .venv/bin/python bench/longrun.py [--writes 300000] [--snapshot-entries 0]

Figures are for the machine it runs on; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from node import caught_up, wait_leader  # bench/node.py: the same leader and catch-up waits
from raftlab.impl.client import DefiniteError, IndeterminateError, KvClient
from raftlab.impl.cluster import LocalCluster

MB = 1024 * 1024


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(cluster: LocalCluster) -> str:
    cells = []
    for i in cluster.ids:
        data = cluster.node_dir(i) / "data"
        proc = cluster.procs.get(i)
        rss = rss_bytes(proc.pid) if proc is not None and proc.poll() is None else 0
        cells.append(f"n{i} dir={dir_bytes(data) / MB:6.1f} wal={dir_bytes(data / 'wal') / MB:6.1f} "
                     f"rss={rss / MB:5.1f}")
    return "  ".join(cells)


async def write_load(client: KvClient, args: argparse.Namespace, cluster: LocalCluster, started: float) -> int:
    rng = random.Random(args.seed)
    value = rng.randbytes(args.value_bytes)
    done = 0
    errors = 0
    next_report = args.every

    async def worker() -> None:
        nonlocal done, errors, next_report
        while done < args.writes:
            key = f"key-{rng.randrange(args.keys)}"
            try:
                await client.put(key, value)
            except (DefiniteError, IndeterminateError):
                errors += 1
                continue
            done += 1
            if done >= next_report:
                next_report += args.every
                print(f"{done:>8} writes  {time.monotonic() - started:7.1f}s  {sample(cluster)}", flush=True)

    async with asyncio.TaskGroup() as tg:
        for _ in range(args.concurrency):
            tg.create_task(worker())
    return errors


async def restart_follower(cluster: LocalCluster, client: KvClient) -> str:
    await caught_up(client)
    rows = await client.status()
    follower = next(r["id"] for r in rows if r.get("role") == "follower")
    cluster.kill(follower)
    started = time.monotonic()
    cluster.start(follower, wait=False)
    cluster.wait_listening(follower, timeout=120)
    listening = time.monotonic() - started
    solo = KvClient([cluster.endpoints()[follower - 1]], timeout=1.0, key=cluster.client_key())
    try:
        while True:
            try:
                await solo.get("key-0")
                break
            except (DefiniteError, IndeterminateError):
                await asyncio.sleep(0.02)
    finally:
        await solo.close()
    serving = time.monotonic() - started
    return (f"follower n{follower} killed with SIGKILL and restarted: listening after {listening:.2f}s, "
            f"first linearizable read answered after {serving:.2f}s")


async def main(args: argparse.Namespace) -> None:
    node_args = ("--snapshot-entries", str(args.snapshot_entries), *args.node_args)
    print(f"{args.writes} writes of {args.value_bytes} B over {args.keys} keys, concurrency {args.concurrency}, "
          f"nodes: {' '.join(node_args)}, seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="raftlab-longrun-", dir=args.workdir) as tmp:
        cluster = LocalCluster(3, Path(tmp), base_port=args.base_port, node_args=node_args)
        cluster.start_all()
        client = KvClient(cluster.endpoints(), timeout=5.0, key=cluster.client_key())
        try:
            await wait_leader(client)
            started = time.monotonic()
            errors = await write_load(client, args, cluster, started)
            elapsed = time.monotonic() - started
            print(f"done: {args.writes} acknowledged writes in {elapsed:.1f}s ({args.writes / elapsed:.0f}/s), "
                  f"{errors} failed attempts", flush=True)
            await caught_up(client)
            print(f"after the run:  {sample(cluster)}", flush=True)
            print(await restart_follower(cluster, client), flush=True)
            await caught_up(client)
            print(f"after restart:  {sample(cluster)}", flush=True)
        finally:
            await client.close()
            cluster.close()


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=300_000)
    p.add_argument("--keys", type=int, default=2_000)
    p.add_argument("--value-bytes", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--every", type=int, default=25_000, help="print a sample every N writes")
    p.add_argument("--snapshot-entries", type=int, default=10_000, help="the node default; 0: no snapshots")
    p.add_argument("--base-port", type=int, default=23500)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", default=os.environ.get("TMPDIR"), help="where the data dirs go")
    p.add_argument("--node-arg", dest="node_args", action="append", default=[],
                   help="extra argument for every node (repeatable)")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


if __name__ == "__main__":
    arguments = parse()
    try:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        sys.exit(130)
