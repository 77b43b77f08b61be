"""raftlab.checker: decides whether a history is linearizable, and explains when it is not.

The whole public API is ``check(history, model, *, time_limit)`` -> ``Result`` (as porcupine.go),
plus ``compose`` / ``merge_valid`` for combining checkers and ``visualize.render_html`` for a
timeline page. It reads a ``History`` and never a cluster, so it works on any system's history.

Partitions (one per key for the kv models) are searched interleaved, a slice of steps each in
turn, so one expensive key cannot delay finding a cheap illegal one; the first illegal partition
ends the check. A time limit or memo budget yields ``unknown`` naming the unsettled partitions.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Hashable
from typing import Any

from raftlab.history import History, Operation

from .explain import explain
from .linearizable import Deadline, Outcome, minimise, search, stuck_operations
from .models import MODELS, ModelError, make_model
from .result import UNKNOWN, PartitionResult, Result, compose, merge_valid, safe_check
from .sets import check_set

__all__ = ["MODELS", "ModelError", "PartitionResult", "Result", "check", "compose", "merge_valid", "safe_check"]


def _partitions(model: Any, ops: list[Operation]) -> list[tuple[str, list[Operation]]]:
    key_of = getattr(model, "partition_key", None)
    if key_of is None:
        return [("all", ops)]
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(key_of(op), []).append(op)
    return [(str(k), v) for k, v in sorted(groups.items(), key=lambda kv: repr(kv[0]))]


def check(
    history: History,
    model: str | Any = "kv",
    *,
    time_limit: float | None = None,
    max_memo: int | None = None,
    minimise_budget: float = 2.0,
    **model_opts: Any,
) -> Result:
    """Is ``history`` linearizable with respect to ``model``? True, False or "unknown"."""
    started = time.monotonic()
    if model == "set":
        result = check_set(history)
        result.elapsed = time.monotonic() - started
        return result
    m = make_model(model, **model_opts) if isinstance(model, str) else model
    name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    ops = history.operations()
    parts = _partitions(m, ops)
    deadline = Deadline(time_limit)
    outcomes: dict[int, Outcome] = {}
    live: dict[int, Generator[None, None, Outcome]] = {
        i: search(m, part_ops, deadline=deadline, max_memo=max_memo) for i, (_, part_ops) in enumerate(parts)
    }
    failed: int | None = None
    while live and failed is None:
        for i in list(live):
            try:
                next(live[i])
            except StopIteration as stop:
                outcomes[i] = stop.value
                del live[i]
                if stop.value.valid is False:
                    failed = i
                    break
    results: list[PartitionResult] = []
    for i, (pname, part_ops) in enumerate(parts):
        out = outcomes.get(i)
        if out is None:
            results.append(PartitionResult(name=pname, valid=UNKNOWN, operations=len(part_ops),
                                           reason="not searched to the end: another partition was illegal"))
            continue
        pr = PartitionResult(name=pname, valid=out.valid, operations=len(part_ops), reason=out.reason,
                             longest_prefix=[part_ops[k].id for k in out.prefix],
                             states=[m.describe_state(s) for s in out.states])
        results.append(pr)
    valid = merge_valid(p.valid for p in results)
    explanation = ""
    if failed is not None:
        part_ops = parts[failed][1]
        bad = results[failed]
        local_prefix = outcomes[failed].prefix
        bad.stuck = [part_ops[k].id for k in stuck_operations(part_ops, local_prefix)]
        bad.minimal = [part_ops[k].id for k in minimise(m, part_ops, budget=minimise_budget)]
        local = {op.id: k for k, op in enumerate(part_ops)}
        view = PartitionResult(name=bad.name, valid=False, operations=bad.operations,
                               longest_prefix=[local[i] for i in bad.longest_prefix], states=bad.states,
                               stuck=[local[i] for i in bad.stuck], minimal=[local[i] for i in bad.minimal])
        explanation = explain(m, view, part_ops)
    elif valid == UNKNOWN:
        unsettled = [f"{p.name} ({p.reason})" for p in results if p.valid == UNKNOWN]
        explanation = "unknown: unsettled partitions: " + ", ".join(unsettled[:10])
    return Result(valid=valid, model=name, explanation=explanation, operations=len(ops), partitions=results,
                  elapsed=time.monotonic() - started)
