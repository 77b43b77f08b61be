"""The set checker: acknowledged adds must survive to the final read."""

from __future__ import annotations

from raftlab.checker import check_set

from raftlab.history import History, Op, OpType


def adds_then_read(outcomes: dict[int, str], final: list[int] | None) -> History:
    events: list[Op] = []
    for p, (value, outcome) in enumerate(outcomes.items()):
        events.append(Op(process=p, type=OpType.INVOKE, f="add", value=value))
        events.append(Op(process=p, type=OpType(outcome), f="add", value=value))
    if final is not None:
        events.append(Op(process=99, type=OpType.INVOKE, f="read"))
        events.append(Op(process=99, type=OpType.OK, f="read", value=final))
    return History(events)


def test_every_acknowledged_add_read_is_valid_and_info_adds_may_be_recovered() -> None:
    result = check_set(adds_then_read({1: "ok", 2: "info", 3: "fail"}, [1, 2]))
    assert result.valid is True
    assert result.details["recovered_count"] == 1 and result.details["lost_count"] == 0


def test_lost_and_unexpected_elements_are_named() -> None:
    result = check_set(adds_then_read({1: "ok", 2: "ok", 3: "info"}, [2, 7]))
    assert result.valid is False
    assert result.details["lost"] == [1] and result.details["unexpected"] == [7]
    assert "1 acknowledged adds lost" in result.explanation and "never added" in result.explanation


def test_no_final_read_proves_nothing() -> None:
    result = check_set(adds_then_read({1: "ok"}, None))
    assert result.valid == "unknown" and "nothing is proven" in result.explanation
