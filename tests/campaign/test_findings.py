"""Where a violation began: the earliest bad operation per key, its node and the faults then (raftlab.findings)."""

from __future__ import annotations

from pathlib import Path

from raftlab.checker import check

from raftlab.findings import (
    UNSEARCHED,
    active_faults,
    answered,
    earliest_bad,
    fault_intervals,
    locate,
    settle,
)
from raftlab.history import NEMESIS, History, Op, OpType
from raftlab.progress import RunLog

PERF = [{"name": "partition", "start": ["start-partition"], "stop": ["stop-partition"], "color": "#E9DCA0"}]


def ev(process: object, type_: str, f: str, t: float, key: str | None = None, value: object = None,
       node: str | None = None, error: str | None = None) -> Op:
    return Op(type=OpType(type_), process=process, f=f, key=key, value=value, time=int(t * 1e9), error=error,  # type: ignore[arg-type]
              extra={"node": node} if node else None)


def history() -> History:
    """Key a: a stale read at 3.2 s on n3 during a partition; b: fine; c: a stale read at 6.1 s, healed."""
    return History([
        ev(0, "invoke", "write", 1.0, "a", 1, "n1"), ev(0, "ok", "write", 1.1, "a", 1, "n1"),
        ev(1, "invoke", "write", 1.2, "b", 5, "n2"), ev(1, "ok", "write", 1.3, "b", 5, "n2"),
        ev(NEMESIS, "invoke", "start-partition", 2.0, value="one"),
        ev(NEMESIS, "info", "start-partition", 2.1, value={"grudge": {"n3": ["n1", "n2"]}, "description": "n3 | n1 n2"}),
        ev(0, "invoke", "write", 2.5, "a", 2, "n1"), ev(0, "ok", "write", 2.6, "a", 2, "n1"),
        ev(2, "invoke", "read", 3.1, "a", None, "n3"), ev(2, "ok", "read", 3.2, "a", 1, "n3"),
        ev(1, "invoke", "read", 3.3, "b", None, "n2"), ev(1, "ok", "read", 3.4, "b", 5, "n2"),
        ev(0, "invoke", "write", 4.0, "c", 7, "n1"), ev(0, "ok", "write", 4.1, "c", 7, "n1"),
        ev(NEMESIS, "invoke", "stop-partition", 5.0), ev(NEMESIS, "info", "stop-partition", 5.1, value={"healed": True}),
        ev(2, "invoke", "read", 6.0, "c", None, "n3"), ev(2, "ok", "read", 6.1, "c", None, "n3"),
        ev(3, "invoke", "cas", 6.2, "b", [1, 2], "n2"), ev(3, "fail", "cas", 6.3, "b", None, "n2", "cas mismatch: found 5"),
    ])


def test_the_earliest_bad_event_is_the_stale_reads_completion() -> None:
    events = [op for op in history() if op.key == "a"]
    from raftlab.checker.models import make_model

    n, result = earliest_bad(events, make_model("kv"), time_limit=10)
    assert events[n - 1].type is OpType.OK and events[n - 1].f == "read" and events[n - 1].value == 1
    assert result.valid is False


def test_locate_names_key_second_node_and_fault_earliest_first() -> None:
    h = list(history())
    intervals = fault_intervals(h, PERF, h[-1].time)
    assert [(name, a / 1e9, b / 1e9) for name, _, a, b in intervals] == [("partition", 2.1, 5.1)]
    found = locate(h, "kv", ["c", "a", "b"], intervals)
    assert [(b.key, b.ret, b.node) for b in found] == [("a", 3.2, "n3"), ("c", 6.1, "n3")]
    a, c = found
    assert a.words == "a: read() -> 1" and [f.name for f in a.faults] == ["partition"]
    assert a.faults[0].nodes == ("n1", "n2", "n3") and a.faults[0].detail == "n3 | n1 n2"
    assert c.faults == ()  # healed at 5.1 s
    assert {s.words for s in a.minimal} >= {"a: read() -> 1"} and all(s.node for s in a.minimal)
    assert "during: partition (n3 | n1 n2)" in a.describe()


def test_a_cas_mismatch_is_an_answer_and_other_fails_are_not() -> None:
    h = list(history())
    assert answered(h[-1]) and not answered(ev(3, "fail", "read", 1, error="could not connect to n2"))
    assert not answered(None) and not answered(ev(3, "info", "read", 1, error="timeout"))
    assert active_faults(h, fault_intervals(h, PERF, h[-1].time), int(5.2e9), int(6e9)) == ()


def test_settle_checks_the_keys_the_search_left_and_maps_their_ids() -> None:
    h = history()
    result = check(h, "kv")
    left = [p.name for p in result.partitions if p.reason == UNSEARCHED]
    assert left  # the checker stopped at the first illegal key
    settled = {p.name: p for p in settle(h, result).partitions}
    assert settled["a"].valid is False and settled["c"].valid is False and settled["b"].valid is True
    ops = {op.id: op for op in h.operations()}
    assert {ops[i].key for i in settled["b"].longest_prefix} == {"b"} and len(settled["b"].longest_prefix) == 2
    assert [ops[i].key for i in settled["c"].stuck] == ["c"]
    assert {p.name: p.valid for p in result.partitions}["a"] is False  # the given result is untouched


def test_run_log_has_every_stage_and_a_status_line_at_most_every_interval(tmp_path: Path) -> None:
    now = [100.0]
    log = RunLog(tmp_path / "run.log", every=10.0, clock=lambda: now[0])
    seen: list[str] = []
    stage, event = log.wrap(seen.append, None)
    stage("running")
    for k, op in enumerate(list(history()) * 3):
        now[0] = 100.0 + k  # one event a second
        event(op)
    stage("checking")
    log.close()
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert seen == ["running", "checking"]
    assert lines[0] == "[    0.0s] running" and lines[-1].endswith("] checking")
    status = [line for line in lines if "status: running" in line]
    assert len(status) == 5 and "faults" in status[0]  # 60 events over 59 s: at 10, 20, ..., 50 s
