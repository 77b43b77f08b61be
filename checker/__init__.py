"""raftlab.checker: decides whether a history is linearizable, and explains when it is not.

The whole public API is ``check(history, model, *, time_limit)`` -> ``Result`` (as porcupine.go),
plus ``compose`` / ``merge_valid`` for combining checkers, ``check_set`` (the set checker, which
is not a linearizability model) and ``visualize.render_html`` for a timeline page. It reads a
``History`` and never a cluster, so it works on any system's history.

Partitions (one per key for a ``PartitionedModel``) are searched interleaved, a slice of steps
each in turn, so one expensive key cannot delay finding a cheap illegal one; the first illegal
partition ends the check. A time limit or memo budget yields ``unknown`` naming the unsettled
partitions. A history with no operation whose outcome is known proves nothing: ``unknown``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from raftlab.history import History, Operation, OpType
from raftlab.protocols import Model, PartitionedModel

from .linearizable import Deadline, prepare, stuck_operations
from .models import MODELS, ModelError, make_model
from .parallel import cores, search_partitions
from .result import UNKNOWN, PartitionResult, Result, compose, merge_valid, safe_check
from .sets import check_set

__all__ = ["MODELS", "ModelError", "PartitionResult", "Result", "check", "check_set", "compose", "merge_valid",
           "partitions", "safe_check"]


PARALLEL_OPERATIONS = 5000
"""Below this many operations, forking workers costs more than it saves."""


def partitions(model: Model[Any], ops: list[Operation]) -> list[tuple[str, list[Operation]]]:
    """(name, operations) of each independent part: one per key of a ``PartitionedModel``."""
    if not isinstance(model, PartitionedModel):
        return [("all", ops)]
    key_of = model.partition_key
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
    minimise: bool = True,
    workers: int | None = None,
    keep: Callable[[Operation], bool] | None = None,
    **model_opts: Any,
) -> Result:
    """Is ``history`` linearizable with respect to ``model``? True, False or "unknown".

    ``minimise``: shrink a counterexample to a faithful minimal illegal sub-history
    (``checker/shrink.py``; its budget is counted in search steps, so the result is the same on
    every run). ``workers``: processes for the partitions (``None``: every core when the history
    has several partitions and at least ``PARALLEL_OPERATIONS`` operations, else this process only).
    ``keep``: only the operations it accepts are the model's (another checker judges the rest);
    they keep their ids in ``history``, so a counterexample names the run's own operations.
    """
    started = time.monotonic()
    m = make_model(model, **model_opts) if isinstance(model, str) else model
    name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    ops = history.operations()
    if keep is not None:
        ops = [op for op in ops if keep(op)]
    if not any(op.known for op in ops):
        invoked = sum(1 for e in history if e.is_client and e.type is OpType.INVOKE)
        reason = (f"none of its {len(ops)} operations completed with a known outcome" if ops else
                  f"all {invoked} of its operations failed" if invoked else "no operations")
        return Result(valid=UNKNOWN, model=name, explanation=f"unknown: the history proves nothing ({reason})",
                      operations=len(ops), elapsed=time.monotonic() - started)
    parts = partitions(m, ops)
    deadline = Deadline(time_limit)
    if workers is None:
        workers = cores() if len(parts) > 1 and len(ops) >= PARALLEL_OPERATIONS else 1
    outcomes = search_partitions(m, [p for _, p in parts], deadline=deadline, max_memo=max_memo, workers=workers)
    failed = next((i for i, out in outcomes.items() if out.valid is False), None)
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
        from .explain import describe, explain  # here: a valid history never pays for them
        from .shrink import shrink_partition

        part_ops = parts[failed][1]
        bad = results[failed]
        local_prefix = outcomes[failed].prefix
        bad.stuck = [part_ops[k].id for k in stuck_operations(part_ops, local_prefix)]
        if minimise:
            shrunk = shrink_partition(prepare(m, part_ops), outcomes[failed], deadline=deadline)
            bad.minimal = [part_ops[k].id for k in shrunk.kept]
            bad.minimal_finished = shrunk.finished
        bad.described = {op.id: describe(m, op) for op in part_ops}
        local = {op.id: k for k, op in enumerate(part_ops)}
        view = PartitionResult(name=bad.name, valid=False, operations=bad.operations,
                               longest_prefix=[local[i] for i in bad.longest_prefix], states=bad.states,
                               stuck=[local[i] for i in bad.stuck], minimal=[local[i] for i in bad.minimal],
                               minimal_finished=bad.minimal_finished)
        explanation = explain(m, view, part_ops)
    elif valid == UNKNOWN:
        unsettled = [f"{p.name} ({p.reason})" for p in results if p.valid == UNKNOWN]
        explanation = "unknown: unsettled partitions: " + ", ".join(unsettled[:10])
    return Result(valid=valid, model=name, explanation=explanation, operations=len(ops), partitions=results,
                  elapsed=time.monotonic() - started)
