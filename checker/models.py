"""Sequential specifications the linearizability checker tests histories against.

Each model is pure: ``step(state, operation) -> (ok, new_state)`` never mutates, and states are
hashable (ints, strings, tuples, None) so the search can memoise (linearized set, state) pairs.

Operations whose outcome is unknown (``info``, never completed, ``operation.known`` false) are
handled by the checker by giving them a return at the end of the history, so they may take effect
anywhere after their call; the model is only asked for their *effect*: ``step`` with an unknown
output must accept and apply what the operation would do (a write writes, a cas swaps when it
matches and otherwise changes nothing, a read changes nothing). That is the "or never" half too:
an effect placed after every observation is not observable.

The contract is ``raftlab.protocols.Model``; the optional capabilities beside it
(``PartitionedModel``, ``CompiledModel``, ``ReadOnlyModel``, ``ValueFlowModel``) are declared
there with their contracts and found with ``isinstance``. A model is registered in one place: the
``@registered`` decorator on its class, which names the options ``--model NAME`` accepts.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, TypeVar

from raftlab.history import Operation


class ModelError(ValueError):
    """An operation the model does not understand (bad f or value); names the operation."""


MODELS: dict[str, type] = {}
"""Every built-in model by name (``--model NAME``); filled by ``@registered``."""

T = TypeVar("T", bound=type)


def registered(*options: str) -> Callable[[T], T]:
    """Register a model class under its ``name``; ``options`` are the keyword options it takes."""

    def add(cls: T) -> T:
        cls.options = frozenset(options)  # type: ignore[attr-defined]
        MODELS[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    return add


def _fmt(value: Any) -> str:
    return json.dumps(value)


@registered("initial_value", "nil_reads_unknown")
class CasRegister:
    """read / write / cas [expected, new] on one value. ``register`` is the same without cas."""

    name = "cas-register"
    options: ClassVar[frozenset[str]]
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

    def read_only(self, op: Operation) -> bool:
        return op.f == "read"

    def observed(self, op: Operation) -> tuple[Hashable, ...]:
        if op.f == "read":
            if not op.known or (op.output is None and self.nil_reads_unknown):
                return ()
            return (_hashable(op.output),)
        if op.f == "cas" and isinstance(op.input, list | tuple) and len(op.input) == 2:
            return (_hashable(op.input[0]),)
        return ()

    def written(self, op: Operation) -> tuple[Hashable, ...]:
        if op.f == "write":
            return (_hashable(op.input),)
        if op.f == "cas" and isinstance(op.input, list | tuple) and len(op.input) == 2:
            return (_hashable(op.input[1]),)
        return ()

    def describe_op(self, op: Operation) -> str:
        if op.f == "read":
            return f"read() -> {_fmt(op.output) if op.known else '?'}"
        if op.f == "write":
            return f"write({_fmt(op.input)})" + ("" if op.known else " ?")
        expected, new = op.input
        return f"cas({_fmt(expected)} -> {_fmt(new)})" + ("" if op.known else " ?")

    def describe_state(self, state: Hashable) -> str:
        return _fmt(_plain(state))


@registered("initial_value", "nil_reads_unknown")
class Register(CasRegister):
    name = "register"
    fs = frozenset({"read", "write"})


@registered("initial_value", "nil_reads_unknown")
class Kv(CasRegister):
    """A cas-register per key, checked key by key (what raftlab's own workloads produce)."""

    name = "kv"

    def partition_key(self, op: Operation) -> Hashable:
        return _hashable(op.key)

    def describe_op(self, op: Operation) -> str:
        return f"{op.key}: {super().describe_op(op)}"


@registered()
class KvAppend:
    """porcupine's kv: get / put / append of strings, every key initially ""; split by key."""

    name = "kv-append"
    options: ClassVar[frozenset[str]]

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

    def compile(self, op: Operation) -> Callable[[Hashable], tuple[bool, Hashable]]:
        """``step`` for one operation with its strings converted once (the search's hot path)."""
        if op.f == "get":
            if not op.known:
                return lambda state: (True, state)
            out = op.output or ""
            return lambda state: (out == state, state)
        if op.f == "put":
            value = str(op.input)
            return lambda state: (True, value)
        if op.f == "append":
            suffix = str(op.input)
            return lambda state: (True, state + suffix)  # type: ignore[operator]
        return lambda state: self.step(state, op)

    def read_only(self, op: Operation) -> bool:
        return op.f == "get"

    # the state only grows under append ("grown from" = "has as a prefix"); put resets it
    def resets(self, op: Operation) -> tuple[Hashable, ...] | None:
        return (str(op.input),) if op.f == "put" else None

    def reachable(self, op: Operation) -> Callable[[Hashable], bool]:
        if op.f == "get" and op.known:
            return (op.output or "").startswith  # type: ignore[no-any-return]
        return lambda state: True

    def shows(self, observer: Operation, op: Operation) -> bool:
        seen = observer.output or ""
        if op.f == "put":  # the last reset before a get starts its output
            return seen.startswith(str(op.input))
        return op.f == "append" and str(op.input) in seen

    def describe_op(self, op: Operation) -> str:
        if op.f == "get":
            return f"get({op.key}) -> {_fmt(op.output) if op.known else '?'}"
        return f"{op.f}({op.key}, {_fmt(op.input)})"

    def describe_state(self, state: Hashable) -> str:
        return _fmt(state)


@registered()
class Mutex:
    """acquire / release of one lock, initially free."""

    name = "mutex"
    options: ClassVar[frozenset[str]]

    def init(self) -> Hashable:
        return False

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        if op.f == "acquire":
            return (not state), True
        if op.f == "release":
            return bool(state), False
        raise ModelError(f"mutex does not know f={op.f!r}: {op.describe()}")

    # a register of held/free: acquire is cas(free -> held), release is cas(held -> free)
    def observed(self, op: Operation) -> tuple[Hashable, ...]:
        return (op.f == "release",) if op.known and op.f in ("acquire", "release") else ()

    def written(self, op: Operation) -> tuple[Hashable, ...]:
        return (op.f == "acquire",) if op.f in ("acquire", "release") else ()

    def describe_op(self, op: Operation) -> str:
        return f"{op.f}()" + ("" if op.known else " ?")

    def describe_state(self, state: Hashable) -> str:
        return "held" if state else "free"


@registered("initial_value")
class MultiRegister:
    """Transactions of [read k v] / [write k v] steps over several registers (Knossos)."""

    name = "multi-register"
    options: ClassVar[frozenset[str]]

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

    def read_only(self, op: Operation) -> bool:
        steps = op.output if op.known and op.output is not None else op.input
        return op.f == "txn" and all(isinstance(s, list | tuple) and s and s[0] == "read" for s in steps or ())

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


def make_model(name: str, **opts: Any) -> Any:
    """A model by name, or by import path ``pkg.module:Class`` (called with the options it takes)."""
    opts = {k: v for k, v in opts.items() if v is not None and v is not False}
    if name in MODELS:
        unknown = set(opts) - MODELS[name].options  # type: ignore[attr-defined]
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
    hint = " (the set checker is raftlab.checker.check_set, not a model)" if name == "set" else ""
    raise ModelError(f"unknown model {name!r} (known: {', '.join(MODELS)}, or pkg.module:Class){hint}")
