"""The asyncio DtKV client: finds the leader, follows redirects, and never hides uncertainty.

``KvClient(endpoints, timeout, group=G)`` talks to Raft group G (default 0) of a node process that
runs several (impl/groups.py): every request it sends names G, and leader hints are G's (a node
that does not serve G answers ``validation``). It keeps one pipelined connection per node it has
talked to (an ``asyncio.Protocol``, so no background tasks). A new connection starts with ``hello``,
which tells the client that node's id and whom it believes leads; that map turns a
``not-leader`` reply's leader hint (a node id) into an endpoint. With no usable hint it probes
the endpoints in order, backing off briefly when a whole round found no leader (an election).

Every failure is one of two kinds (style rule 10):

- ``DefiniteError``: the operation was definitely not applied: rejected before it was proposed
  (``NotLeader``, ``ValidationError``, ``TooLarge``, ``Unavailable`` when no node could be
  reached before sending), rejected when applied (``KeyNotFound``, ``NotADir``, ``IsADir``,
  ``DirNotEmpty``, ``CasMismatch``), or its log slot went to another term (``Dropped``).
- ``IndeterminateError``: a write was sent and then the connection died or the deadline
  passed; it may or may not have been applied. It is never retried.

Temp nodes, locks and watches (``put_temp``, ``mkdir_temp``, ``refresh``, ``try_lock``, ``lock``,
``unlock``, ``watch``): a try-lock retried by the same owner after an indeterminate answer gets
the same hold and token back, so ``lock`` may retry; ``watch`` is an async iterator of events
that follows the leader across failovers and resumes from the next index it was told, so it
sees every committed change under its key once, in order (``Compacted`` if the cluster no
longer keeps that far back).

Definite failures that say "try elsewhere" (not-leader, dropped, connection refused) are
retried until the per-call ``timeout``; reads, being idempotent, are also retried after a lost
connection. Everything else surfaces to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from raftlab.impl.dtkv.commands import (
    BatchGet,
    BatchPut,
    BatchRemove,
    Cas,
    Command,
    CommandError,
    ErrorKind,
    Get,
    List,
    Mkdir,
    MkdirTemp,
    Put,
    PutTemp,
    Refresh,
    Remove,
    TryLock,
    Unlock,
    Watch,
)
from raftlab.impl.net.auth import (
    CHALLENGE_PREFIX,
    HANDSHAKE_FRAME_MAX,
    NONCE_BYTES,
    AuthError,
    Connector,
    Key,
)
from raftlab.impl.net.codec import WireError, decode_reply, encode_request
from raftlab.impl.net.framing import MAX_FRAME_SIZE, FrameDecoder, FrameError, encode_frame

Endpoint = tuple[str, int]
RETRY_PAUSE = 0.05  # after a round of endpoints found no leader


class KvError(Exception):
    def __init__(self, message: str, *, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = body or {}


class DefiniteError(KvError):
    """The operation was definitely not applied."""

    kind = "definite"


class IndeterminateError(KvError):
    """The operation may or may not have been applied (timeout or connection lost after sending)."""


class NotLeader(DefiniteError):
    kind = ErrorKind.NOT_LEADER


class KeyNotFound(DefiniteError):
    kind = ErrorKind.KEY_NOT_FOUND


class NotADir(DefiniteError):
    kind = ErrorKind.NOT_A_DIR


class IsADir(DefiniteError):
    kind = ErrorKind.IS_A_DIR


class DirNotEmpty(DefiniteError):
    kind = ErrorKind.DIR_NOT_EMPTY


class CasMismatch(DefiniteError):
    """``current`` is the value found instead of the expected one (None: absent)."""

    kind = ErrorKind.CAS_MISMATCH

    @property
    def current(self) -> bytes | None:
        return self.body.get("value")


class TooLarge(DefiniteError):
    kind = ErrorKind.TOO_LARGE


class ValidationError(DefiniteError):
    kind = ErrorKind.VALIDATION


class Dropped(DefiniteError):
    kind = ErrorKind.DROPPED


class Unavailable(DefiniteError):
    """No node could be reached (or none led) before the deadline; nothing was sent."""

    kind = "unavailable"


class NotOwner(DefiniteError):
    kind = ErrorKind.NOT_OWNER


class LockHeld(DefiniteError):
    """``holder`` is the owner that holds the lock."""

    kind = ErrorKind.LOCK_HELD

    @property
    def holder(self) -> str:
        return bytes(self.body.get("value") or b"").decode(errors="replace")


class Compacted(DefiniteError):
    """The watch asked for events older than the node keeps: re-read, then watch from there."""

    kind = ErrorKind.COMPACTED


ERRORS: dict[str, type[DefiniteError]] = {
    cls.kind: cls for cls in (NotLeader, KeyNotFound, NotADir, IsADir, DirNotEmpty, CasMismatch, TooLarge,
                              ValidationError, Dropped, NotOwner, LockHeld, Compacted)}
LOCK_POLL = 0.05  # between try-locks while queued for a lock


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchEvent:
    """One committed change: ``kind`` put (``value`` set), dir (created) or del (removed)."""

    index: int
    kind: str
    key: str
    value: bytes | None


class _ConnectionLost(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One pipelined connection: replies resolve the futures of their request ids."""

    def __init__(self, endpoint: Endpoint, connector: Connector | None = None) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[tuple[str | None, dict[str, Any]]]] = {}
        self.decoder = FrameDecoder(HANDSHAKE_FRAME_MAX if connector is not None else MAX_FRAME_SIZE)
        self.lost: Exception | None = None
        self.node_id = 0
        self._out: list[bytes] = []
        # the handshake (net/auth.py): challenge in, answer out, the node's proof in
        self.connector = connector
        self.authenticated: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answered = False
        if connector is None:
            self.authenticated.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def _handshake(self, frame: bytes) -> None:
        assert self.connector is not None and self.transport is not None
        if not self._answered:
            self.transport.write(encode_frame(self.connector.answer(frame)))
            self._answered = True
            return
        self.connector.confirm(frame)
        self.decoder.max_size = MAX_FRAME_SIZE
        self.authenticated.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self.decoder.feed(data):
                if not self.authenticated.done():
                    self._handshake(frame)
                    continue
                if frame.startswith(CHALLENGE_PREFIX):
                    raise AuthError("the node requires authentication: give a key (--key-file)")
                request_id, error, body = decode_reply(frame)
                fut = self.pending.pop(request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result((error, body))
        except AuthError as e:
            self._fail(_ConnectionLost(f"authentication failed: {e}"))
            assert self.transport is not None
            self.transport.abort()
        except (FrameError, WireError) as e:
            self._fail(_ConnectionLost(f"{self.endpoint[0]}:{self.endpoint[1]} sent garbage: {e}"))
            assert self.transport is not None
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_ConnectionLost(f"connection to {self.endpoint[0]}:{self.endpoint[1]} lost"
                                   + (f": {exc}" if exc else "")))

    def _fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        if not self.authenticated.done():
            self.authenticated.set_exception(exc)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self.pending.clear()

    def send(self, request_id: int, frame: bytes) -> asyncio.Future[tuple[str | None, dict[str, Any]]]:
        if self.lost is not None or self.transport is None:
            raise _ConnectionLost(str(self.lost or f"not connected to {self.endpoint[0]}:{self.endpoint[1]}"))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[str | None, dict[str, Any]]] = loop.create_future()
        self.pending[request_id] = fut
        if not self._out:  # every request made in one loop iteration leaves in one write()
            loop.call_soon(self._flush)
        self._out.append(frame)
        return fut

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.lost is None and self.transport is not None and out:
            self.transport.write(b"".join(out))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _build(cls: Any, **fields: Any) -> Command:
    """Build a command, turning a local validation failure into its DefiniteError."""
    try:
        return cls(**fields)
    except CommandError as e:
        raise ERRORS.get(e.kind, ValidationError)(e.message) from None


