"""The control machine's way into a lab's private network: a unix socket that opens TCP inside it.

The local lab's address mode (``raftlab.lab.userns``) puts every host in its own network
namespace, unreachable from the harness's own network. Unix sockets are named in the file
system, which namespaces do not split, so this small forwarder runs inside the namespaces' hub
and listens on ``WORKDIR/gateway.sock``. A connection starts with one header line,
``ADDRESS PORT\\n``; the gateway connects to that address from the hub (which reaches every host
over the bridge and is never partitioned) and then copies bytes both ways until either side
closes. A refused or failed connect closes the unix connection at once with nothing sent.

Run as ``python -m raftlab.lab.gateway SOCKET`` (inside the hub, by the lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

HEADER_LIMIT = 128
"""Bytes a header line may take (``255.255.255.255 65535`` is 21)."""


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
        address, port = line.decode().split()
        if len(line) > HEADER_LIMIT:
            raise ValueError("header too long")
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(address, int(port)), 5)
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_copy(reader, up_writer))
            tg.create_task(_copy(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def serve(path: str) -> None:
    server = await asyncio.start_unix_server(_serve, path)
    print("ready", flush=True)  # the lab waits for this line before using the socket
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1]))
