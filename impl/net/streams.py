"""Frames from an asyncio stream, and the limits every connection lives under: the one read path
shared by the peer and client ports.

``framing.py`` and ``auth.py`` stay sans-I/O; this is their thin asyncio shell. ``FrameReader``
yields whole frames and enforces, per connection:

* a buffer budget: until the handshake succeeds the decoder accepts frames of at most
  ``auth.HANDSHAKE_FRAME_MAX`` bytes, so an unauthenticated connection holds a few hundred bytes,
  not the 16 MiB a member's frame may reach (``authenticated()`` lifts it);
* an idle timeout (no byte for ``idle`` seconds closes it) and a slow-frame timeout (a frame
  begun but not finished within ``slow_frame`` seconds closes it: a peer trickling one byte a
  second holds nothing for long);

and ``handshake_accept`` / ``handshake_connect`` run the three-frame handshake within
``HANDSHAKE_SECONDS``; ``serve_connection`` is the whole life of an inbound connection on either
port. ``ConnectionGate`` caps the open connections of a port. A garbage,
oversized, truncated or slow frame raises ``FrameError``, a failed handshake ``AuthError``, so
each caller closes only that connection; log lines about them go through a ``Refusals``
(``raft/validate.py``) on a clock of tenths of seconds, so a flood writes one line per kind per
10 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from raftlab.impl.net.auth import (
    HANDSHAKE_FRAME_MAX,
    NONCE_BYTES,
    Acceptor,
    AuthError,
    Connector,
    Identity,
    refusal,
)
from raftlab.impl.net.codec import WireError
from raftlab.impl.net.framing import MAX_FRAME_SIZE, FrameDecoder, FrameError, encode_frame
from raftlab.impl.raft.validate import Refusals

READ_CHUNK = 256 * 1024
HANDSHAKE_SECONDS = 5.0


class FrameReader:
    """Whole frames from ``reader`` within the connection's limits (see the module docstring)."""

    def __init__(self, reader: asyncio.StreamReader, *, max_size: int = MAX_FRAME_SIZE,
                 idle: float | None = None, slow_frame: float | None = None) -> None:
        self.reader = reader
        self.decoder = FrameDecoder(max_size)
        self.idle = idle
        self.slow_frame = slow_frame
        self._ready: deque[bytes] = deque()
        self._started: float | None = None  # when the frame being read began to arrive

    def authenticated(self) -> None:
        self.decoder.max_size = MAX_FRAME_SIZE

    async def next(self) -> bytes | None:
        """The next frame, or None at a clean end of stream."""
        while not self._ready:
            wait = self.idle
            if self._started is not None and self.slow_frame is not None:
                left = self._started + self.slow_frame - time.monotonic()
                wait = left if wait is None else min(wait, left)
            try:
                async with asyncio.timeout(wait):
                    data = await self.reader.read(READ_CHUNK)
            except TimeoutError:
                if self._started is not None and self.slow_frame is not None:
                    raise FrameError(f"a frame took longer than {self.slow_frame:g}s to arrive") from None
                raise FrameError(f"idle for {self.idle:g}s") from None
            if not data:
                self.decoder.eof()
                return None
            self._ready.extend(self.decoder.feed(data))
            self._started = None if self.decoder.pending() == 0 else (self._started or time.monotonic())
        return self._ready.popleft()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (frame := await self.next()) is not None:
            yield frame


async def handshake_accept(frames: FrameReader, writer: asyncio.StreamWriter, acceptor: Acceptor) -> Identity:
    """Run the acceptor's side; on failure tell the other end why, then raise AuthError."""
    async with asyncio.timeout(HANDSHAKE_SECONDS):
        writer.write(encode_frame(acceptor.challenge()))
        answer = await frames.next()
        if answer is None:
            raise AuthError("closed before answering the challenge")
        try:
            identity, reply = acceptor.check(answer)
        except AuthError as e:
            writer.write(encode_frame(refusal(str(e))))
            raise
        writer.write(encode_frame(reply))
    frames.authenticated()
    return identity


async def handshake_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            connector: Connector) -> int:
    """Run the connector's side; returns the acceptor's member id."""
    frames = FrameReader(reader, max_size=HANDSHAKE_FRAME_MAX)
    async with asyncio.timeout(HANDSHAKE_SECONDS):
        challenge = await frames.next()
        if challenge is None:
            raise AuthError("closed before sending a challenge (is authentication on there?)")
        writer.write(encode_frame(connector.answer(challenge)))
        reply = await frames.next()
        if reply is None:
            raise AuthError("closed during the handshake (our key was refused)")
        return connector.confirm(reply)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           note: Callable[[str, str], None], *, port: str, gate: ConnectionGate,
                           acceptor: Acceptor | None, idle: float, slow_frame: float,
                           session: Callable[[FrameReader, Identity | None], Awaitable[None]],
                           close: Callable[[], None]) -> None:
    """One inbound connection of either port: admit it under the cap, run the handshake (with a
    key), then ``session``; every way it can go wrong closes this connection alone, with one
    rate-limited line of kind ``<port>-<problem>``."""
    peer = writer.get_extra_info("peername")
    if not gate.admit():
        note(f"{port}-cap", f"{port} connection from {peer}: refused, {gate.limit} {port} connections are open")
        writer.close()
        return
    frames = FrameReader(reader, max_size=HANDSHAKE_FRAME_MAX if acceptor is not None else MAX_FRAME_SIZE,
                         idle=idle, slow_frame=slow_frame)
    try:
        identity = await handshake_accept(frames, writer, acceptor) if acceptor is not None else None
        await session(frames, identity)
    except AuthError as e:
        note(f"{port}-auth", f"{port} connection from {peer}: authentication failed ({e}); closing it")
    except TimeoutError:
        note(f"{port}-auth", f"{port} connection from {peer}: no handshake within {HANDSHAKE_SECONDS:g}s; closing it")
    except (FrameError, WireError) as e:
        note(f"{port}-{type(e).__name__}", f"{port} connection from {peer}: {e}; closing it")
    except (OSError, ConnectionError):
        pass
    except asyncio.CancelledError:  # the node is stopping; asyncio's stream callback would log it
        return
    finally:
        gate.release()
        close()


def nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


class ConnectionGate:
    """At most ``limit`` open connections on one port; ``admit`` says whether one more may stay."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def admit(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


def shell_log(log: Callable[[str], None]) -> Callable[[str, str], None]:
    """A rate-limited logger for connection problems: ``(kind, line)``, one line per kind per 10 s."""
    refusals = Refusals(log)

    def note(kind: str, line: str) -> None:
        refusals.note(kind, line, int(time.monotonic() * 10))

    return note
