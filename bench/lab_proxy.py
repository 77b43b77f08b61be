"""Throughput and latency of the local lab's proxy mesh against a direct connection.

Prints figures only (no assertions): messages/s for a stream of small Raft-sized messages, and
round trips/s for request/response, through a proxy link and directly.

    flock /tmp/raftlab-bench.lock .venv/bin/python bench/lab_proxy.py [--messages 200000] [--size 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from raftlab.lab.proxy import ProxyMesh


async def stream(addr: tuple[str, int], done: asyncio.Future[None], messages: int, size: int) -> float:
    _, writer = await asyncio.open_connection(*addr)
    payload = b"x" * size
    start = time.perf_counter()
    for i in range(messages):
        writer.write(payload)
        if i % 256 == 0:
            await writer.drain()
    await writer.drain()
    await done
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def ping_pong(addr: tuple[str, int], rounds: int) -> float:
    reader, writer = await asyncio.open_connection(*addr)
    start = time.perf_counter()
    for _ in range(rounds):
        writer.write(b"p" * 64)
        await reader.readexactly(64)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def main(messages: int, size: int, rounds: int) -> None:
    expected = messages * size
    state: dict[str, object] = {}

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(1)
        if first == b"p":  # ping-pong
            buf = first
            while True:
                while len(buf) < 64:
                    more = await reader.read(65536)
                    if not more:
                        return
                    buf += more
                writer.write(buf[:64])
                buf = buf[64:]
        got = len(first)
        while got < expected:
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        fut = state["done"]
        assert isinstance(fut, asyncio.Future)
        fut.set_result(None)

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mesh = ProxyMesh()
    proxied = mesh.endpoint("n1", "n2", port)
    for label, addr in (("direct", ("127.0.0.1", port)), ("proxy", proxied)):
        state["done"] = asyncio.get_running_loop().create_future()
        fut = state["done"]
        assert isinstance(fut, asyncio.Future)
        t = await stream(addr, fut, messages, size)
        rt = await ping_pong(addr, rounds)
        print(f"{label:7s} stream: {messages / t:12,.0f} msgs/s ({messages * size / t / 2**20:7.1f} MiB/s, "
              f"{size} B each)   ping-pong: {rounds / rt:9,.0f} round trips/s ({rt / rounds * 1e6:6.1f} us each)")
    await asyncio.sleep(0.2)  # let the sink see every EOF before the loop stops
    mesh.close()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.size, args.rounds))
