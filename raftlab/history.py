"""The one history format of raftlab, and the pairing every checker relies on.

Every producer (the campaign interpreter, the simulator, the importers in ``formats.py``) writes
this format and every consumer (checkers, the report, ``raftlab check``) reads it, so this module
is the single place where the meaning of an event is decided.

Format: JSON Lines, one event per line, Jepsen's event model::

    {"index": 0, "time": 1234, "process": 3, "type": "invoke", "f": "write", "key": "x", "value": 5}

* ``type``: ``invoke``; then ``ok`` (it happened, with the value it returned), ``fail`` (it
  certainly did not happen) or ``info`` (unknown: it may take effect at any time after its
  invoke, or never). A completion has the process of its invoke; a process whose operation ended
  in ``info`` invokes nothing more (Jepsen gives the worker a fresh process number).
* ``process``: an int for a client, or ``"nemesis"`` for fault events, which models ignore.
* ``time``: monotonic nanoseconds (ticks in the simulator). Real-time order is the order of the
  lines: an operation precedes another iff its completion line comes before the other's invoke
  line. Times are kept for reports; the checker uses positions, so equal clock readings can never
  reorder two events.
* ``key`` (optional), ``value`` (any JSON), ``error`` (optional string).

Only the standard library is used here, so a checker can run anywhere.
"""

from __future__ import annotations

import enum
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

NEMESIS = "nemesis"

Process = int | str


class HistoryError(ValueError):
    """A history that cannot be read or does not follow the event rules; names the line."""

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None) -> None:
        self.line = line
        self.source = source
        where = ""
        if source is not None:
            where += f"{source}:"
        if line is not None:
            where += f"{line}:"
        super().__init__(f"{where} {message}" if where else message)