class KvClient:
    def __init__(self, endpoints: list[Endpoint] | list[tuple[str, int]], *, timeout: float = 1.0,
                 key: Key | None = None, group: int = 0) -> None:
        if not endpoints:
            raise ValueError("KvClient needs at least one endpoint")
        if group < 0:
            raise ValueError(f"group must be >= 0, not {group}")
        self.group = group  # every request (hello, status and admin included) is for this Raft group
        self.key = key  # a cluster, rw or ro key: every connection authenticates (net/auth.py)
        self.endpoints: list[Endpoint] = [(h, int(p)) for h, p in endpoints]
        self.timeout = timeout
        self._conns: dict[Endpoint, _Connection] = {}
        self._connect_locks: dict[Endpoint, asyncio.Lock] = {}  # one connection attempt per endpoint
        self._by_id: dict[int, Endpoint] = {}
        self._leader: Endpoint | None = None
        self.answered_by: Endpoint | None = None  # the node whose reply decided the last call (a report names it)
        self._ids = itertools.count(1)

    # -- the public operations ---------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return (await self._call(_build(Get, key=key))).get("value")

    async def put(self, key: str, value: bytes) -> int:
        return (await self._call(_build(Put, key=key, value=value)))["index"]

    async def cas(self, key: str, expected: bytes | None, new: bytes) -> int:
        return (await self._call(_build(Cas, key=key, expected=expected, new=new)))["index"]

    async def remove(self, key: str) -> int:
        return (await self._call(_build(Remove, key=key)))["index"]

    async def mkdir(self, key: str) -> int:
        return (await self._call(_build(Mkdir, key=key)))["index"]

    async def list(self, key: str = "") -> list[str]:
        return list((await self._call(_build(List, key=key))).get("children", []))

    async def batch_put(self, items: dict[str, bytes]) -> int:
        return (await self._call(_build(BatchPut, items=tuple(items.items()))))["index"]

    async def batch_get(self, keys: list[str]) -> list[bytes | None]:
        body = await self._call(_build(BatchGet, keys=tuple(keys)))
        return list(body.get("values") or [None] * len(keys))

    async def batch_remove(self, keys: list[str]) -> int:
        return (await self._call(_build(BatchRemove, keys=tuple(keys))))["index"]

    async def put_temp(self, key: str, value: bytes, owner: str, ttl_ms: int) -> int:
        return (await self._call(_build(PutTemp, key=key, value=value, owner=owner, ttl_ms=ttl_ms)))["index"]

    async def mkdir_temp(self, key: str, owner: str, ttl_ms: int) -> int:
        return (await self._call(_build(MkdirTemp, key=key, owner=owner, ttl_ms=ttl_ms)))["index"]

    async def refresh(self, key: str, owner: str, ttl_ms: int) -> int:
        return (await self._call(_build(Refresh, key=key, owner=owner, ttl_ms=ttl_ms)))["index"]

    async def try_lock(self, key: str, owner: str, lease_ms: int, *, wait: bool = False) -> int:
        """The fencing token of the hold (raises LockHeld; ``wait`` queues for a hand-off)."""
        return (await self._call(_build(TryLock, key=key, owner=owner, lease_ms=lease_ms, wait=wait)))["token"]

    async def lock(self, key: str, owner: str, lease_ms: int, *, wait: float) -> int:
        """Acquire within ``wait`` seconds (queued, so unlock or expiry hands it over); the
        fencing token. On giving up, leaves the queue (best effort) and raises LockHeld."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                return await self.try_lock(key, owner, lease_ms, wait=True)
            except (LockHeld, IndeterminateError, Unavailable):
                if asyncio.get_running_loop().time() >= deadline:
                    with contextlib.suppress(KvError):
                        await self.unlock(key, owner)  # leave the queue; if it was just handed over, release
                    raise
            await asyncio.sleep(LOCK_POLL)

    async def unlock(self, key: str, owner: str) -> int:
        return (await self._call(_build(Unlock, key=key, owner=owner)))["index"]

    async def watch_poll(self, key: str, from_index: int) -> tuple[list[WatchEvent], int]:
        """One long poll: the events at or after ``from_index`` and the index to poll next."""
        body = await self._call(_build(Watch, key=key, from_index=from_index))
        events = [WatchEvent(index=e[0], kind=e[1], key=e[2], value=e[3]) for e in body.get("events", [])]
        return events, int(body["next"])

    async def watch(self, key: str, from_index: int = 0) -> AsyncIterator[WatchEvent]:
        """Every committed change at or under ``key`` from ``from_index`` (0: from now), forever.
        Lost connections, timeouts and leader changes are retried from the same index (a poll
        changes nothing); Compacted and validation errors end the iteration by raising."""
        next_index = from_index
        while True:
            try:
                events, next_index = await self.watch_poll(key, next_index)
            except (IndeterminateError, Unavailable):
                continue
            for event in events:
                yield event

    async def status(self) -> list[dict[str, Any]]:
        """Every endpoint's status, or ``{"endpoint", "error"}`` for one that did not answer."""
        return list(await asyncio.gather(*(self._node_request(ep, "status") for ep in self.endpoints)))

    async def snapshot(self) -> list[dict[str, Any]]:
        """Ask every endpoint to take a snapshot now (each member snapshots its own state); each
        answers once it is durable: ``{"endpoint", "index", "bytes"}`` or ``{"endpoint", "error"}``."""
        return list(await asyncio.gather(*(self._node_request(ep, "snapshot") for ep in self.endpoints)))

    async def groups(self) -> list[dict[str, Any]]:
        """Every endpoint's Raft groups: ``{"endpoint", "id", "groups"}`` or ``{"endpoint", "error"}``."""
        return list(await asyncio.gather(*(self._node_request(ep, "groups") for ep in self.endpoints)))

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # -- machinery ---------------------------------------------------------------------------

    async def _node_request(self, ep: Endpoint, op: str) -> dict[str, Any]:
        """One node-level request (``status``, ``snapshot``) to one endpoint, never raising."""
        name = f"{ep[0]}:{ep[1]}"
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection(ep)
                rid = next(self._ids)
                error, body = await conn.send(rid, encode_frame(encode_request(rid, op, group=self.group)))
            if error is not None:
                return {"endpoint": name, "error": f"{error}: {body.get('message', '')}"}
            return {"endpoint": name, **(body["status"] if op == "status" else body)}
        except (OSError, TimeoutError, _ConnectionLost, KeyError, KvError) as e:
            return {"endpoint": name, "error": str(e) or type(e).__name__}

    async def _connection(self, ep: Endpoint) -> _Connection:
        conn = self._conns.get(ep)
        if conn is not None and conn.lost is None:
            return conn
        async with self._connect_locks.setdefault(ep, asyncio.Lock()):
            conn = self._conns.get(ep)
            if conn is not None and conn.lost is None:  # another caller connected meanwhile
                return conn
            key = self.key
            connector = Connector(key, key.client_role(), os.urandom(NONCE_BYTES)) if key is not None else None
            _, conn = await asyncio.get_running_loop().create_connection(lambda: _Connection(ep, connector),
                                                                         ep[0], ep[1])
            try:
                await conn.authenticated
                rid = next(self._ids)
                error, body = await conn.send(rid, encode_frame(encode_request(rid, "hello", group=self.group)))
            except BaseException:
                conn.close()
                raise
            if error is not None:  # an unknown group: every request to this node would be refused alike
                conn.close()
                raise ERRORS.get(error, DefiniteError)(body.get("message") or error, body=body)
            conn.node_id = int(body.get("id", 0))
            self._by_id[conn.node_id] = ep
            leader = self._by_id.get(int(body.get("leader", 0)))
            if leader is not None and self._leader is None:
                self._leader = leader
            self._conns[ep] = conn
            return conn

    def _next_endpoint(self, tried: list[Endpoint]) -> Endpoint | None:
        if self._leader is not None and self._leader not in tried:
            return self._leader
        for ep in self.endpoints:
            if ep not in tried:
                return ep
        return None

    async def admin(self, action: str, **args: Any) -> dict[str, Any]:
        """One operator request (impl/admin.py: membership, change, leave, abort, transfer),
        sent to the leader as a write is (following leader hints)."""
        return await self._request(f"admin {action}", True,
                                   lambda rid: encode_request(rid, "admin", args={"action": action, **args},
                                                              group=self.group))

    async def _call(self, cmd: Command) -> dict[str, Any]:
        return await self._request(f"{cmd.op} {getattr(cmd, 'key', '')!r}", cmd.write,
                                   lambda rid: encode_request(rid, cmd.op, cmd, group=self.group))

    async def _request(self, what: str, write: bool, encode: Callable[[int], bytes]) -> dict[str, Any]:
        state = _CallState()
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + self.timeout):
                return await self._attempts(what, write, encode, state)
        except TimeoutError:
            if state.sent_to is not None:  # a read too: we cannot say whether it was served
                ep = state.sent_to
                raise IndeterminateError(f"{what} sent to {ep[0]}:{ep[1]}, then timed out after {self.timeout}s: "
                                         "it may or may not have been applied") from None
            raise Unavailable(f"{what}: no answer within {self.timeout}s ({state.problem})") from None

    async def _attempts(self, what: str, write: bool, encode: Callable[[int], bytes],
                        state: _CallState) -> dict[str, Any]:
        tried: list[Endpoint] = []
        while True:
            ep = self._next_endpoint(tried)
            if ep is None:
                tried.clear()
                await asyncio.sleep(RETRY_PAUSE)
                continue
            try:
                conn = await self._connection(ep)
            except (OSError, _ConnectionLost) as e:
                state.problem = f"{ep[0]}:{ep[1]}: {e or type(e).__name__}"
                tried.append(ep)
                if self._leader == ep:
                    self._leader = None
                continue
            rid = next(self._ids)
            try:
                fut = conn.send(rid, encode_frame(encode(rid)))
            except _ConnectionLost as e:
                state.problem = str(e)
                tried.append(ep)
                continue
            state.sent_to = ep
            try:
                error, body = await fut
            except _ConnectionLost as e:
                if write:
                    raise IndeterminateError(f"{what} sent to {ep[0]}:{ep[1]}, "
                                             f"then {e}: it may or may not have been applied") from None
                state.problem = str(e)
                tried.append(ep)
                if self._leader == ep:
                    self._leader = None
                continue
            finally:
                conn.pending.pop(rid, None)
            self.answered_by = ep
            if error is None:
                self._leader = ep
                return body
            if error in (ErrorKind.NOT_LEADER, ErrorKind.DROPPED):
                state.sent_to = None  # definitely not applied: safe to send elsewhere
                tried.append(ep)
                hint = self._by_id.get(int(body.get("leader") or 0))
                self._leader = hint if hint != ep else None
                state.problem = f"{ep[0]}:{ep[1]} answered {error}"
                if hint is None or hint in tried:
                    await asyncio.sleep(RETRY_PAUSE / 5)
                continue
            cls = ERRORS.get(error, DefiniteError)
            raise cls(body.get("message") or error, body=body)


class _CallState:
    """What one call has done so far: whether a write may be in flight, and the last problem."""

    __slots__ = ("problem", "sent_to")

    def __init__(self) -> None:
        self.sent_to: Endpoint | None = None
        self.problem = "no endpoint answered"
