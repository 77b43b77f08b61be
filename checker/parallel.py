"""Checking in worker processes: several histories, or the partitions of one, on every core.

Why: CPython runs one search per core. On a multi-core machine, ``raftlab check`` of many
histories (porcupine's 103 etcd logs) and ``check`` of a history with many expensive partitions
would otherwise leave cores idle.

Guarantees:

* Results come back in the order of the inputs (``map_ordered``), so the CLI prints the same
  lines as a sequential run.
* Partitions are dealt round-robin to the workers, and each worker interleaves its share (the
  same ``search`` generators ``check`` uses in-process), so an expensive partition never delays a
  cheap illegal one in any worker; the first illegal outcome terminates every worker
  (``search_partitions``).
* Workers are forked (Linux), so they inherit the model and the operations and need not pickle
  user models; only outcomes travel back. Where fork is unavailable, or there is one core or one
  item, everything runs in this process with the same results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from raftlab.history import Operation

from .linearizable import Deadline, Outcome, prepare, search

T = TypeVar("T")
R = TypeVar("R")

# What forked workers inherit (set just before the pool is created, cleared after).
_inherited: dict[str, Any] = {}


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _fork_context() -> Any:
    """The fork context, or None where workers cannot be forked (no fork; inside a pool worker)."""
    import multiprocessing  # here, not at the top: ~13 ms that a one-history check never needs

    if multiprocessing.current_process().daemon:
        return None
    try:
        return multiprocessing.get_context("fork")
    except ValueError:
        return None


def _call_inherited(item: Any) -> Any:
    return _inherited["fn"](item)


def map_ordered(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` over forked workers, yielded in input order as each becomes available.

    ``fn`` and ``items`` are inherited by fork, never pickled; each result is pickled back.
    """
    n = min(workers or cores(), len(items))
    ctx = _fork_context() if n > 1 else None
    if ctx is None:
        yield from map(fn, items)
        return
    _inherited["fn"] = fn
    try:
        with ctx.Pool(n) as pool:
            yield from pool.imap(_call_inherited, items, chunksize=1)
    finally:
        _inherited.clear()


def interleave(
    model: Any,
    parts: Sequence[Sequence[Operation]],
    *,
    deadline: Deadline,
    max_memo: int | None,
) -> dict[int, Outcome]:
    """Search ``parts`` a slice each in turn; stop at the first illegal one. Keys: indexes into parts."""
    outcomes: dict[int, Outcome] = {}
    live: dict[int, Generator[None, None, Outcome]] = {
        i: search(prepare(model, ops), deadline=deadline, max_memo=max_memo) for i, ops in enumerate(parts)
    }
    while live:
        for i in list(live):
            try:
                next(live[i])
            except StopIteration as stop:
                outcomes[i] = stop.value
                del live[i]
                if stop.value.valid is False:
                    return outcomes
    return outcomes


def _search_share(share: list[int]) -> dict[int, Outcome]:
    model, parts, deadline, max_memo = _inherited["search"]
    found = interleave(model, [parts[i] for i in share], deadline=deadline, max_memo=max_memo)
    return {share[k]: out for k, out in found.items()}


def search_partitions(
    model: Any,
    parts: Sequence[Sequence[Operation]],
    *,
    deadline: Deadline,
    max_memo: int | None,
    workers: int,
) -> dict[int, Outcome]:
    """Every partition's outcome (or those settled before the first illegal one), on ``workers`` cores."""
    n = min(workers, len(parts))
    ctx = _fork_context() if n > 1 else None
    if ctx is None:
        return interleave(model, parts, deadline=deadline, max_memo=max_memo)
    shares = [list(range(k, len(parts), n)) for k in range(n)]
    outcomes: dict[int, Outcome] = {}
    _inherited["search"] = (model, parts, deadline, max_memo)  # CLOCK_MONOTONIC is system-wide
    try:
        with ctx.Pool(n) as pool:  # leaving the block terminates workers still searching
            for found in pool.imap_unordered(_search_share, shares):
                outcomes.update(found)
                if any(out.valid is False for out in found.values()):
                    break
    finally:
        _inherited.clear()
    return outcomes
