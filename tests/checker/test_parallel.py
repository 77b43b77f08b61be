"""Worker processes give the same answers as the in-process search, in the same order."""

from __future__ import annotations

import os

import pytest
from raftlab.checker import check
from raftlab.checker.parallel import map_ordered

from raftlab import formats
from raftlab.history import History, Op, OpType
from tests.conftest import need_histories


def square_and_pid(n: int) -> tuple[int, int]:
    return n * n, os.getpid()


def test_map_ordered_keeps_input_order_across_workers() -> None:
    items = list(range(40))
    results = list(map_ordered(square_and_pid, items, workers=2))
    assert [r for r, _ in results] == [n * n for n in items]
    if hasattr(os, "fork") and (os.cpu_count() or 1) > 1:
        assert all(pid != os.getpid() for _, pid in results)


def kv_history(keys: int, *, stale_key: int | None) -> History:
    """Two processes per key writing then reading; ``stale_key`` reads a value after it was replaced."""
    events: list[Op] = []
    for k in range(keys):
        key = f"k{k}"
        for value in (1, 2):
            events.append(Op(process=2 * k, type=OpType.INVOKE, f="write", key=key, value=value))
            events.append(Op(process=2 * k, type=OpType.OK, f="write", key=key, value=value))
        seen = 1 if k == stale_key else 2
        events.append(Op(process=2 * k + 1, type=OpType.INVOKE, f="read", key=key, value=None))
        events.append(Op(process=2 * k + 1, type=OpType.OK, f="read", key=key, value=seen))
    return History(events)


@pytest.mark.parametrize("stale_key", [None, 7])
def test_partitions_in_workers_agree_with_in_process(stale_key: int | None) -> None:
    history = kv_history(12, stale_key=stale_key)
    alone = check(history, "kv", workers=1)
    forked = check(history, "kv", workers=2)
    assert alone.valid is forked.valid is (stale_key is None)
    if stale_key is not None:
        assert alone.failing is not None and forked.failing is not None
        assert alone.failing.name == forked.failing.name == f"k{stale_key}"
        assert forked.explanation == alone.explanation
    else:
        assert [p.valid for p in forked.partitions] == [True] * 12


def test_porcupine_kv_in_workers() -> None:
    root = need_histories()
    kv = root / "porcupine" / "kv"
    assert check(formats.read_history(kv / "c50-bad.txt"), "kv-append", workers=2).valid is False
    ok = check(formats.read_history(kv / "c10-ok.txt"), "kv-append", workers=2)
    assert ok.valid is True and len(ok.partitions) > 1