class OpType(enum.StrEnum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


_FIELDS = frozenset({"index", "time", "process", "type", "f", "key", "value", "error"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One history event. ``key`` is ``None`` when the operation has no key (a single register)."""

    type: OpType
    process: Process
    f: str
    value: Any = None
    key: Any = None
    time: int = 0
    index: int = -1
    error: str | None = None
    extra: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.type, OpType):
            try:
                object.__setattr__(self, "type", OpType(self.type))
            except ValueError:
                raise HistoryError(f"type must be one of invoke/ok/fail/info, not {self.type!r}") from None
        if isinstance(self.process, bool) or not (
            isinstance(self.process, (int, str))
        ):
            raise HistoryError(f"process must be an int or a name, not {self.process!r}")
        if not isinstance(self.f, str) or not self.f:
            raise HistoryError(f"f must be a non-empty string, not {self.f!r}")
        if isinstance(self.time, bool) or not isinstance(self.time, int | float):
            raise HistoryError(f"time must be a number, not {self.time!r}")

    @property
    def is_client(self) -> bool:
        return isinstance(self.process, int)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type.value,
            "f": self.f,
        }
        if self.key is not None:
            d["key"] = self.key
        d["value"] = self.value
        if self.error is not None:
            d["error"] = self.error
        if self.extra:
            d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Op:
        if not isinstance(d, dict):
            raise HistoryError(f"an event must be a JSON object, not {type(d).__name__}")
        for name in ("process", "type", "f"):
            if name not in d:
                raise HistoryError(f"event has no {name!r} field")
        extra = {k: v for k, v in d.items() if k not in _FIELDS} or None
        error = d.get("error")
        return cls(
            type=d["type"],
            process=d["process"],
            f=d["f"],
            value=d.get("value"),
            key=d.get("key"),
            time=d.get("time", 0) if d.get("time") is not None else 0,
            index=d.get("index", -1) if isinstance(d.get("index"), int) else -1,
            error=None if error is None else str(error),
            extra=extra,
        )

    def describe(self) -> str:
        key = f" {self.key}" if self.key is not None else ""
        err = f" ({self.error})" if self.error else ""
        return f"{self.process} {self.type.value} {self.f}{key} {json.dumps(self.value)}{err}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """A paired call: what a checker sees.

    ``call`` and ``ret`` are event positions (real-time order); ``ret`` is ``math.inf`` for an
    operation whose outcome is unknown (``info``, or never completed): it may take effect at any
    point after its call, or never. ``output`` is the completion's value for ``ok`` and ``None``
    when unknown; ``input`` is the invoke's value. ``fail``ed operations never become Operations.
    """

    id: int
    process: Process
    f: str
    key: Any
    input: Any
    output: Any
    call: int
    ret: float
    call_time: int
    ret_time: int | None
    known: bool

    def describe(self) -> str:
        key = f" {self.key}" if self.key is not None else ""
        out = json.dumps(self.output) if self.known else "?"
        return f"p{self.process} {self.f}{key} {json.dumps(self.input)} -> {out}"


def _positional(events: Sequence[Op]) -> list[Op]:
    return [replace(op, index=i) if op.index != i else op for i, op in enumerate(events)]


class History:
    """An ordered list of events, validated when built: pairing rules are enforced here once.

    Rules (a violation raises HistoryError naming the 1-based line):
    * a completion needs an open invoke of the same process, with the same ``f``;
    * a process with an open invoke cannot invoke again;
    * a process whose operation ended in ``info`` cannot invoke again;
    * ``nemesis`` events are free-form (faults are recorded as invoke/info pairs by convention).
    An invoke that never completes is treated as ``info``.
    """

    __slots__ = ("_ops", "source")

    def __init__(self, events: Iterable[Op], *, source: str | None = None, validate: bool = True) -> None:
        self._ops: list[Op] = _positional(list(events))
        self.source = source
        if validate:
            self.validate()

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __getitem__(self, i: int) -> Op:
        return self._ops[i]

    @property
    def ops(self) -> list[Op]:
        return list(self._ops)

    def client_ops(self) -> list[Op]:
        return [op for op in self._ops if op.is_client]

    def validate(self) -> None:
        open_by_process: dict[Process, Op] = {}
        crashed: set[Process] = set()
        for i, op in enumerate(self._ops):
            if not op.is_client:
                continue
            line = i + 1
            if op.type is OpType.INVOKE:
                if op.process in open_by_process:
                    raise HistoryError(
                        f"process {op.process} invokes {op.f} while its {open_by_process[op.process].f} "
                        f"(line {open_by_process[op.process].index + 1}) is still open",
                        line=line,
                        source=self.source,
                    )
                if op.process in crashed:
                    raise HistoryError(
                        f"process {op.process} invokes {op.f} after an info completion; "
                        "a crashed process must not invoke again",
                        line=line,
                        source=self.source,
                    )
                open_by_process[op.process] = op
            else:
                inv = open_by_process.pop(op.process, None)
                if inv is None:
                    raise HistoryError(
                        f"{op.type.value} {op.f} of process {op.process} has no open invoke",
                        line=line,
                        source=self.source,
                    )
                if inv.f != op.f:
                    raise HistoryError(
                        f"{op.type.value} {op.f} of process {op.process} completes an invoke of {inv.f} "
                        f"(line {inv.index + 1})",
                        line=line,
                        source=self.source,
                    )
                if op.type is OpType.INFO:
                    crashed.add(op.process)

    def operations(self) -> list[Operation]:
        """Pair client invokes with completions. ``fail`` pairs are dropped: they never happened."""
        result: list[Operation] = []
        open_by_process: dict[Process, Op] = {}
        pending: dict[Process, int] = {}
        slots: list[Operation | None] = []
        for i, op in enumerate(self._ops):
            if not op.is_client:
                continue
            if op.type is OpType.INVOKE:
                open_by_process[op.process] = op
                pending[op.process] = len(slots)
                slots.append(None)
                continue
            inv = open_by_process.pop(op.process, None)
            slot = pending.pop(op.process, None)
            if inv is None or slot is None:
                continue
            if op.type is OpType.FAIL:
                continue
            known = op.type is OpType.OK
            slots[slot] = Operation(
                id=slot,
                process=inv.process,
                f=inv.f,
                key=inv.key if inv.key is not None else op.key,
                input=inv.value,
                output=op.value if known else None,
                call=inv.index,
                ret=float(i) if known else math.inf,
                call_time=inv.time,
                ret_time=op.time if known else None,
                known=known,
            )
        for process, inv in open_by_process.items():
            slot = pending[process]
            slots[slot] = Operation(
                id=slot,
                process=inv.process,
                f=inv.f,
                key=inv.key,
                input=inv.value,
                output=None,
                call=inv.index,
                ret=math.inf,
                call_time=inv.time,
                ret_time=None,
                known=False,
            )
        for n, s in enumerate(x for x in slots if x is not None):
            result.append(replace(s, id=n) if s.id != n else s)
        return result

    def subhistory(self, keep: Iterable[int]) -> History:
        """The events at the given positions, in order (used by partitioning and minimisation)."""
        wanted = sorted(set(keep))
        return History((self._ops[i] for i in wanted), source=self.source, validate=False)

    # --- JSON Lines -------------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, validate: bool = True) -> History:
        p = Path(path)
        try:
            with p.open("r", encoding="utf-8") as fh:
                return cls.parse(fh, source=str(p), validate=validate)
        except OSError as e:
            raise HistoryError(f"cannot read history: {e.strerror or e}", source=str(p)) from None
        except UnicodeDecodeError as e:
            raise HistoryError(f"not UTF-8 text: {e.reason}", source=str(p)) from None

    @classmethod
    def parse(cls, lines: Iterable[str], *, source: str | None = None, validate: bool = True) -> History:
        events: list[Op] = []
        for n, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise HistoryError(f"bad JSON: {e.msg} at column {e.colno}", line=n, source=source) from None
            try:
                events.append(Op.from_dict(d))
            except HistoryError as e:
                raise HistoryError(str(e), line=n, source=source) from None
        return cls(events, source=source, validate=validate)

    def write(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for op in self._ops:
                fh.write(json.dumps(op.to_dict(), separators=(",", ":")) + "\n")

    def dumps(self) -> str:
        buf = io.StringIO()
        for op in self._ops:
            buf.write(json.dumps(op.to_dict(), separators=(",", ":")) + "\n")
        return buf.getvalue()


class HistoryWriter:
    """Appends events to a JSONL file as they happen, so a crashed run keeps its history.

    Each event is written and flushed as one line; ``sync=True`` also fsyncs every ``sync_every``
    events (a campaign's history survives the harness being killed, not only closed).
    """

    def __init__(self, path: str | os.PathLike[str], *, sync_every: int = 64) -> None:
        self.path = Path(path)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")
        self._count = 0
        self._sync_every = sync_every

    @property
    def count(self) -> int:
        return self._count

    def append(self, op: Op) -> Op:
        if op.index != self._count:
            op = replace(op, index=self._count)
        self._fh.write(json.dumps(op.to_dict(), separators=(",", ":")) + "\n")
        self._fh.flush()
        self._count += 1
        if self._sync_every and self._count % self._sync_every == 0:
            os.fsync(self._fh.fileno())
        return op

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
