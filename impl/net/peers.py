"""Peer links: how one node's Raft messages reach the others over TCP.

Each remote peer gets one ``PeerLink`` (shared by every Raft group of the process: a frame names
its group): a bounded queue of encoded frames and one writer task that connects, writes
everything queued in one ``write()``, and reconnects with exponential backoff when the
connection fails. Sending never blocks the Ready loop: when the queue is full
(a slow or dead peer) the newest message is dropped, which Raft tolerates (it retries by
heartbeats and probes). A link's frames are written in the order they were queued.

Inbound connections are served by ``serve_peer_connection``: with a cluster key, the connection
must first pass the handshake (``auth.py``) as another member, and every message on it must come
from that member (``from`` is checked against the authenticated id, never trusted on its own);
then every frame is decoded by ``codec`` and handed, with its group id, to the node's ``deliver``
callback (which routes it: impl/groups.py). The handshake is per connection, so one
authenticated link carries every group's messages and the sender check covers them all. A
garbage, oversized, slow or truncated frame, a failed handshake or a forged sender closes that
one connection with a (rate-limited) log line; every other connection is untouched. Outbound links
run the connector's side of the handshake and check that the member reached holds the key too.

"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from raftlab.impl.net.auth import Acceptor, AuthError, Connector, Identity, Key
from raftlab.impl.net.codec import WireError, decode_group_message, encode_message
from raftlab.impl.net.framing import FrameError, encode_frame
from raftlab.impl.net.streams import ConnectionGate, FrameReader, handshake_connect, nonce, serve_connection
from raftlab.impl.raft.messages import Message

PEER_IDLE_SECONDS = 30.0  # a live member sends heartbeats many times a second
SLOW_FRAME_SECONDS = 60.0  # generous: a slowed lab link may carry a 1 MiB append slowly


class PeerLink:
    """One outbound link to ``peer_id`` at (host, port). Invariant: ``len(queue) <= max_queue``."""

    def __init__(self, peer_id: int, host: str, port: int, *, max_queue: int = 8192,
                 logger: Callable[[str], None], connect_timeout: float = 1.0,
                 min_backoff: float = 0.02, max_backoff: float = 0.5, key: Key | None = None,
                 my_id: int = 0) -> None:
        self.peer_id = peer_id
        self.key = key
        self.my_id = my_id
        self.host = host
        self.port = port
        self.max_queue = max_queue
        self.connect_timeout = connect_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.dropped = 0
        self._log = logger
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._connected = False
        self._auth_failed = False

    def send(self, msg: Message, group: int = 0) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(encode_frame(encode_message(msg, group)))
        self._wake.set()

    async def run(self) -> None:
        """Connect, write, reconnect with backoff; runs until cancelled."""
        backoff = self.min_backoff
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout)
                if self.key is not None:
                    await self._handshake(reader, writer)
            except (OSError, TimeoutError, AuthError, FrameError) as e:
                if self._connected:
                    self._log(f"peer {self.peer_id}: cannot connect to {self.host}:{self.port}: {e}")
                    self._connected = False
                self._queue.clear()  # stale by the time we reconnect; Raft resends what matters
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if not self._connected:
                self._log(f"peer {self.peer_id}: connected to {self.host}:{self.port}")
            self._connected = True
            backoff = self.min_backoff
            try:
                await self._pump(writer)
            except (OSError, ConnectionError, RuntimeError) as e:
                # uvloop raises RuntimeError for a write to a transport the peer already closed
                self._log(f"peer {self.peer_id}: connection lost: {e}")
                self._connected = False
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            await asyncio.sleep(backoff)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.key is not None
        try:
            await handshake_connect(reader, writer, Connector(self.key, "peer", nonce(), my_id=self.my_id,
                                                              expect=self.peer_id))
        except BaseException as e:
            writer.close()
            if isinstance(e, AuthError) and not self._auth_failed:  # once per run of failures
                self._log(f"peer {self.peer_id}: authentication failed: {e}")
                self._auth_failed = True
            raise
        self._auth_failed = False

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
            if writer.is_closing():
                raise ConnectionError("closed by peer")
            chunks = list(queue)
            queue.clear()
            writer.write(b"".join(chunks))
            await writer.drain()
            if writer.is_closing():
                raise ConnectionError("closed by peer")


async def serve_peer_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                deliver: Callable[[int, Message], None], note: Callable[[str, str], None], *,
                                key: Key | None, my_id: int, members: tuple[int, ...],
                                gate: ConnectionGate) -> None:
    """Read frames from one inbound peer connection until EOF or a protocol error."""

    async def session(frames: FrameReader, identity: Identity | None) -> None:
        sender = identity.member if identity is not None else 0
        async for frame in frames:
            group, msg = decode_group_message(frame)
            if sender and msg.from_ != sender:
                raise WireError(f"member {sender} sent a message claiming to be from {msg.from_}")
            deliver(group, msg)

    acceptor = Acceptor(key, my_id, nonce(), members=members) if key is not None else None
    await serve_connection(reader, writer, note, port="peer", gate=gate, acceptor=acceptor, idle=PEER_IDLE_SECONDS,
                           slow_frame=SLOW_FRAME_SECONDS, session=session, close=writer.close)
