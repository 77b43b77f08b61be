"""Frames from an asyncio stream: the one read loop shared by the peer and client ports.

``framing.py`` stays sans-I/O; this is its thin asyncio shell. A garbage, oversized or truncated
frame raises ``FrameError`` here, so each caller closes only that connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from raftlab.impl.net.framing import FrameDecoder

READ_CHUNK = 256 * 1024


async def read_frames(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Every complete frame until EOF; a partial frame at EOF raises FrameError (truncated)."""
    decoder = FrameDecoder()
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            decoder.eof()
            return
        for frame in decoder.feed(data):
            yield frame
