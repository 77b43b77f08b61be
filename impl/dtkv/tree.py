"""The DtKV tree: the pure replicated state machine behind every node.

Every replica applies the same committed commands in the same order and so reaches the same
state; therefore this module reads no clock, file, socket or random source (time, when a
command needs it, is stamped into the command by the leader). ``apply(index, command)`` runs a
write at Raft index ``index``; ``read(command)`` answers a read from the current state, stamped
with the index applied so far. Both return a ``Result``; user errors (missing key, cas
mismatch, ...) are results, not exceptions, and leave the state untouched: batches validate
every item before changing anything, so they are atomic.

Temporary nodes/dirs and locks (``leases.py``): ``leases`` maps a key to its Lease (owner, TTL,
the index that last set it; a lock's token and waiters). A lock key holds its holder's owner id
as its value while held and is absent while free. Plain writes (put, cas, batch-put) to a leased
key are refused ``not-owner``; remove may drop a temp node (an operator's cleanup) but not a
lock. ``expire(key, index)`` acts only if the lease's index is still ``index``: a temp node or
dir goes (a dir with everything under it), a lock passes to its first waiter (token: the index
of the hand-off) or is freed. After each ``apply``, ``changes`` lists what it changed as
``(kind, key, value)`` with kind ``put``/``dir``/``del`` (the watch events), and
``touched`` the keys whose lease changed (the leader's timers re-arm them).

Invariants: ``applied`` only grows (apply refuses an index <= applied); ``"" in dirs`` (the
root always exists); every key in ``values`` or ``dirs`` other than the root has its parent in
``dirs``; ``dirs[d]`` is exactly the set of child names of ``d``.

On restart the state comes from the newest snapshot (``restore_image``) and the log after it.
``image()`` is the cheap, consistent view a snapshot is written from: a shallow copy of the
key -> value map (values are immutable bytes, so later writes cannot change the copy) and the
directory names; the expensive part (encoding, CRC, disk) happens off the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from raftlab.impl.dtkv.commands import (
    MAX_BATCH,
    BatchGet,
    BatchPut,
    BatchRemove,
    Cas,
    Command,
    CommandError,
    ErrorKind,
    Expire,
    Get,
    List,
    Mkdir,
    MkdirTemp,
    Put,
    PutTemp,
    Refresh,
    Remove,
    Result,
    TryLock,
    Unlock,
)
from raftlab.impl.dtkv.leases import LOCK, TEMP, Lease

Change = tuple[str, str, bytes | None]  # (put | dir | del, key, value)


def split(key: str) -> tuple[str, str]:
    """(parent, name) of a key: ``"a.b.c"`` -> ``("a.b", "c")``, ``"a"`` -> ``("", "a")``."""
    parent, _, name = key.rpartition(".")
    return parent, name


class Tree:
    __slots__ = ("applied", "changes", "dirs", "leases", "touched", "values")

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.dirs: dict[str, set[str]] = {"": set()}
        self.leases: dict[str, Lease] = {}
        self.applied = 0
        self.changes: list[Change] = []
        self.touched: list[str] = []

    # -- writes ------------------------------------------------------------------------------

    def apply(self, index: int, command: Command) -> Result:
        """Apply a committed write at ``index``; a failed command still consumes the index."""
        if index <= self.applied:
            raise ValueError(f"apply at index {index} but {self.applied} is already applied")
        self.applied = index
        self.changes = []
        self.touched = []
        try:
            if isinstance(command, PutTemp | MkdirTemp | Refresh | TryLock | Unlock | Expire):
                return self._apply_lease(index, command)
            return self._apply(index, command)
        except CommandError as e:
            return Result(index=index, error=e.kind, message=e.message)

    def skip(self, index: int) -> None:
        """Advance past a log entry that carries no command (a leader's no-op)."""
        if index > self.applied:
            self.applied = index

    def _apply(self, index: int, cmd: Command) -> Result:
        values = self.values
        match cmd:
            case Put(key=key, value=value):
                self._not_leased(key)
                if key not in values:
                    self._check_parent(key)
                    if key in self.dirs:
                        raise CommandError(ErrorKind.IS_A_DIR, f"{key!r} is a directory")
                    self.dirs[split(key)[0]].add(split(key)[1])
                self._set(key, value)
                return Result(index=index)
            case Cas(key=key, expected=expected, new=new):
                if key in self.dirs:
                    raise CommandError(ErrorKind.IS_A_DIR, f"{key!r} is a directory")
                current = values.get(key)
                if current != expected:
                    return Result(index=index, error=ErrorKind.CAS_MISMATCH, value=current,
                                  message=f"{key!r} is {current!r}, expected {expected!r}")
                self._not_leased(key)
                if current is None:
                    self._check_parent(key)
                    self.dirs[split(key)[0]].add(split(key)[1])
                self._set(key, new)
                return Result(index=index)
            case Remove(key=key):
                self._not_locked(key)
                self._remove_check(key)
                self._remove(key)
                return Result(index=index, count=1)
            case Mkdir(key=key):
                if key in self.dirs:
                    return Result(index=index)
                if key in values:
                    raise CommandError(ErrorKind.NOT_A_DIR, f"{key!r} holds a value")
                self._check_parent(key)
                self._mkdir(key)
                return Result(index=index)
            case BatchPut(items=items):
                planned: set[str] = set()
                for key, _ in items:
                    self._not_leased(key)
                    if key in values or key in planned:
                        continue
                    self._check_parent(key)
                    if key in self.dirs:
                        raise CommandError(ErrorKind.IS_A_DIR, f"{key!r} is a directory")
                    planned.add(key)
                for key, value in items:
                    if key not in values:
                        parent, name = split(key)
                        self.dirs[parent].add(name)
                    self._set(key, value)
                return Result(index=index, count=len(items))
            case BatchRemove(keys=keys):
                present = [k for k in dict.fromkeys(keys) if k in values or k in self.dirs]
                for key in present:
                    self._not_locked(key)
                    self._remove_check(key, removing=set(present))
                # children before parents, so an emptied directory can go in the same batch
                for key in sorted(present, key=lambda k: -k.count(".")):
                    self._remove(key)
                return Result(index=index, count=len(present))
            case _:
                raise CommandError(ErrorKind.VALIDATION, f"'{cmd.op}' is not a write")

    def _check_parent(self, key: str) -> None:
        parent = split(key)[0]
        if parent in self.dirs:
            return
        # name the first missing or non-directory ancestor
        path = ""
        for part in parent.split("."):
            path = f"{path}.{part}" if path else part
            if path in self.values:
                raise CommandError(ErrorKind.NOT_A_DIR, f"{path!r} holds a value, not a directory")
            if path not in self.dirs:
                raise CommandError(ErrorKind.KEY_NOT_FOUND, f"directory {path!r} does not exist")

    def _remove_check(self, key: str, removing: set[str] | None = None) -> None:
        if key in self.values:
            return
        children = self.dirs.get(key)
        if children is None:
            raise CommandError(ErrorKind.KEY_NOT_FOUND, f"{key!r} does not exist")
        if removing is not None:
            remaining = [c for c in children if f"{key}.{c}" not in removing]
            if remaining:
                raise CommandError(ErrorKind.DIR_NOT_EMPTY, f"directory {key!r} is not empty")
        elif children:
            raise CommandError(ErrorKind.DIR_NOT_EMPTY, f"directory {key!r} has {len(children)} children")

    def _remove(self, key: str) -> None:
        parent, name = split(key)
        if self.values.pop(key, None) is None:
            del self.dirs[key]
        self.dirs[parent].discard(name)
        self.changes.append(("del", key, None))
        if self.leases.pop(key, None) is not None:
            self.touched.append(key)

    def _set(self, key: str, value: bytes) -> None:
        self.values[key] = value
        self.changes.append(("put", key, value))

    def _mkdir(self, key: str) -> None:
        parent, name = split(key)
        self.dirs[parent].add(name)
        self.dirs[key] = set()
        self.changes.append(("dir", key, None))

    def _remove_tree(self, key: str) -> None:
        """Remove ``key`` and everything under it (an expired temp dir), deepest first."""
        for child in sorted(self.dirs.get(key, ())):
            self._remove_tree(f"{key}.{child}")
        self._remove(key)

    # -- leases: temp nodes/dirs and locks -----------------------------------------------------

    def _not_leased(self, key: str) -> None:
        lease = self.leases.get(key)
        if lease is not None:
            raise CommandError(ErrorKind.NOT_OWNER, f"{key!r} is a {lease.kind} of {lease.owner!r}: "
                               f"only its owner changes it ({'put --ttl' if lease.kind == TEMP else 'lock/unlock'})")

    def _not_locked(self, key: str) -> None:
        lease = self.leases.get(key)
        if lease is not None and lease.kind == LOCK:
            raise CommandError(ErrorKind.NOT_OWNER, f"{key!r} is a lock held by {lease.owner!r}: use unlock")

    def _lease(self, key: str, lease: Lease) -> None:
        self.leases[key] = lease
        self.touched.append(key)

    def _owned(self, key: str, owner: str, kind: str | None) -> Lease | None:
        """The lease on ``key`` if ``owner`` holds it; None if the key is free; else not-owner."""
        lease = self.leases.get(key)
        if lease is None:
            if key in self.values or key in self.dirs:
                raise CommandError(ErrorKind.NOT_OWNER, f"{key!r} exists and is not a temporary node or lock")
            return None
        if (kind is not None and lease.kind != kind) or lease.owner != owner:
            raise CommandError(ErrorKind.NOT_OWNER, f"{key!r} is a {lease.kind} of {lease.owner!r}, not of {owner!r}")
        return lease

    def _apply_lease(self, index: int, cmd: Command) -> Result:
        match cmd:
            case PutTemp(key=key, value=value, owner=owner, ttl_ms=ttl):
                if self._owned(key, owner, TEMP) is None:
                    self._check_parent(key)
                    self.dirs[split(key)[0]].add(split(key)[1])
                elif key in self.dirs:
                    raise CommandError(ErrorKind.IS_A_DIR, f"{key!r} is a temporary directory")
                self._set(key, value)
                self._lease(key, Lease(kind=TEMP, owner=owner, ttl_ms=ttl, index=index))
                return Result(index=index)
            case MkdirTemp(key=key, owner=owner, ttl_ms=ttl):
                if self._owned(key, owner, TEMP) is None:
                    self._check_parent(key)
                    self._mkdir(key)
                elif key not in self.dirs:
                    raise CommandError(ErrorKind.NOT_A_DIR, f"{key!r} is a temporary value, not a directory")
                self._lease(key, Lease(kind=TEMP, owner=owner, ttl_ms=ttl, index=index))
                return Result(index=index)
            case Refresh(key=key, owner=owner, ttl_ms=ttl):
                lease = self._owned(key, owner, None)
                if lease is None:
                    raise CommandError(ErrorKind.KEY_NOT_FOUND, f"{key!r} does not exist")
                self._lease(key, Lease(kind=lease.kind, owner=owner, ttl_ms=ttl, index=index,
                                       token=lease.token, waiters=lease.waiters))
                return Result(index=index, token=lease.token)
            case TryLock():
                return self._try_lock(index, cmd)
            case Unlock(key=key, owner=owner):
                lease = self.leases.get(key)
                if lease is None or lease.kind != LOCK:
                    raise CommandError(ErrorKind.KEY_NOT_FOUND, f"no lock {key!r} is held")
                if lease.owner == owner:
                    self._release(index, key, lease)
                    return Result(index=index, count=1)
                if any(w == owner for w, _ in lease.waiters):  # a waiter gives up its place
                    self._lease(key, Lease(kind=LOCK, owner=lease.owner, ttl_ms=lease.ttl_ms, index=lease.index,
                                           token=lease.token, waiters=tuple(w for w in lease.waiters if w[0] != owner)))
                    return Result(index=index)
                raise CommandError(ErrorKind.NOT_OWNER, f"lock {key!r} is held by {lease.owner!r}, not {owner!r}")
            case Expire(key=key, index=expected):
                lease = self.leases.get(key)
                if lease is None or lease.index != expected:
                    return Result(index=index)  # refreshed, released or gone since: a stale decision
                if lease.kind == LOCK:
                    self._release(index, key, lease)
                else:
                    self._remove_tree(key)
                return Result(index=index, count=1)
            case _:
                raise CommandError(ErrorKind.VALIDATION, f"'{cmd.op}' is not a lease operation")

    def _try_lock(self, index: int, cmd: TryLock) -> Result:
        key, owner = cmd.key, cmd.owner
        lease = self.leases.get(key)
        if lease is None:
            self._owned(key, owner, LOCK)  # a plain key or dir of that name: not-owner
            self._check_parent(key)
            self.dirs[split(key)[0]].add(split(key)[1])
            self._set(key, owner.encode())
            self._lease(key, Lease(kind=LOCK, owner=owner, ttl_ms=cmd.lease_ms, index=index, token=index))
            return Result(index=index, token=index, value=owner.encode())
        if lease.kind != LOCK:
            raise CommandError(ErrorKind.NOT_OWNER, f"{key!r} is a temporary node, not a lock")
        if lease.owner == owner:  # held already (a retried try-lock): refresh, same token
            self._lease(key, Lease(kind=LOCK, owner=owner, ttl_ms=cmd.lease_ms, index=index,
                                   token=lease.token, waiters=lease.waiters))
            return Result(index=index, token=lease.token, value=owner.encode())
        if cmd.wait and all(w != owner for w, _ in lease.waiters) and len(lease.waiters) < MAX_BATCH:
            self._lease(key, Lease(kind=LOCK, owner=lease.owner, ttl_ms=lease.ttl_ms, index=lease.index,
                                   token=lease.token, waiters=(*lease.waiters, (owner, cmd.lease_ms))))
        return Result(index=index, error=ErrorKind.LOCK_HELD, value=lease.owner.encode(),
                      message=f"lock {key!r} is held by {lease.owner!r}")

    def _release(self, index: int, key: str, lease: Lease) -> None:
        """The holder unlocked or its lease expired: hand the lock to the first waiter or free it."""
        if lease.waiters:
            (owner, ttl), rest = lease.waiters[0], lease.waiters[1:]
            self._set(key, owner.encode())
            self._lease(key, Lease(kind=LOCK, owner=owner, ttl_ms=ttl, index=index, token=index, waiters=rest))
        else:
            self._remove(key)

    # -- reads -------------------------------------------------------------------------------

    def read(self, cmd: Command) -> Result:
        """Answer a read from the current state, stamped with the applied index."""
        index = self.applied
        match cmd:
            case Get(key=key):
                if key in self.dirs:
                    return Result(index=index, error=ErrorKind.IS_A_DIR, message=f"{key!r} is a directory")
                return Result(index=index, value=self.values.get(key))
            case BatchGet(keys=keys):
                return Result(index=index, values=tuple(self.values.get(k) for k in keys))
            case List(key=key):
                children = self.dirs.get(key)
                if children is None:
                    kind = ErrorKind.NOT_A_DIR if key in self.values else ErrorKind.KEY_NOT_FOUND
                    return Result(index=index, error=kind, message=f"{key!r} is not a directory")
                return Result(index=index, children=tuple(sorted(children)))
            case _:
                return Result(index=index, error=ErrorKind.VALIDATION, message=f"'{cmd.op}' is not a read")

    # -- replica comparison ------------------------------------------------------------------

    def digest(self) -> str:
        """A hash of the whole state (values and directories, in sorted order): two replicas at
        the same applied index must give the same digest (state-machine safety, Raft §5.4.3)."""
        h = hashlib.sha256()
        for key in sorted(self.values):
            h.update(b"v%d:%s=%d:" % (len(key), key.encode(), len(self.values[key])))
            h.update(self.values[key])
        for d in sorted(self.dirs):
            h.update(b"d%d:%s;" % (len(d), d.encode()))
        for wire in self.lease_image():
            h.update(repr(wire).encode())
        return h.hexdigest()[:32]

    # -- snapshots ---------------------------------------------------------------------------

    def image(self) -> tuple[dict[str, bytes], tuple[str, ...]]:
        """(values, directory names): a frozen copy of the state at ``applied``."""
        return dict(self.values), tuple(self.dirs)

    def lease_image(self) -> tuple[list[object], ...]:
        """The leases in their snapshot form (Lease values are frozen: the copy is cheap)."""
        return tuple(lease.to_wire(key) for key, lease in sorted(self.leases.items()))

    def restore_image(self, applied: int, values: Mapping[str, bytes], dirs: Iterable[str],
                      leases: Iterable[object] = ()) -> None:
        """Replace the whole state by a snapshot's (children are rebuilt from the names)."""
        dirs = tuple(dirs)
        self.leases = dict(Lease.from_wire(obj) for obj in leases)
        for key in self.leases:
            if key not in values and key not in dirs:
                raise ValueError(f"snapshot holds a lease on {key!r} but not the key")
        self.values = dict(values)
        self.dirs = {d: set() for d in dirs}
        self.dirs.setdefault("", set())
        for key in [*self.dirs, *self.values]:
            if key:
                parent, name = split(key)
                if parent not in self.dirs:
                    raise ValueError(f"snapshot holds {key!r} but not its directory {parent!r}")
                self.dirs[parent].add(name)
        self.applied = applied
