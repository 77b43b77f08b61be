"""The set checker: every acknowledged add must survive to the final read.

Ops: ``add`` (value: an element) and a final ``read`` (ok value: every element present). An add
that was acknowledged (``ok``) but is missing from the final read is *lost*; an element read that
was never attempted is *unexpected*; an add that ended ``info`` and is present is *recovered*
(allowed). Without any successful read nothing is proven: ``unknown``.
"""

from __future__ import annotations

from typing import Any

from raftlab.history import History, OpType

from .result import UNKNOWN, Result


def _sample(xs: set[Any], n: int = 20) -> list[Any]:
    return sorted(xs, key=repr)[:n]


def check_set(history: History) -> Result:
    attempted: set[Any] = set()
    acknowledged: set[Any] = set()
    final: set[Any] | None = None
    open_values: dict[Any, Any] = {}
    for op in history:
        if not op.is_client:
            continue
        if op.f == "add":
            if op.type is OpType.INVOKE:
                attempted.add(_key(op.value))
                open_values[op.process] = _key(op.value)
            elif op.type is OpType.OK:
                acknowledged.add(open_values.get(op.process, _key(op.value)))
        elif op.f == "read" and op.type is OpType.OK:
            if not isinstance(op.value, list):
                return Result(valid=UNKNOWN, model="set",
                              explanation=f"read at event {op.index} returned {op.value!r}, not a list")
            final = {_key(v) for v in op.value}
    if final is None:
        return Result(valid=UNKNOWN, model="set", operations=len(attempted),
                      explanation="no successful read of the set: nothing is proven")
    lost = acknowledged - final
    unexpected = final - attempted
    recovered = (final & attempted) - acknowledged
    details = {
        "attempted": len(attempted),
        "acknowledged": len(acknowledged),
        "read": len(final),
        "lost": _sample(lost),
        "lost_count": len(lost),
        "unexpected": _sample(unexpected),
        "unexpected_count": len(unexpected),
        "recovered_count": len(recovered),
    }
    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged adds lost (e.g. {_sample(lost, 5)})")
    if unexpected:
        problems.append(f"{len(unexpected)} elements read that were never added (e.g. {_sample(unexpected, 5)})")
    return Result(valid=not problems, model="set", operations=len(attempted),
                  explanation="; ".join(problems), details=details)


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
