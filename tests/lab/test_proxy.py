"""The proxy mesh forwards, blackholes a link silently (no RST, nothing delivered) and heals.

Measured with real sockets on 127.0.0.1: an echo server stands in for a node.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from raftlab.lab.proxy import ProxyMesh, cut

NOTHING = 0.3  # seconds a blocked link is watched for traffic (an upper bound on nothing, not a timing)


async def echo_server() -> tuple[asyncio.Server, int, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            seen.append(data)
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def read_exactly(reader: asyncio.StreamReader, n: int, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


def test_cut_is_symmetric() -> None:
    grudge = {"n1": frozenset({"n2"})}
    assert cut(grudge, "n1", "n2") and cut(grudge, "n2", "n1")
    assert not cut(grudge, "n1", "n3") and not cut(grudge, "n3", "n2")


def test_forwards_both_ways_and_passes_eof() -> None:
    async def main() -> None:
        server, port, _ = await echo_server()
        mesh = ProxyMesh()
        try:
            host, proxy_port = mesh.endpoint("n1", "n2", port)
            assert proxy_port != port and mesh.endpoint("n1", "n2", port) == (host, proxy_port)
            reader, writer = await asyncio.open_connection(host, proxy_port)
            payload = bytes(range(256)) * 4096  # 1 MiB, exercises back-pressure
            writer.write(payload)
            await writer.drain()
            assert await read_exactly(reader, len(payload)) == payload
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server's FIN came back
            writer.close()
        finally:
            mesh.close()
            server.close()

    asyncio.run(main())


def test_partition_blackholes_silently_and_heal_restores() -> None:
    async def main() -> None:
        server, port, seen = await echo_server()
        mesh = ProxyMesh()
        try:
            a = mesh.endpoint("n1", "n2", port)
            other = mesh.endpoint("n1", "n3", port)
            reader, writer = await asyncio.open_connection(*a)
            writer.write(b"before")
            assert await read_exactly(reader, 6) == b"before"

            await mesh.partition({"n2": frozenset({"n1"})})
            writer.write(b"during")
            await writer.drain()
            # Nothing arrives, and the connection is neither reset nor closed: the read just waits.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), NOTHING)
            assert b"".join(seen) == b"before"
            # A new connection on the cut link is accepted by the kernel but carries nothing.
            r2, w2 = await asyncio.open_connection(*a)
            w2.write(b"new")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r2.read(1), NOTHING)
            # An uncut link still works during the partition.
            r3, w3 = await asyncio.open_connection(*other)
            w3.write(b"ok")
            assert await read_exactly(r3, 2) == b"ok"

            await mesh.heal()
            # Held bytes are delivered intact, as TCP would retransmit them.
            assert await read_exactly(reader, 6) == b"during"
            assert await read_exactly(r2, 3) == b"new"
            for w in (writer, w2, w3):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()
        finally:
            mesh.close()
            server.close()

    asyncio.run(main())


def test_link_to_a_dead_port_is_refused_like_a_dead_node() -> None:
    async def main() -> None:
        server, port, _ = await echo_server()
        server.close()
        await server.wait_closed()
        mesh = ProxyMesh()
        try:
            reader, writer = await asyncio.open_connection(*mesh.endpoint("n1", "n2", port))
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        finally:
            mesh.close()

    asyncio.run(main())
