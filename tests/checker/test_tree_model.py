"""The dtkv-dir model: tree histories that a correct DtKV produces pass, the classic tree bugs fail.

Each bad history is the client-visible trace of one mutant of raftlab/mutants.py (remove-noop,
batch-put-first-only, mkdir-clobbers, cas-absent-always), so the model is shown to see them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from raftlab.checker import check
from raftlab.checker.tree import DtkvDirs

from raftlab.history import History, Op, OpType


def seq(*steps: tuple[str, Any, Any]) -> History:
    """Sequential ops on directory t0: (f, input, output), each invoked and completed ok in turn."""
    events = []
    for i, (f, arg, out) in enumerate(steps):
        events.append(Op(type=OpType.INVOKE, process=0, f=f, key="t0", value=arg, time=2 * i))
        events.append(Op(type=OpType.OK, process=0, f=f, key="t0", value=out, time=2 * i + 1))
    return History(events)


def valid(h: History) -> object:
    return check(h, DtkvDirs(), time_limit=10).valid


def test_a_correct_tree_history_passes() -> None:
    h = seq(("mkdir", None, None), ("put", ["a", 1], ["a", 1]), ("batch-put", [["b", 2], ["c", 3]], None),
            ("list", None, ["a", "b", "c"]), ("cas-key", ["a", 1, 4], None), ("cas-key", ["d", None, 5], None),
            ("get", ["a"], 4), ("remove", ["b"], None), ("batch-get", ["a", "b", "d"], [4, None, 5]),
            ("batch-remove", ["a", "c", "d", "x"], None), ("list", None, []), ("rmdir", None, None),
            ("get", ["a"], None), ("mkdir", None, None), ("mkdir", None, None), ("list", None, []))
    assert valid(h) is True


def test_the_tree_mutants_client_visible_traces_are_illegal() -> None:
    base = [("mkdir", None, None), ("put", ["a", 1], None)]
    assert valid(seq(*base, ("remove", ["a"], None), ("get", ["a"], 1))) is False  # remove-noop
    assert valid(seq(*base, ("batch-put", [["b", 2], ["c", 3]], None), ("batch-get", ["b", "c"], [2, None]))) is False
    assert valid(seq(*base, ("mkdir", None, None), ("list", None, []))) is False  # mkdir-clobbers
    assert valid(seq(*base, ("cas-key", ["a", None, 9], None))) is False  # cas-absent-always
    assert valid(seq(("put", ["a", 1], None))) is False  # a put needs its directory
    assert valid(seq(*base, ("rmdir", None, None))) is False  # rmdir of a non-empty directory


def test_an_indeterminate_write_may_or_may_not_have_happened() -> None:
    events = [Op(type=OpType.INVOKE, process=0, f="mkdir", key="t0", time=0),
              Op(type=OpType.OK, process=0, f="mkdir", key="t0", time=1),
              Op(type=OpType.INVOKE, process=1, f="put", key="t0", value=["a", 7], time=2),
              Op(type=OpType.INFO, process=1, f="put", key="t0", time=3),
              Op(type=OpType.INVOKE, process=2, f="get", key="t0", value=["a"], time=4),
              Op(type=OpType.OK, process=2, f="get", key="t0", value=7, time=5),
              Op(type=OpType.INVOKE, process=2, f="get", key="t0", value=["a"], time=6),
              Op(type=OpType.OK, process=2, f="get", key="t0", value=8, time=7)]
    assert valid(History(events[:6])) is True
    assert valid(History(events)) is False


def test_kv_dirs_checks_register_keys_and_directories_in_one_history() -> None:
    from raftlab.checker.tree import KvDirs

    tree_part = list(seq(("mkdir", None, None), ("put", ["a", 1], None), ("remove", ["a"], None),
                         ("get", ["a"], None)))
    reg = [Op(type=OpType.INVOKE, process=1, f="write", key="r0", value=3, time=100),
           Op(type=OpType.OK, process=1, f="write", key="r0", value=3, time=101),
           Op(type=OpType.INVOKE, process=1, f="cas", key="r1", value=[None, 4], time=102),
           Op(type=OpType.OK, process=1, f="cas", key="r1", value=[None, 4], time=103),
           Op(type=OpType.INVOKE, process=1, f="read", key="r0", value=None, time=104),
           Op(type=OpType.OK, process=1, f="read", key="r0", value=3, time=105)]
    good = check(History(tree_part + reg), KvDirs(), time_limit=10)
    assert good.valid is True and len(good.partitions) == 3
    stale = [*reg[:5], replace(reg[5], value=None)]  # a read of r0 that misses the write
    bad = check(History(tree_part + stale), KvDirs(), time_limit=10)
    assert bad.valid is False and bad.failing is not None and bad.failing.name == "r0"
    removed = [*tree_part[:-1], replace(tree_part[-1], value=1)]  # remove-noop, seen by the directory part
    assert check(History(removed + reg), KvDirs(), time_limit=10).failing.name == "t0"  # type: ignore[union-attr]
