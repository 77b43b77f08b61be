"""The client port: frames in, requests to the node, replies out on the same connection.

A connection may pipeline any number of requests; each carries an id and its reply carries the
same id, in whatever order the node completes them (a read served by ReadIndex may overtake a
write waiting for its commit). This module only moves bytes: routing (propose, ReadIndex, local
status) is ``Node.submit``'s job. A garbage, oversized or truncated frame closes this connection
with a log line and touches no other; a client that stops reading while replies pile up past
``MAX_BACKLOG`` bytes is disconnected rather than allowed to grow the node's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from raftlab.impl.net.codec import Request, WireError, decode_request, encode_reply
from raftlab.impl.net.framing import FrameError, encode_frame
from raftlab.impl.net.streams import read_frames

MAX_BACKLOG = 64 * 1024 * 1024


class ClientConnection:
    """Where replies for one client connection go; safe to use after the client left."""

    __slots__ = ("_out", "closed", "peer", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.closed = False
        self._out: list[bytes] = []

    def reply(self, request_id: int, error: str | None, body: dict[str, Any]) -> None:
        """Queue a reply; all replies queued in one loop iteration leave in one write()."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(encode_frame(encode_reply(request_id, error, body)))

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.closed or not out:
            return
        transport = self.writer.transport
        transport.write(b"".join(out))
        if transport.get_write_buffer_size() > MAX_BACKLOG:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class RequestSink(Protocol):
    def submit(self, request: Request, conn: ClientConnection) -> None: ...


async def serve_client_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                  sink: RequestSink, logger: Callable[[str], None]) -> None:
    conn = ClientConnection(writer)
    try:
        async for frame in read_frames(reader):
            sink.submit(decode_request(frame), conn)
    except (FrameError, WireError) as e:
        logger(f"client connection from {conn.peer}: {e}; closing it")
    except (OSError, ConnectionError):
        pass
    except asyncio.CancelledError:  # the node is stopping; asyncio's stream callback would log it
        return
    finally:
        conn.close()
