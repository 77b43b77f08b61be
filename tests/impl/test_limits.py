"""Connection limits (impl/net/streams.py) on real loopback sockets, in-process with small
limits: the connection cap, the idle and slow-frame timeouts, the handshake's buffer budget, and
rate-limited logging of what was refused."""

from __future__ import annotations

import asyncio
import struct

from raftlab.impl.net.auth import Acceptor, new_cluster_key
from raftlab.impl.net.framing import encode_frame
from raftlab.impl.net.streams import ConnectionGate, FrameReader, serve_connection, shell_log


async def serve(gate: ConnectionGate, lines: list[str], *, idle: float = 5.0, slow: float = 5.0,
                key: bool = False) -> tuple[asyncio.Server, int, list[bytes]]:
    got: list[bytes] = []

    async def session(frames: FrameReader, _identity: object) -> None:
        async for frame in frames:
            got.append(frame)

    note = shell_log(lines.append)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        acceptor = Acceptor(new_cluster_key(), 1, b"n" * 16) if key else None
        await serve_connection(reader, writer, note, port="peer", gate=gate, acceptor=acceptor, idle=idle,
                               slow_frame=slow, session=session, close=writer.close)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], got


async def closed(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the other end closes within ``within`` seconds (whatever it sent before)."""
    async with asyncio.timeout(within):
        try:
            while await reader.read(4096):
                pass
        except OSError:  # reset, or our own write to it failed: closed as well
            pass
    return True


def test_connection_cap_refuses_the_extra_connections_and_logs_once() -> None:
    async def main() -> None:
        lines: list[str] = []
        gate = ConnectionGate(2)
        server, port, got = await serve(gate, lines)
        keep = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        for reader, _ in extra:
            assert await closed(reader, 2.0)
        keep[0][1].write(encode_frame(b"still served"))
        await keep[0][1].drain()
        await asyncio.sleep(0.2)
        assert got == [b"still served"] and gate.open == 2
        assert sum("refused, 2 peer connections are open" in line for line in lines) == 1, lines  # rate-limited
        for _, w in keep + extra:
            w.close()
        server.close()

    asyncio.run(main())


def test_idle_and_slow_frames_are_closed() -> None:
    async def main() -> None:
        lines: list[str] = []
        server, port, _ = await serve(ConnectionGate(8), lines, idle=0.3, slow=0.6)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed(reader, 2.0)  # said nothing for 0.3 s
        server.close()
        slow_lines: list[str] = []  # a fresh log: the same kind of refusal within 10 s is not logged again
        server, port, _ = await serve(ConnectionGate(8), slow_lines, idle=0.3, slow=0.6)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(struct.pack(">I", 1000))
        for _ in range(5):  # a byte every 0.2 s: never idle, but the frame never completes in time
            await asyncio.sleep(0.2)
            try:
                writer.write(b"x")
                await writer.drain()
            except OSError:
                break
        assert await closed(reader, 2.0)
        assert any("idle for 0.3s" in line for line in lines), lines
        assert any("longer than 0.6s" in line for line in slow_lines), slow_lines
        server.close()

    asyncio.run(main())


def test_before_the_handshake_a_connection_buffers_at_most_a_small_frame() -> None:
    async def main() -> None:
        lines: list[str] = []
        server, port, _ = await serve(ConnectionGate(8), lines, key=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read(200)  # the challenge
        writer.write(struct.pack(">I", 16 << 20) + b"y" * 4096)  # claims a 16 MiB frame
        assert await closed(reader, 2.0)
        assert any("exceeds the maximum of 512" in line for line in lines), lines
        server.close()

    asyncio.run(main())
