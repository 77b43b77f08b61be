"""Length-prefixed frames, sans-I/O: bytes in, whole frames out.

Every byte that crosses a raftlab socket (peer or client port) is a frame: a 4-byte big-endian
payload length followed by the payload (one msgpack value, see ``codec.py``). The decoder holds
no socket; the shell feeds it whatever ``read()`` returned and gets back the complete frames, in
order. It guarantees:

- a frame is returned only once all of its bytes arrived (partial frames wait in the buffer);
- a length above ``max_size`` raises ``FrameError`` at once, before the payload is buffered, so a
  peer cannot make the node allocate gigabytes by sending four bytes;
- ``eof()`` raises ``FrameError`` if the stream ended inside a frame (a truncated frame).

A ``FrameError`` poisons only the connection it came from: the shell logs it and closes that one
connection (style rule 8).
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">I")
MAX_FRAME_SIZE = 16 * 1024 * 1024  # bytes of payload; a batch of entries stays far below this


class FrameError(Exception):
    """The byte stream is not a valid sequence of frames (oversize or truncated)."""


def encode_frame(payload: bytes, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """The wire form of one payload; refuses (locally) a payload the peer would refuse."""
    if len(payload) > max_size:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds the maximum of {max_size}")
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frames. Invariant: ``_buffer`` never holds a complete frame."""

    __slots__ = ("_buffer", "_need", "max_size")

    def __init__(self, max_size: int = MAX_FRAME_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._need = -1  # payload length of the frame being read, -1 while reading a header

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every frame completed by them, in order."""
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while True:
            if self._need < 0:
                if end - pos < 4:
                    break
                (size,) = HEADER.unpack_from(buf, pos)
                if size > self.max_size:
                    self._buffer = bytearray()
                    raise FrameError(f"frame of {size} bytes exceeds the maximum of {self.max_size}")
                pos += 4
                self._need = size
            if end - pos < self._need:
                break
            frames.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = -1
        if pos:
            del buf[:pos]
        return frames

    def pending(self) -> int:
        """Bytes buffered towards an incomplete frame (0 at a frame boundary)."""
        return len(self._buffer) + (4 if self._need >= 0 else 0)

    def eof(self) -> None:
        """The stream ended; raise ``FrameError`` if it ended inside a frame."""
        if self._need >= 0 or self._buffer:
            have = len(self._buffer)
            want = f"{self._need} payload bytes" if self._need >= 0 else "a 4-byte header"
            raise FrameError(f"connection closed inside a frame: expected {want}, got {have}")
