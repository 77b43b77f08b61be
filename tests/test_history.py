"""The history format: pairing rules, errors that name the line, crash-safe writing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from raftlab.history import History, HistoryError, HistoryWriter, Op, OpType


def ev(process: int | str, type_: str, f: str, value: object = None, key: object = None) -> Op:
    return Op(process=process, type=OpType(type_), f=f, value=value, key=key)


def test_operations_pair_and_classify() -> None:
    h = History([
        ev(0, "invoke", "write", 1),
        ev(1, "invoke", "read"),
        ev(0, "ok", "write", 1),
        ev("nemesis", "info", "kill", "n1"),
        ev(1, "ok", "read", 1),
        ev(2, "invoke", "cas", [1, 2]),
        ev(2, "fail", "cas", [1, 2]),
        ev(3, "invoke", "write", 7),
        ev(3, "info", "write", 7),
        ev(4, "invoke", "write", 8),
    ])
    ops = h.operations()
    assert [(o.process, o.f, o.input, o.output) for o in ops] == [
        (0, "write", 1, 1), (1, "read", None, 1), (3, "write", 7, None), (4, "write", 8, None)]
    assert ops[0].call == 0 and ops[0].ret == 2
    assert ops[2].ret == math.inf and not ops[2].known
    assert ops[3].ret == math.inf


@pytest.mark.parametrize(("events", "message"), [
    ([ev(0, "ok", "read", 1)], "has no open invoke"),
    ([ev(0, "invoke", "read"), ev(0, "invoke", "read")], "still open"),
    ([ev(0, "invoke", "read"), ev(0, "ok", "write", 1)], "completes an invoke of read"),
    ([ev(0, "invoke", "read"), ev(0, "info", "read"), ev(0, "invoke", "read")], "after an info"),
])
def test_bad_pairing_names_the_line(events: list[Op], message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        History(events)
    assert info.value.line == len(events)


def test_parse_errors_name_line(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok", \n')
    with pytest.raises(HistoryError, match=r"h.jsonl:2: bad JSON"):
        History.read(p)
    p.write_text('{"process": 0, "type": "maybe", "f": "read"}\n')
    with pytest.raises(HistoryError, match=r":1: type must be one of"):
        History.read(p)
    p.write_text('[1, 2]\n')
    with pytest.raises(HistoryError, match="JSON object"):
        History.read(p)
    with pytest.raises(HistoryError, match="cannot read history"):
        History.read(tmp_path / "missing.jsonl")


def test_writer_round_trip_survives_without_close(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    w = HistoryWriter(p)
    w.append(ev(0, "invoke", "write", 3, key="k"))
    w.append(ev(0, "ok", "write", 3, key="k"))
    # not closed: every line was flushed as it was written
    h = History.read(p)
    assert [op.index for op in h] == [0, 1]
    assert h.operations()[0].key == "k"
    w.close()
    assert History.read(p).dumps() == h.dumps()
