"""Throughput, latency and failover of local raftlab clusters (fsync on): prints a table.

For each cluster size it starts real ``raftlab node`` processes on loopback (``impl/cluster.py``),
then measures, at each concurrency level, 256-byte writes and linearizable (ReadIndex) reads
from one pipelined client in this process: operations per second and p50/p99 latency. Last it
kills the leader with SIGKILL ``--kills`` times and reports the median time from the kill to
the next acknowledged write (the killed member is restarted and caught up between rounds).

Run it under the shared bench lock so benches never overlap:

    flock /tmp/raftlab-bench.lock .venv/bin/python bench/node.py [--sizes 3,5] [--duration 5]

``--baseline PATH`` (another tree's ``raftlab`` script, e.g. a checkout of main with its own
venv) measures that build too, in the same run, alternating with this one size by size, and
labels each row ``base`` or ``this``: a before/after comparison on the same machine and load.

``--auth both`` (the default) measures every build twice in the same run, members and client
authenticating with a cluster key (``auth``) and without (``open``), alternating; ``--auth on``
or ``off`` measures one. The handshake costs a round trip per connection, never per message.

Figures are for the machine it runs on; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from raftlab.impl.client import DefiniteError, IndeterminateError, KvClient
from raftlab.impl.cluster import LocalCluster

VALUE = b"v" * 256


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))] * 1000


async def wait_leader(client: KvClient, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await client.put("bench-probe", b"x")
        except (DefiniteError, IndeterminateError):
            await asyncio.sleep(0.05)
            continue
        rows = await client.status()
        leaders = {r.get("leader") for r in rows if r.get("role") == "leader"}
        if len(leaders) == 1:
            return leaders.pop()
    raise TimeoutError("no leader elected")


async def load(client: KvClient, op: str, concurrency: int, duration: float) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + duration

    async def worker(w: int) -> None:
        nonlocal errors
        key = f"bench-{w}"
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                if op == "write":
                    await client.put(key, VALUE)
                else:
                    await client.get(key)
            except (DefiniteError, IndeterminateError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    began = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for w in range(concurrency):
            tg.create_task(worker(w))
    elapsed = time.monotonic() - began
    latencies.sort()
    return len(latencies) / elapsed, latencies, errors


async def failover(cluster: LocalCluster, client: KvClient, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        leader = await wait_leader(client)
        probe = KvClient(cluster.endpoints(), timeout=0.3, key=cluster.client_key())
        killed_at = time.monotonic()
        cluster.kill(leader)
        while True:
            try:
                await probe.put("bench-failover", VALUE)
                break
            except (DefiniteError, IndeterminateError):
                continue
        times.append(time.monotonic() - killed_at)
        await probe.close()
        cluster.start(leader)
        await caught_up(client)
    return times


async def caught_up(client: KvClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await client.status()
        applied = {r.get("applied") for r in rows}
        if all("error" not in r for r in rows) and len(applied) == 1:
            return
        await asyncio.sleep(0.1)


async def bench_size(size: int, args: argparse.Namespace, workdir: Path, build: str,
                     command: list[str] | None, auth: bool) -> list[str]:
    lines = []
    cluster = LocalCluster(size, workdir / f"c{size}-{build}-{auth}", base_port=args.base_port,
                           node_args=("--fsync", "sync", *args.node_args), command=command, auth=auth)
    build = f"{build}/{'auth' if auth else 'open'}"
    cluster.start_all()
    client = KvClient(cluster.endpoints(), timeout=5.0, key=cluster.client_key())
    try:
        await wait_leader(client)
        for op in ("write", "read"):
            for concurrency in args.concurrency:
                await load(client, op, concurrency, min(0.5, args.duration))  # warm-up
                rate, lat, errors = await load(client, op, concurrency, args.duration)
                lines.append(f"{build:<10}  {size:>5}  {op:<5}  {concurrency:>4}  {rate:>9.0f}  {pct(lat, 0.5):>7.2f}  "
                             f"{pct(lat, 0.99):>7.2f}  {errors:>6}")
                print(lines[-1], flush=True)
        if args.kills:
            times = await failover(cluster, client, args.kills)
            lines.append(f"{build:<10}  {size:>5}  kill -9 leader -> next acked write: median "
                         f"{statistics.median(times):.3f}s "
                         f"(runs: {', '.join(f'{t:.3f}' for t in times)})")
            print(lines[-1], flush=True)
    finally:
        await client.close()
        cluster.close()
    return lines


async def main(args: argparse.Namespace) -> None:
    header = (f"{'build':<10}  {'nodes':>5}  {'op':<5}  {'conc':>4}  {'ops/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  "
              f"{'errors':>6}")
    print(header, flush=True)
    lines = []
    builds: list[tuple[str, list[str] | None]] = [("this", None)]
    if args.baseline:
        builds.insert(0, ("base", [args.baseline]))
    with tempfile.TemporaryDirectory(prefix="raftlab-bench-") as tmp:
        auths = {"both": (False, True), "on": (True,), "off": (False,)}[args.auth]
        for size in args.sizes:
            for build, command in builds:
                for auth in auths:
                    lines += await bench_size(size, args, Path(tmp), build, command, auth)
    print("\n" + header)
    print("\n".join(lines))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3,5", help="cluster sizes (default 3,5)")
    p.add_argument("--concurrency", default="1,16,64", help="client concurrency levels (default 1,16,64)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--kills", type=int, default=3, help="leader kills per size (default 3; 0 skips)")
    p.add_argument("--base-port", type=int, default=17000, help="member i uses BASE+i and BASE+100+i")
    p.add_argument("--baseline", metavar="PATH", help="another build's raftlab script, measured alongside")
    p.add_argument("--auth", choices=("both", "on", "off"), default="both",
                   help="measure with authentication on, off, or both side by side (default both)")
    p.add_argument("--node-arg", dest="node_args", action="append", default=[],
                   help="extra argument for every node (repeatable), e.g. --node-arg=--tick-ms=50")
    args = p.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


if __name__ == "__main__":
    arguments = parse()
    try:
        import uvloop
        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        sys.exit(130)
