"""The ``dtkv-dir`` model: one DtKV directory and its values, checked directory by directory.

The register model sees one value per key, so it cannot judge what makes DtKV a tree: that a
put needs its directory, that ``remove`` really removes, that a batch applies all of its items,
that ``list`` names exactly the children, that ``rmdir`` refuses a non-empty directory and that
``mkdir`` of an existing directory changes nothing. This model is a sequential specification of
one top-level directory ``d`` (the op's ``key``) holding leaf values ``d.<name>``; histories are
split by directory (P-compositionality), as the tree workload keeps every op inside one.

State: ``(exists, ((name, value), ...))`` sorted by name, hashable. Ops (input -> output):

| f | input | ok requires | effect / output |
| --- | --- | --- | --- |
| mkdir | - | - | the directory exists (unchanged if it did) |
| rmdir | - | exists, no children | gone |
| put | [name, v] | exists | name = v |
| cas-key | [name, expected, new] | exists, current == expected (null: absent) | name = new |
| remove | [name] | name present | name removed |
| batch-put | [[name, v], ...] | exists | every name = v |
| batch-remove | [name, ...] | - | the present ones removed |
| get | [name] | - | output = value or null |
| batch-get | [name, ...] | - | output = [value or null, ...] |
| list | - | exists | output = sorted names |

A known ok op whose requirement does not hold is illegal; an op of unknown outcome (info) whose
requirement does not hold would have failed, so it changes nothing. ``fail`` ops never reach a
model (the checker drops them).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from raftlab.checker.models import Kv

from raftlab.history import Operation

State = tuple[bool, tuple[tuple[str, Any], ...]]
WRITES = frozenset({"mkdir", "rmdir", "put", "cas-key", "remove", "batch-put", "batch-remove"})
READS = frozenset({"get", "batch-get", "list"})


class DtkvDirs:
    name = "dtkv-dir"
    fs = WRITES | READS

    def init(self) -> State:
        return (False, ())

    def partition_key(self, op: Operation) -> Hashable:
        return op.key  # type: ignore[no-any-return]

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        exists, items = state
        values = dict(items)
        f, arg = op.f, op.input
        if f in READS:
            if not op.known:
                return True, state
            if f == "get":
                return _plain(op.output) == values.get(arg[0]), state
            if f == "batch-get":
                return _plain(op.output) == [values.get(n) for n in arg], state
            if f == "list":
                return exists and _plain(op.output) == sorted(values), state
        new: State | None = None  # None: the requirement does not hold
        if f == "mkdir":
            new = (True, items)
        elif f == "rmdir":
            new = (False, ()) if exists and not items else None
        elif f == "put" and exists:
            new = _with(values, {arg[0]: arg[1]})
        elif f == "cas-key" and exists and values.get(arg[0]) == arg[1]:
            new = _with(values, {arg[0]: arg[2]})
        elif f == "remove" and arg[0] in values:
            new = _with({k: v for k, v in values.items() if k != arg[0]}, {})
        elif f == "batch-put" and exists:
            new = _with(values, dict((n, v) for n, v in arg))
        elif f == "batch-remove":
            new = (exists, tuple(sorted((k, v) for k, v in values.items() if k not in set(arg))))
        elif f not in WRITES:
            raise ValueError(f"dtkv-dir does not know f={f!r}: {op.describe()}")
        if new is None:
            return (not op.known), state
        return True, new

    def describe_op(self, op: Operation) -> str:
        out = f" -> {op.output!r}" if op.f in READS and op.known else ("" if op.known else " -> ?")
        return f"{op.key}: {op.f} {op.input!r}{out}"

    def describe_state(self, state: Hashable) -> str:
        exists, items = state  # type: ignore[misc]
        if not exists and not items:
            return "absent"
        body = ", ".join(f"{k}={v!r}" for k, v in items)
        return f"{'dir' if exists else 'NO DIR'} {{{body}}}"


def _with(values: dict[str, Any], changes: dict[str, Any]) -> State:
    return (True, tuple(sorted({**values, **changes}.items())))


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


class KvDirs:
    """``kv`` keys and ``dtkv-dir`` directories in one history (the ``mixed`` workload's model).

    Partitions are keys, as in both models; a partition's ops are either all register ops
    (``read``/``write``/``cas``) or all directory ops, since the mixed workload names registers
    ``r<n>`` and directories ``t<n>``. A partition's state starts as None, which is the register's
    initial value and, at a directory's first op, becomes the directory model's initial state.
    """

    name = "kv+dtkv-dir"

    def __init__(self) -> None:
        self.kv = Kv()
        self.dirs = DtkvDirs()

    def init(self) -> Hashable:
        return None

    def partition_key(self, op: Operation) -> Hashable:
        return self.kv.partition_key(op)

    def _dir_state(self, state: Hashable) -> State:
        return self.dirs.init() if state is None else state  # type: ignore[return-value]

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        if op.f in self.kv.fs:
            return self.kv.step(state, op)
        return self.dirs.step(self._dir_state(state), op)

    def compile(self, op: Operation) -> Callable[[Hashable], tuple[bool, Hashable]]:
        if op.f in self.kv.fs:
            return self.kv.compile(op)
        return lambda state: self.dirs.step(self._dir_state(state), op)

    def read_only(self, op: Operation) -> bool:
        return op.f == "read" or op.f in READS

    def describe_op(self, op: Operation) -> str:
        return self.kv.describe_op(op) if op.f in self.kv.fs else self.dirs.describe_op(op)

    def describe_state(self, state: Hashable) -> str:
        return self.dirs.describe_state(state) if isinstance(state, tuple) and len(state) == 2 and isinstance(
            state[0], bool) else self.kv.describe_state(state)
