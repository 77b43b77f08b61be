"""The DtKV tree: the pure replicated state machine behind every node.

Every replica applies the same committed commands in the same order and so reaches the same
state; therefore this module reads no clock, file, socket or random source (time, when a
command needs it, is stamped into the command by the leader). ``apply(index, command)`` runs a
write at Raft index ``index``; ``read(command)`` answers a read from the current state, stamped
with the index applied so far. Both return a ``Result``; user errors (missing key, cas
mismatch, ...) are results, not exceptions, and leave the state untouched: batches validate
every item before changing anything, so they are atomic.

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
    Put,
    Remove,
    Result,
)


def split(key: str) -> tuple[str, str]:
    """(parent, name) of a key: ``"a.b.c"`` -> ``("a.b", "c")``, ``"a"`` -> ``("", "a")``."""
    parent, _, name = key.rpartition(".")
    return parent, name


class Tree:
    __slots__ = ("applied", "dirs", "values")

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.dirs: dict[str, set[str]] = {"": set()}
        self.applied = 0

    # -- writes ------------------------------------------------------------------------------

    def apply(self, index: int, command: Command) -> Result:
        """Apply a committed write at ``index``; a failed command still consumes the index."""
        if index <= self.applied:
            raise ValueError(f"apply at index {index} but {self.applied} is already applied")
        self.applied = index
        try:
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
                if key not in values:
                    self._check_parent(key)
                    if key in self.dirs:
                        raise CommandError(ErrorKind.IS_A_DIR, f"{key!r} is a directory")
                    self.dirs[split(key)[0]].add(split(key)[1])
                values[key] = value
                return Result(index=index)
            case Cas(key=key, expected=expected, new=new):
                if key in self.dirs:
                    raise CommandError(ErrorKind.IS_A_DIR, f"{key!r} is a directory")
                current = values.get(key)
                if current != expected:
                    return Result(index=index, error=ErrorKind.CAS_MISMATCH, value=current,
                                  message=f"{key!r} is {current!r}, expected {expected!r}")
                if current is None:
                    self._check_parent(key)
                    self.dirs[split(key)[0]].add(split(key)[1])
                values[key] = new
                return Result(index=index)
            case Remove(key=key):
                self._remove_check(key)
                self._remove(key)
                return Result(index=index, count=1)
            case Mkdir(key=key):
                if key in self.dirs:
                    return Result(index=index)
                if key in values:
                    raise CommandError(ErrorKind.NOT_A_DIR, f"{key!r} holds a value")
                self._check_parent(key)
                parent, name = split(key)
                self.dirs[parent].add(name)
                self.dirs[key] = set()
                return Result(index=index)
            case BatchPut(items=items):
                planned: set[str] = set()
                for key, _ in items:
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
                    values[key] = value
                return Result(index=index, count=len(items))
            case BatchRemove(keys=keys):
                present = [k for k in dict.fromkeys(keys) if k in values or k in self.dirs]
                for key in present:
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
        return h.hexdigest()[:32]

    # -- snapshots ---------------------------------------------------------------------------

    def image(self) -> tuple[dict[str, bytes], tuple[str, ...]]:
        """(values, directory names): a frozen copy of the state at ``applied``."""
        return dict(self.values), tuple(self.dirs)

    def restore_image(self, applied: int, values: Mapping[str, bytes], dirs: Iterable[str]) -> None:
        """Replace the whole state by a snapshot's (children are rebuilt from the names)."""
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
