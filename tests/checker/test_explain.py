"""The counterexample shows the violation that is in the history, smallest first."""

from __future__ import annotations

import json

from raftlab.checker import check
from raftlab.checker.visualize import render_html

from raftlab.history import History, Op, OpType


def events(*spec: tuple[int, str, str, object]) -> History:
    return History(Op(process=p, type=OpType(t), f=f, value=v) for p, t, f, v in spec)


def minimal_words(history: History) -> list[str]:
    result = check(history, "cas-register")
    assert result.valid is False and result.failing is not None
    return sorted(result.failing.described[i].split(" [")[0] for i in result.failing.minimal)


def test_stale_read_keeps_the_write_that_replaced_the_value() -> None:
    history = events((0, "invoke", "write", 1), (0, "ok", "write", 1),
                     (1, "invoke", "write", 2), (1, "ok", "write", 2),
                     (2, "invoke", "read", None), (2, "ok", "read", 1),
                     (3, "invoke", "write", 3), (3, "ok", "write", 3))
    # the stale read with the write it read and the write that replaced it before it began;
    # never "read 1 with nobody writing 1" (deleting write(1) would invent that violation)
    assert minimal_words(history) == ["p0 write(1)", "p1 write(2)", "p2 read() -> 1"]


def test_read_keeps_the_concurrent_write_it_may_have_seen() -> None:
    history = events((0, "invoke", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", 1),
                     (0, "ok", "write", 1), (2, "invoke", "read", None), (2, "ok", "read", None))
    # the stale read of null; never the smaller "read 1 from nowhere" made by deleting write(1)
    assert minimal_words(history) == ["p0 write(1)", "p2 read() -> null"]


def test_page_shows_the_failing_operations() -> None:
    history = events((0, "invoke", "write", 1), (0, "ok", "write", 1),
                     (1, "invoke", "read", None), (1, "ok", "read", 7))
    result = check(history, "cas-register")
    page = render_html(history, result)
    assert result.valid is False
    data = json.loads(page.split("<script id='data' type='application/json'>")[1].split("</script>")[0])
    stuck = [op[3] for key in data["keys"] for op in key["ops"] if op[7] == 2]
    assert len(stuck) == 1 and "read() -> 7" in stuck[0]  # drawn red: could not be placed next
    assert "read() -&gt; 7" in page  # and named in the explanation
    assert "<script src" not in page and "<link" not in page and "https://" not in page  # offline
