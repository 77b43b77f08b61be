"""Sequential specifications the linearizability checker tests histories against.

Each model is pure: ``step(state, operation) -> (ok, new_state)`` never mutates, and states are
hashable (ints, strings, tuples, None) so the search can memoise (linearized set, state) pairs.

Operations whose outcome is unknown (``info``, never completed, ``operation.known`` false) are
handled by the checker by giving them a return at the end of the history, so they may take effect
anywhere after their call; the model is only asked for their *effect*: ``step`` with an unknown
output must accept and apply what the operation would do (a write writes, a cas swaps when it
matches and otherwise changes nothing, a read changes nothing). That is the "or never" half too:
an effect placed after every observation is not observable.

Models that split a history into independent parts (P-compositionality) implement
``partition_key(operation)``; the checker groups by it (the kv models split by key).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from raftlab.history import Operation

_NOTHING: Hashable = object()
"""No value: an operation that observes or writes nothing."""


class ModelError(ValueError):
    """An operation the model does not understand (bad f or value); names the operation."""


def _fmt(value: Any) -> str:
    return json.dumps(value)


class CasRegister:
    """read / write / cas [expected, new] on one value. ``register`` is the same without cas."""

    name = "cas-register"
    fs = frozenset({"read", "write", "cas"})

    def __init__(self, initial_value: Any = None, nil_reads_unknown: bool = False) -> None:
        self.initial_value = _hashable(initial_value)
        self.nil_reads_unknown = nil_reads_unknown

    def init(self) -> Hashable:
        return self.initial_value

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        f = op.f
        if f == "read":
            if not op.known:
                return True, state
            out = op.output
            if out is None and self.nil_reads_unknown:
                return True, state
            return _hashable(out) == state, state
        if f == "write":
            return True, _hashable(op.input)
        if f == "cas":
            if f not in self.fs:
                raise ModelError(f"{self.name} has no cas: {op.describe()}")
            try:
                expected, new = op.input
            except (TypeError, ValueError):
                raise ModelError(f"cas value must be [expected, new]: {op.describe()}") from None
            if _hashable(expected) == state:
                return True, _hashable(new)
            return (not op.known), state
        raise ModelError(f"{self.name} does not know f={f!r}: {op.describe()}")

    def compile(self, op: Operation) -> Callable[[Hashable], tuple[bool, Hashable]]:
        """``step`` specialised to one operation, its values converted once (the search's hot path)."""
        f = op.f
        if f == "read":
            if not op.known or (op.output is None and self.nil_reads_unknown):
                return lambda state: (True, state)
            out = _hashable(op.output)
            return lambda state: (out == state, state)
        if f == "write":
            value = _hashable(op.input)
            return lambda state: (True, value)
        if f == "cas" and f in self.fs:
            try:
                expected, new = (_hashable(v) for v in op.input)
            except (TypeError, ValueError):
                raise ModelError(f"cas value must be [expected, new]: {op.describe()}") from None
            if op.known:
                return lambda state: (True, new) if state == expected else (False, state)
            return lambda state: (True, new) if state == expected else (True, state)
        return lambda state: self.step(state, op)

    def grounding(self, full: Sequence[Operation]) -> Callable[[Sequence[Operation]], bool]:
        """Which sub-histories of ``full`` keep the writes their observations may have seen.

        An observation is a known read's output or a known cas's expected value. It may have seen
        every write of that value called before it returned, unless a known write or cas certainly
        replaced that write before the observation began (then one such replacing write is kept).
        The minimiser keeps only such sub-histories, so it never "explains" a violation by deleting
        the write a read saw, which would invent another violation (a read from the future, a cas
        nobody enabled), nor by deleting the write that made a read stale.
        """
        writes = [(op, v) for op in full if (v := self._written(op)) is not _NOTHING]
        known_writes = sorted(((op.call, op.ret) for op, _ in writes if op.known), reverse=True)
        replaced_by: dict[int, float] = {}  # id(write) -> earliest return of a known write called after it returned
        for op, _ in writes:
            replaced_by[id(op)] = min((ret for call, ret in known_writes if call > op.ret), default=math.inf)
        # per observation: the writes it may have seen, and (if it ignored some replaced ones) the
        # latest return among those, which a kept known write must follow while returning before it
        need: list[tuple[int, frozenset[int], float]] = []
        for obs in full:
            seen = self._observed(obs)
            if seen is _NOTHING:
                continue
            candidates = [w for w, v in writes if v == seen and w is not obs and w.call < obs.ret]
            required = frozenset(id(w) for w in candidates if replaced_by[id(w)] > obs.call)
            replaced = max((w.ret for w in candidates if replaced_by[id(w)] <= obs.call), default=-math.inf)
            if required or replaced > -math.inf:
                need.append((id(obs), required, replaced))
        calls = {id(op): op.call for op in full}
        known_ids = {id(op): (op.call, op.ret) for op, _ in writes if op.known}

        def grounded(ops: Sequence[Operation]) -> bool:
            kept = {id(op) for op in ops}
            kept_writes = [known_ids[i] for i in kept if i in known_ids]
            for obs, required, replaced in need:
                if obs not in kept:
                    continue
                if not required <= kept:
                    return False
                if replaced > -math.inf and not any(call > replaced and ret < calls[obs] for call, ret in kept_writes):
                    return False
            return True

        return grounded

    def _observed(self, op: Operation) -> Hashable:
        if not op.known:
            return _NOTHING
        if op.f == "read" and not (op.output is None and self.nil_reads_unknown):
            return _hashable(op.output)
        if op.f == "cas" and isinstance(op.input, list | tuple) and len(op.input) == 2:
            return _hashable(op.input[0])
        return _NOTHING

    @staticmethod
    def _written(op: Operation) -> Hashable:
        if op.f == "write":
            return _hashable(op.input)
        if op.f == "cas" and isinstance(op.input, list | tuple) and len(op.input) == 2:
            return _hashable(op.input[1])
        return _NOTHING

    def describe_op(self, op: Operation) -> str:
        if op.f == "read":
            return f"read() -> {_fmt(op.output) if op.known else '?'}"
        if op.f == "write":
            return f"write({_fmt(op.input)})" + ("" if op.known else " ?")
        expected, new = op.input
        return f"cas({_fmt(expected)} -> {_fmt(new)})" + ("" if op.known else " ?")

    def describe_state(self, state: Hashable) -> str:
        return _fmt(_plain(state))


class Register(CasRegister):
    name = "register"
    fs = frozenset({"read", "write"})


class Kv(CasRegister):
    """A cas-register per key, checked key by key (what raftlab's own workloads produce)."""

    name = "kv"

    def partition_key(self, op: Operation) -> Hashable:
        return _hashable(op.key)

    def describe_op(self, op: Operation) -> str:
        return f"{op.key}: {super().describe_op(op)}"


class KvAppend:
    """porcupine's kv: get / put / append of strings, every key initially ""; split by key."""

    name = "kv-append"

    def init(self) -> Hashable:
        return ""

    def partition_key(self, op: Operation) -> Hashable:
        return _hashable(op.key)

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        assert isinstance(state, str)
        if op.f == "get":
            return (not op.known) or (op.output or "") == state, state
        if op.f == "put":
            return True, str(op.input)
        if op.f == "append":
            return True, state + str(op.input)
        raise ModelError(f"kv-append does not know f={op.f!r}: {op.describe()}")

    def describe_op(self, op: Operation) -> str:
        if op.f == "get":
            return f"get({op.key}) -> {_fmt(op.output) if op.known else '?'}"
        return f"{op.f}({op.key}, {_fmt(op.input)})"

    def describe_state(self, state: Hashable) -> str:
        return _fmt(state)


class Mutex:
    """acquire / release of one lock, initially free."""

    name = "mutex"

    def init(self) -> Hashable:
        return False

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        if op.f == "acquire":
            return (not state), True
        if op.f == "release":
            return bool(state), False
        raise ModelError(f"mutex does not know f={op.f!r}: {op.describe()}")

    def describe_op(self, op: Operation) -> str:
        return f"{op.f}()" + ("" if op.known else " ?")

    def describe_state(self, state: Hashable) -> str:
        return "held" if state else "free"


class MultiRegister:
    """Transactions of [read k v] / [write k v] steps over several registers (Knossos)."""

    name = "multi-register"

    def __init__(self, initial_value: Any = None) -> None:
        init = initial_value or {}
        if not isinstance(init, dict):
            raise ModelError("multi-register's initial value must be a JSON object of key -> value")
        self.initial = tuple(sorted((str(k), _hashable(v)) for k, v in init.items()))

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        if op.f != "txn":
            raise ModelError(f"multi-register does not know f={op.f!r}: {op.describe()}")
        steps = op.output if op.known and op.output is not None else op.input
        regs = dict(state)  # type: ignore[arg-type]
        for step in steps or ():
            try:
                f, k, v = step
            except (TypeError, ValueError):
                raise ModelError(f"a txn step must be [f, key, value]: {op.describe()}") from None
            k = str(k)
            if f == "read":
                if op.known and v is not None and regs.get(k) != _hashable(v):
                    return False, state
            elif f == "write":
                regs[k] = _hashable(v)
            else:
                raise ModelError(f"unknown txn step {f!r}: {op.describe()}")
        return True, tuple(sorted(regs.items()))

    def describe_op(self, op: Operation) -> str:
        steps = op.output if op.known and op.output is not None else op.input
        return "txn " + " ".join(f"[{s[0]} {s[1]} {_fmt(s[2])}]" for s in steps or ())

    def describe_state(self, state: Hashable) -> str:
        return _fmt(dict(state))  # type: ignore[arg-type]


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


MODELS: dict[str, type] = {
    "register": Register,
    "cas-register": CasRegister,
    "kv": Kv,
    "kv-append": KvAppend,
    "mutex": Mutex,
    "multi-register": MultiRegister,
}

_ACCEPTS = {
    "register": {"initial_value", "nil_reads_unknown"},
    "cas-register": {"initial_value", "nil_reads_unknown"},
    "kv": {"initial_value", "nil_reads_unknown"},
    "multi-register": {"initial_value"},
}


def make_model(name: str, **opts: Any) -> Any:
    """A model by name, or by import path ``pkg.module:Class`` (called with the options it takes)."""
    opts = {k: v for k, v in opts.items() if v is not None and v is not False}
    if name in MODELS:
        unknown = set(opts) - _ACCEPTS.get(name, set())
        if unknown:
            raise ModelError(f"model {name} takes no option {', '.join(sorted(unknown))}")
        return MODELS[name](**opts)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ModelError(f"cannot load model {name}: {e}") from None
        return cls(**opts)
    raise ModelError(f"unknown model {name!r} (known: {', '.join(MODELS)}, set, or pkg.module:Class)")
