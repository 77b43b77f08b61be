"""A per-link TCP proxy mesh on 127.0.0.1 that can cut links silently and heal them.

Why: in the local lab all nodes share one address, so the kernel cannot drop "traffic from n2 to
n3" for us. Instead every ordered link (src, dst, port) gets its own listening socket; src's node
is told to reach dst through it, and the mesh forwards bytes to ``127.0.0.1:port``.

Guarantees:

* ``endpoint()`` is synchronous: the listener is bound and listening before it returns, so a node
  started right after can connect at once (the kernel queues the connection until the loop
  accepts it).
* A cut link behaves like a link whose packets are dropped, never like a reset: the mesh stops
  reading from both sides of every connection on that link, and stops accepting new ones (the
  kernel completes the handshake of the first few, up to the listen backlog, and then drops SYNs,
  so a client's connect hangs as in a real partition). Nothing is sent, no RST, no FIN, and no
  resource grows while a node keeps reconnecting. Bytes already written stay in
  the kernel buffers, exactly as unacknowledged TCP segments stay in a real sender's queue, and
  are delivered intact when the link heals (real TCP retransmits them). Dropping bytes from the
  middle of a stream instead would corrupt the framing in a way no packet loss can.
* A link is cut when either end holds a grudge against the other: a TCP connection cannot work
  in only one direction, as with iptables dropping on INPUT.
* Link faults (``ShapesLinks``): each direction of a connection (``i`` = 0 carries the link's
  src to dst, 1 the way back) may have a ``LinkShape``. Delay, jitter and rate hold each chunk
  read until its due time (``_Shaper``: due = max(previous due, now + delay + jitter draw),
  then + len / rate), so order is kept and nothing is lost, as TCP keeps them over a slow path;
  ``drop`` stops reading that direction only (a one-way blackhole: bytes wait in the kernel as
  for a cut link); ``reset`` closes the link's connections with SO_LINGER 0, so both peers get
  an RST. More than ``SHAPED_MAX`` bytes waiting in a shaper stops reading (back-pressure).
* No tasks: forwarding is done with non-blocking sockets and ``loop.add_reader``/``add_writer``
  callbacks owned by the mesh (``close()`` removes every one), which is also the fastest way to
  move bytes in asyncio (no stream or transport layers on the hot path).
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from raftlab.protocols import Grudge, Host, Link, LinkShape

CHUNK = 256 * 1024
SHAPED_MAX = 4 * 1024 * 1024
_RETRY = (BlockingIOError, InterruptedError)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkKey:
    src: Host
    dst: Host
    port: int


def cut(grudge: Grudge, a: Host, b: Host) -> bool:
    """Whether the link between ``a`` and ``b`` is cut by ``grudge`` (in either direction)."""
    return b in grudge.get(a, frozenset()) or a in grudge.get(b, frozenset())


class _Shaper:
    """Holds one direction's chunks until their due time (delay, jitter, rate), in order."""

    __slots__ = ("due", "queued", "release", "rng", "shape", "timer")

    def __init__(self, shape: LinkShape, release: Callable[[bytes], None]) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.queued: deque[tuple[float, bytes]] = deque()
        self.due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.release = release

    def size(self) -> int:
        return sum(len(b) for _, b in self.queued)

    def push(self, loop: asyncio.AbstractEventLoop, data: bytes) -> None:
        s = self.shape
        due = max(self.due, loop.time() + s.delay + (self.rng.uniform(0, s.jitter) if s.jitter else 0.0))
        if s.rate:
            due += len(data) / s.rate
        self.due = due
        self.queued.append((due, data))
        if self.timer is None:
            self.timer = loop.call_at(due, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        out = bytearray()
        while self.queued and self.queued[0][0] <= loop.time() + 0.0005:
            out += self.queued.popleft()[1]
        if out:
            self.release(bytes(out))
        if self.queued:
            self.timer = loop.call_at(self.queued[0][0], self._fire, loop)

    def cancel(self) -> bytes:
        """Stop; what was still held (delivered at once when a shape is lifted)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        held = b"".join(b for _, b in self.queued)
        self.queued.clear()
        return held


class _Pipe:
    """One proxied connection: two non-blocking sockets and a pending buffer per direction."""

    __slots__ = ("closed", "eof", "link", "loop", "pending", "reading", "shapers", "socks")

    def __init__(self, loop: asyncio.AbstractEventLoop, link: _Link, client: socket.socket,
                 upstream: socket.socket) -> None:
        self.loop = loop
        self.link = link
        self.socks = (client, upstream)
        self.pending: list[bytearray] = [bytearray(), bytearray()]  # bytes waiting to go to socks[i]
        self.reading = [False, False]
        self.eof = [False, False]  # socks[i] sent FIN
        self.closed = False
        self.shapers: list[_Shaper | None] = [None, None]  # shapers[i] holds what socks[i] sent
        self._make_shapers()

    def start(self) -> None:
        if not self.link.blocked:
            self.resume()

    def _may_read(self, i: int) -> bool:
        shape = self.link.shapes[i]
        shaper = self.shapers[i]
        return not (shape is not None and shape.drop) and not (shaper is not None and shaper.size() > SHAPED_MAX)

    def reshape(self) -> None:
        """Apply the link's current shapes; bytes a lifted shape still held go on at once."""
        self._make_shapers()
        if not self.link.blocked and not self.closed:
            self.resume()

    def _make_shapers(self) -> None:
        for i in (0, 1):
            shape, old = self.link.shapes[i], self.shapers[i]
            if old is not None and old.shape == shape:
                continue
            if old is not None:
                self._deliver(i, old.cancel())
            self.shapers[i] = None
            if shape is not None and not shape.drop and (shape.delay or shape.jitter or shape.rate):
                self.shapers[i] = _Shaper(shape, lambda data, i=i: self._deliver(i, data))

    def _deliver(self, i: int, data: bytes) -> None:
        """Queue ``data`` (read from socks[i]) for socks[1 - i] and let the writer send it."""
        if self.closed or not data:
            return
        self.pending[1 - i] += data
        if not self.link.blocked:  # a cut link sends nothing; resume() sends it after the heal
            self.loop.add_writer(self.socks[1 - i], self._on_writable, 1 - i)

    def resume(self) -> None:
        for i in (0, 1):
            if not self._may_read(i):
                self._read(i, False)
            elif not self.pending[1 - i]:
                self._read(i, True)
            else:
                self.loop.add_writer(self.socks[1 - i], self._on_writable, 1 - i)

    def freeze(self) -> None:
        for i in (0, 1):
            self._read(i, False)
            self.loop.remove_writer(self.socks[i])

    def _read(self, i: int, on: bool) -> None:
        if self.closed or self.reading[i] == on or (on and self.eof[i]):
            return
        self.reading[i] = on
        if on:
            self.loop.add_reader(self.socks[i], self._on_readable, i)
        else:
            self.loop.remove_reader(self.socks[i])

    def _on_readable(self, i: int) -> None:
        src, dst = self.socks[i], self.socks[1 - i]
        try:
            data = src.recv(CHUNK)
        except _RETRY:
            return
        except OSError:
            self.close()
            return
        if not data:
            self._read(i, False)
            self.eof[i] = True
            if not self.pending[1 - i]:
                self._finish(1 - i)
            return
        shaper = self.shapers[i]
        if shaper is not None:
            shaper.push(self.loop, data)
            if not self._may_read(i):
                self._read(i, False)
            return
        try:
            sent = dst.send(data)
        except _RETRY:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending[1 - i] += data[sent:]
            self._read(i, False)  # back-pressure: stop reading until dst drains
            self.loop.add_writer(dst, self._on_writable, 1 - i)

    def _on_writable(self, j: int) -> None:
        buf = self.pending[j]
        try:
            sent = self.socks[j].send(buf)
        except _RETRY:
            return
        except OSError:
            self.close()
            return
        del buf[:sent]
        if not buf:
            self.loop.remove_writer(self.socks[j])
            if self.eof[1 - j]:
                self._finish(j)
            elif not self.link.blocked and self._may_read(1 - j):
                self._read(1 - j, True)

    def _finish(self, j: int) -> None:
        """Pass a FIN on to socks[j]; close the pipe once both sides have finished."""
        try:
            self.socks[j].shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        if all(self.eof) and not any(self.pending):
            self.close()

    def close(self, *, reset: bool = False) -> None:
        """Close both sides; with ``reset``, with an RST (SO_LINGER 0), as a broken link does."""
        if self.closed:
            return
        self.freeze()
        self.closed = True
        for shaper in self.shapers:
            if shaper is not None:
                shaper.cancel()
        for s in self.socks:
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.link.pipes.discard(self)


class _Link:
    """The listener of one ordered link and the connections accepted on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: LinkKey, host: str, *, gateway: str | None = None,
                 target: str = "") -> None:
        self.loop = loop
        self.key = key
        self.upstream = (host, key.port)
        # Through a gateway (raftlab.lab.userns): connect to its unix socket, and say where to.
        self.gateway = gateway
        self.preamble = f"{target} {key.port}\n".encode() if gateway else b""
        self.listener = socket.create_server((host, 0), backlog=128)
        self.listener.setblocking(False)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.pipes: set[_Pipe] = set()
        self.blocked = False
        self.shapes: tuple[LinkShape | None, LinkShape | None] = (None, None)  # src->dst, dst->src
        loop.add_reader(self.listener, self._on_accept)

    def _on_accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except _RETRY:
                return
            except OSError:
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        if self.gateway is not None:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.setblocking(False)
            code = upstream.connect_ex(self.gateway)
        else:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = upstream.connect_ex(self.upstream)
        if code not in (0, errno.EINPROGRESS):
            # Nothing listens at dst (node down): close the client like a refused connect would.
            upstream.close()
            client.close()
            return
        pipe = _Pipe(self.loop, self, client, upstream)
        pipe.pending[1] += self.preamble
        self.pipes.add(pipe)
        if code == 0:
            pipe.start()
        else:
            self.loop.add_writer(upstream, self._on_connected, pipe)

    def _on_connected(self, pipe: _Pipe) -> None:
        upstream = pipe.socks[1]
        self.loop.remove_writer(upstream)
        if upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            pipe.close()
        else:
            pipe.start()

    def set_blocked(self, blocked: bool) -> None:
        if blocked == self.blocked:
            return
        self.blocked = blocked
        if blocked:
            self.loop.remove_reader(self.listener)
            for pipe in list(self.pipes):
                pipe.freeze()
        else:
            for pipe in list(self.pipes):
                pipe.resume()
            self.loop.add_reader(self.listener, self._on_accept)
            self._on_accept()  # what queued in the backlog meanwhile

    def set_shapes(self, shapes: tuple[LinkShape | None, LinkShape | None]) -> None:
        if shapes == self.shapes:
            return
        self.shapes = shapes
        for pipe in list(self.pipes):
            pipe.reshape()

    def close(self) -> None:
        self.loop.remove_reader(self.listener)
        self.listener.close()
        for pipe in list(self.pipes):
            pipe.close()


class GatewayLinks:
    """Listeners on 127.0.0.1 that reach addresses inside a lab's private network through its gateway.

    The control machine's clients use them (``endpoint(None, host, port)`` of the local lab in
    address mode); they are never partitioned.
    """

    def __init__(self, gateway: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._gateway = gateway
        self._links: dict[tuple[str, int], _Link] = {}

    def endpoint(self, address: str, port: int) -> tuple[str, int]:
        link = self._links.get((address, port))
        if link is None:
            key = LinkKey(src="control", dst=address, port=port)
            link = _Link(self._loop, key, "127.0.0.1", gateway=self._gateway, target=address)
            self._links[(address, port)] = link
        return link.address

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()


class ProxyMesh:
    """The local lab's ``Net``: one listener per ordered link, partitioned by grudge."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, host: str = "127.0.0.1") -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._host = host
        self._links: dict[LinkKey, _Link] = {}
        self._grudge: Grudge = {}
        self._shapes: dict[Link, LinkShape] = {}

    def endpoint(self, src: Host, dst: Host, port: int) -> tuple[str, int]:
        key = LinkKey(src=src, dst=dst, port=port)
        link = self._links.get(key)
        if link is None:
            link = _Link(self._loop, key, self._host)
            link.set_blocked(cut(self._grudge, src, dst))
            link.set_shapes(self._shapes_of(key))
            self._links[key] = link
        return link.address

    def _shapes_of(self, key: LinkKey) -> tuple[LinkShape | None, LinkShape | None]:
        return self._shapes.get((key.src, key.dst)), self._shapes.get((key.dst, key.src))

    async def shape(self, links: Mapping[Link, LinkShape]) -> None:
        """ShapesLinks: shape exactly these directions (replacing any earlier shapes)."""
        self._shapes = dict(links)
        for key, link in self._links.items():
            link.set_shapes(self._shapes_of(key))

    async def unshape(self) -> None:
        await self.shape({})

    async def reset(self, links: Sequence[Link]) -> None:
        """ShapesLinks: RST every connection carrying one of these directions."""
        hit = {frozenset(pair) for pair in links}
        for key, link in self._links.items():
            if frozenset((key.src, key.dst)) in hit:
                for pipe in list(link.pipes):
                    pipe.close(reset=True)

    def links(self) -> Iterable[LinkKey]:
        return list(self._links)

    def blocked(self, src: Host, dst: Host) -> bool:
        return cut(self._grudge, src, dst)

    async def partition(self, grudge: Grudge) -> None:
        """Cut exactly the links ``grudge`` names (replacing any earlier partition)."""
        self._grudge = {h: frozenset(v) for h, v in grudge.items()}
        for key, link in self._links.items():
            link.set_blocked(cut(self._grudge, key.src, key.dst))

    async def heal(self) -> None:
        await self.partition({})

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
