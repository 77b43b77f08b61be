"""The client port: frames in, requests to the node, replies out on the same connection.

A connection may pipeline any number of requests; each carries an id and its reply carries the
same id, in whatever order the node completes them (a read served by ReadIndex may overtake a
write waiting for its commit). This module only moves bytes: routing (propose, ReadIndex, local
status) is ``Node.submit``'s job. With a cluster key a connection must first pass the handshake
(``net/auth.py``) with a client key: ``rw`` may do anything, ``ro`` only reads (a write is
answered ``validation`` without reaching Raft). A garbage, oversized, slow or truncated frame or
a failed handshake closes this connection with a rate-limited log line and touches no other; at
most ``MAX_CLIENTS`` connections are open at once; one idle for ``CLIENT_IDLE_SECONDS`` is closed;
a client that stops reading while replies pile up past ``MAX_BACKLOG`` bytes is disconnected
rather than allowed to grow the node's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from raftlab.impl.dtkv.commands import ErrorKind
from raftlab.impl.net.auth import Acceptor, Identity, Key
from raftlab.impl.net.codec import Request, decode_request, encode_reply
from raftlab.impl.net.framing import encode_frame
from raftlab.impl.net.streams import ConnectionGate, FrameReader, nonce, serve_connection

MAX_BACKLOG = 64 * 1024 * 1024
MAX_CLIENTS = 1024
CLIENT_IDLE_SECONDS = 600.0
SLOW_FRAME_SECONDS = 60.0


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
                                  sink: RequestSink, note: Callable[[str, str], None], *,
                                  key: Key | None, my_id: int, gate: ConnectionGate) -> None:
    conn = ClientConnection(writer)

    async def session(frames: FrameReader, identity: Identity | None) -> None:
        read_only = identity is not None and identity.role == "ro"
        async for frame in frames:
            request = decode_request(frame)
            if read_only and request.command is not None and request.command.write:
                conn.reply(request.id, ErrorKind.VALIDATION, {"message": "read-only credentials: writes refused"})
                continue
            sink.submit(request, conn)

    acceptor = Acceptor(key, my_id, nonce()) if key is not None else None
    await serve_connection(reader, writer, note, port="client", gate=gate, acceptor=acceptor,
                           idle=CLIENT_IDLE_SECONDS, slow_frame=SLOW_FRAME_SECONDS, session=session, close=conn.close)
