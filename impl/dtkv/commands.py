"""DtKV commands, their results and their typed errors: the vocabulary of the replicated tree.

A command is a frozen value validated when built (style rule 8): a bad key or an oversized value
raises ``CommandError`` naming the field, so nothing malformed reaches the Raft log. Keys are
'.'-separated paths (``"a.b.c"``); ``""`` is the root directory and is valid only where a
directory is expected (``list``, ``mkdir`` of its children's parent). Every command has a wire
form (a msgpack-ready list ``[op, ...fields]``) used both in Raft entries and on the client port;
``from_wire`` is the only way bytes become commands and names the field it rejects.

Error kinds are the strings clients see; each means the command was definitely not applied
(a write that fails validation at apply time changes nothing: batches are all-or-nothing).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_BATCH = 1024
MAX_OWNER_BYTES = 128
MIN_TTL_MS = 10
MAX_TTL_MS = 7 * 24 * 3600 * 1000


class ErrorKind(enum.StrEnum):
    NOT_LEADER = "not-leader"  # this node cannot propose/read; the reply carries a leader hint
    KEY_NOT_FOUND = "key-not-found"
    NOT_A_DIR = "not-a-dir"  # a path component or the listed key holds a value
    IS_A_DIR = "is-a-dir"  # a value operation on a directory
    DIR_NOT_EMPTY = "dir-not-empty"
    CAS_MISMATCH = "cas-mismatch"
    TOO_LARGE = "too-large"
    VALIDATION = "validation"  # malformed request (names the field)
    DROPPED = "dropped"  # the proposal's log slot was taken by another term's entry: never applied
    NOT_OWNER = "not-owner"  # the key is a temp node or lock of another owner (or not a lease at all)
    LOCK_HELD = "lock-held"  # try-lock found another holder; the reply's value names it
    COMPACTED = "compacted"  # a watch from an index older than the node keeps: re-read, then watch


class CommandError(Exception):
    """A command that cannot be built or applied; ``kind`` is the wire error string."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def check_key(key: object, field: str = "key", *, root_ok: bool = False) -> str:
    """Validate one tree key; returns it. Raises CommandError naming ``field``."""
    if not isinstance(key, str):
        raise CommandError(ErrorKind.VALIDATION, f"field '{field}': expected a string key, got {type(key).__name__}")
    if key == "":
        if root_ok:
            return key
        raise CommandError(ErrorKind.VALIDATION, f"field '{field}': the root '' is not a value key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise CommandError(ErrorKind.TOO_LARGE, f"field '{field}': key longer than {MAX_KEY_BYTES} bytes")
    if "" in key.split("."):
        raise CommandError(ErrorKind.VALIDATION, f"field '{field}': empty path segment in {key!r}")
    return key


def check_value(value: object, field: str = "value") -> bytes:
    if not isinstance(value, bytes):
        raise CommandError(ErrorKind.VALIDATION, f"field '{field}': expected bytes, got {type(value).__name__}")
    if len(value) > MAX_VALUE_BYTES:
        raise CommandError(ErrorKind.TOO_LARGE, f"field '{field}': {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    return value


def check_batch(items: object, field: str) -> tuple[Any, ...]:
    if not isinstance(items, tuple | list):
        raise CommandError(ErrorKind.VALIDATION, f"field '{field}': expected a list")
    if len(items) > MAX_BATCH:
        raise CommandError(ErrorKind.TOO_LARGE, f"field '{field}': {len(items)} items exceeds {MAX_BATCH}")
    return tuple(items)


def check_owner(owner: object) -> str:
    if not isinstance(owner, str) or not owner:
        raise CommandError(ErrorKind.VALIDATION, "field 'owner': expected a non-empty string")
    if len(owner.encode()) > MAX_OWNER_BYTES:
        raise CommandError(ErrorKind.TOO_LARGE, f"field 'owner': longer than {MAX_OWNER_BYTES} bytes")
    return owner


def check_ttl(ttl_ms: object, field: str = "ttl_ms") -> int:
    if type(ttl_ms) is not int or not MIN_TTL_MS <= ttl_ms <= MAX_TTL_MS:
        raise CommandError(ErrorKind.VALIDATION,
                           f"field '{field}': expected milliseconds in [{MIN_TTL_MS}, {MAX_TTL_MS}], got {ttl_ms!r:.40}")
    return ttl_ms


def check_index(index: object, field: str) -> int:
    if type(index) is not int or index < 0:
        raise CommandError(ErrorKind.VALIDATION, f"field '{field}': expected a raft index >= 0, got {index!r:.40}")
    return index


@dataclass(frozen=True, slots=True, kw_only=True)
class Put:
    key: str
    value: bytes
    op = "put"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)
        check_value(self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Get:
    key: str
    op = "get"
    write = False

    def __post_init__(self) -> None:
        check_key(self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Remove:
    key: str
    op = "remove"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mkdir:
    key: str
    op = "mkdir"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class List:
    key: str = ""
    op = "list"
    write = False

    def __post_init__(self) -> None:
        check_key(self.key, root_ok=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cas:
    """Set ``key`` to ``new`` iff its value is ``expected`` (``None``: iff it is absent)."""

    key: str
    expected: bytes | None
    new: bytes
    op = "cas"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.expected is not None:
            check_value(self.expected, "expected")
        check_value(self.new, "new")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPut:
    items: tuple[tuple[str, bytes], ...]
    op = "batch_put"
    write = True

    def __post_init__(self) -> None:
        check_batch(self.items, "items")
        total = 0
        for i, pair in enumerate(self.items):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise CommandError(ErrorKind.VALIDATION, f"field 'items[{i}]': expected a (key, value) pair")
            check_key(pair[0], f"items[{i}].key")
            total += len(check_value(pair[1], f"items[{i}].value"))
        if total > MAX_VALUE_BYTES:
            raise CommandError(ErrorKind.TOO_LARGE, f"field 'items': {total} bytes exceeds {MAX_VALUE_BYTES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchGet:
    keys: tuple[str, ...]
    op = "batch_get"
    write = False

    def __post_init__(self) -> None:
        check_batch(self.keys, "keys")
        for i, key in enumerate(self.keys):
            check_key(key, f"keys[{i}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRemove:
    """Remove every key that exists; all-or-nothing if any is a non-empty directory."""

    keys: tuple[str, ...]
    op = "batch_remove"
    write = True

    def __post_init__(self) -> None:
        check_batch(self.keys, "keys")
        for i, key in enumerate(self.keys):
            check_key(key, f"keys[{i}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class PutTemp:
    """Create or update a temporary value owned by ``owner``; it lives while refreshed within
    ``ttl_ms`` (writing it again by its owner is a refresh)."""

    key: str
    value: bytes
    owner: str
    ttl_ms: int
    op = "put_temp"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)
        check_value(self.value)
        check_owner(self.owner)
        check_ttl(self.ttl_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class _OwnedTtl:
    key: str
    owner: str
    ttl_ms: int

    def __post_init__(self) -> None:
        check_key(self.key)
        check_owner(self.owner)
        check_ttl(self.ttl_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class MkdirTemp(_OwnedTtl):
    """A temporary directory: on expiry it goes with everything under it."""

    op = "mkdir_temp"
    write = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Refresh(_OwnedTtl):
    """Restart the TTL of a temp node/dir, or the lease of a held lock, by its owner."""

    op = "refresh"
    write = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TryLock:
    """Take the lock ``key`` for ``owner`` with a lease; when held by another, fail with
    ``lock-held`` and (``wait``) queue the owner to be handed the lock on unlock or expiry."""

    key: str
    owner: str
    lease_ms: int
    wait: bool = False
    op = "try_lock"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)
        check_owner(self.owner)
        check_ttl(self.lease_ms, "lease_ms")
        if type(self.wait) is not bool:
            raise CommandError(ErrorKind.VALIDATION, "field 'wait': expected a bool")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlock:
    """Release the lock (its holder), or leave its queue (a waiter)."""

    key: str
    owner: str
    op = "unlock"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)
        check_owner(self.owner)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expire:
    """The leader's decision that the lease on ``key`` last set at raft index ``index`` ran out;
    applied only if that is still the lease's index (a refresh since makes it a no-op). Proposed
    by the leader's timer only: the client port refuses it."""

    key: str
    index: int
    op = "expire"
    write = True

    def __post_init__(self) -> None:
        check_key(self.key)
        check_index(self.index, "index")


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """Stream the changes at or under ``key`` (``""``: everything) from raft index ``from_index``;
    answered by the node (any node: events are committed entries), never proposed."""

    key: str
    from_index: int
    op = "watch"
    write = False

    def __post_init__(self) -> None:
        check_key(self.key, root_ok=True)
        check_index(self.from_index, "from_index")


Command = (Put | Get | Remove | Mkdir | List | Cas | BatchPut | BatchGet | BatchRemove
           | PutTemp | MkdirTemp | Refresh | TryLock | Unlock | Expire | Watch)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What applying or reading a command produced, at Raft index ``index``.

    ``error`` is None on success; ``value`` answers get/cas-mismatch (the current value),
    ``values`` batch_get, ``children`` list, ``count`` batch_remove.
    """

    index: int
    error: ErrorKind | None = None
    message: str = ""
    value: bytes | None = None
    values: tuple[bytes | None, ...] = ()
    children: tuple[str, ...] = ()
    count: int = 0
    token: int = 0  # try_lock: the fencing token of the hold (the raft index that granted it)


def to_wire(cmd: Command) -> list[Any]:
    """The msgpack-ready form of a command: ``[op, ...fields]``."""
    match cmd:
        case Put(key=k, value=v):
            return ["put", k, v]
        case Cas(key=k, expected=e, new=n):
            return ["cas", k, e, n]
        case BatchPut(items=items):
            return ["batch_put", [list(p) for p in items]]
        case BatchGet(keys=keys) | BatchRemove(keys=keys):
            return [cmd.op, list(keys)]
        case PutTemp(key=k, value=v, owner=o, ttl_ms=t):
            return ["put_temp", k, v, o, t]
        case MkdirTemp(key=k, owner=o, ttl_ms=t) | Refresh(key=k, owner=o, ttl_ms=t):
            return [cmd.op, k, o, t]
        case TryLock(key=k, owner=o, lease_ms=t, wait=w):
            return ["try_lock", k, o, t, w]
        case Unlock(key=k, owner=o):
            return ["unlock", k, o]
        case Expire(key=k, index=i) | Watch(key=k, from_index=i):
            return [cmd.op, k, i]
        case _:
            return [cmd.op, cmd.key]


def _need(obj: list[Any], n: int, op: str) -> None:
    if len(obj) != n:
        raise CommandError(ErrorKind.VALIDATION, f"field 'command': '{op}' takes {n - 1} arguments, got {len(obj) - 1}")


def from_wire(obj: object) -> Command:
    """Build a command from its wire form; CommandError names the field that is wrong."""
    if not isinstance(obj, list | tuple) or not obj or not isinstance(obj[0], str):
        raise CommandError(ErrorKind.VALIDATION, "field 'command': expected [op, ...arguments]")
    obj = list(obj)
    op = obj[0]
    simple = {"get": Get, "remove": Remove, "mkdir": Mkdir, "list": List}
    if op in simple:
        _need(obj, 2, op)
        return simple[op](key=obj[1])
    if op == "put":
        _need(obj, 3, op)
        return Put(key=obj[1], value=obj[2])
    if op == "cas":
        _need(obj, 4, op)
        return Cas(key=obj[1], expected=obj[2], new=obj[3])
    if op == "batch_put":
        _need(obj, 2, op)
        items = check_batch(obj[1], "items")
        return BatchPut(items=tuple(tuple(p) if isinstance(p, list | tuple) else p for p in items))
    if op in ("batch_get", "batch_remove"):
        _need(obj, 2, op)
        keys = check_batch(obj[1], "keys")
        return (BatchGet if op == "batch_get" else BatchRemove)(keys=keys)
    if op in _LEASE_OPS:
        cls, n = _LEASE_OPS[op]
        _need(obj, n, op)
        return cls(**dict(zip([f.name for f in fields(cls)], obj[1:], strict=True)))
    raise CommandError(ErrorKind.VALIDATION, f"field 'command': unknown operation {op!r}")


_LEASE_OPS: dict[str, tuple[Any, int]] = {
    "put_temp": (PutTemp, 5), "mkdir_temp": (MkdirTemp, 4), "refresh": (Refresh, 4),
    "try_lock": (TryLock, 5), "unlock": (Unlock, 3), "expire": (Expire, 3), "watch": (Watch, 3),
}
