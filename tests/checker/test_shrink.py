"""The minimal sub-history is illegal, faithful and the same on every run (checker/shrink.py).

``assert_faithful`` is the property every counterexample must have; the conformance suite applies
it to every illegal history (tests/checker/test_conformance.py), and the hypothesis tests here to
random histories of the models the suite lacks (register, kv) and of mutex.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raftlab.checker import Result, check, partitions
from raftlab.checker.models import make_model

from raftlab.history import History, Op, OpType
from raftlab.protocols import MonotoneModel, ReadOnlyModel, ValueFlowModel
from tests.checker.test_properties import brute_force

ORACLE_OPS = 7
"""Up to this many kept operations, the brute-force oracle re-checks illegality independently."""

ADD_BACK = 40
"""Monotone models: this many deleted operations (the first called) are put back one at a time."""


def assert_faithful(history: History, result: Result, model_name: str, **opts: Any) -> None:
    """Illegal (the search and, when small, brute force agree), and no deleted operation could
    have explained it: no kept observation of a value that only deleted operations wrote."""
    model = make_model(model_name, **opts)
    bad = result.failing
    assert result.valid is False and bad is not None and bad.minimal
    part = dict(partitions(model, history.operations()))[bad.name]
    kept = [o for o in part if o.id in set(bad.minimal)]
    assert len(kept) == len(bad.minimal)
    sub = history.subhistory([o.call for o in kept] + [int(o.ret) for o in kept if o.known])
    assert check(sub, model, minimise=False).valid is False  # the search, re-run on it alone
    if len(kept) <= ORACLE_OPS:
        assert brute_force(kept, model) is False  # type: ignore[arg-type]
    if isinstance(model, ValueFlowModel):
        for o in kept:
            if not o.known:
                continue
            for v in model.observed(o):
                if v == model.init():
                    continue
                writers = [w for w in part if w is not o and v in model.written(w) and w.call < o.ret]
                assert not writers or any(w in kept for w in writers), \
                    f"{model.describe_op(o)} keeps none of the writes of its value"
    elif isinstance(model, MonotoneModel):  # every kept observation keeps what it shows
        pure = model.read_only if isinstance(model, ReadOnlyModel) else (lambda _: False)
        for o in kept:
            if o.known and pure(o):
                for d in part:
                    if d not in kept and not pure(d) and d.call < o.ret:
                        assert not model.shows(o, d), f"{model.describe_op(o)} shows deleted {model.describe_op(d)}"
        # so no deleted operation could have made it legal: each one put back, it stays illegal
        last = max((o.ret for o in kept if o.known), default=float("-inf"))
        for d in [d for d in part if d not in kept and d.call < last][:ADD_BACK]:
            again = sorted([*kept, d], key=lambda o: o.call)
            sub = history.subhistory([o.call for o in again] + [int(o.ret) for o in again if o.known])
            assert check(sub, model, minimise=False).valid is False, f"{model.describe_op(d)} makes it legal"
    else:  # every deleted operation that changes state comes after every kept one
        last = max((o.ret for o in kept if o.known), default=float("-inf"))
        pure = model.read_only if isinstance(model, ReadOnlyModel) else (lambda _: False)
        for d in part:
            if d not in kept and not (d.known and pure(d)):
                assert d.call > last, f"deleted {model.describe_op(d)} may precede a kept operation"


def random_history(actions: list[tuple[int, int, int, str]], fs: list[str], keys: int) -> History:
    """Processes invoke and complete random operations with random (often wrong) values."""
    events: list[Op] = []
    open_ops: dict[int, tuple[str, Any, Any]] = {}
    crashed: set[int] = set()
    for p, a, b, outcome in actions:
        if p in crashed:
            continue
        if p not in open_ops:
            f = fs[a % len(fs)]
            key = f"k{b % keys}" if keys > 1 else None
            value = a % 3 if f == "write" else [a % 3, b % 3] if f == "cas" else None
            events.append(Op(process=p, type=OpType.INVOKE, f=f, key=key, value=value))
            open_ops[p] = (f, key, value)
        else:
            f, key, value = open_ops.pop(p)
            out = b % 3 if f == "read" else value
            events.append(Op(process=p, type=OpType(outcome), f=f, key=key, value=out))
            if outcome == "info":
                crashed.add(p)
    return History(events)


ACTIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 8), st.integers(0, 8),
                             st.sampled_from(["ok", "ok", "ok", "ok", "info", "fail"])), min_size=2, max_size=40)
MODELS = {"register": (["read", "write"], 1), "cas-register": (["read", "write", "cas"], 1),
          "kv": (["read", "write", "cas"], 2), "mutex": (["acquire", "release"], 1)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(MODELS)), ACTIONS)
def test_every_counterexample_is_faithful(model_name: str, actions: list[tuple[int, int, int, str]]) -> None:
    fs, keys = MODELS[model_name]
    history = random_history(actions, fs, keys)
    result = check(history, model_name)
    ops = history.operations()
    if keys == 1 and len(ops) <= ORACLE_OPS and any(o.known for o in ops):  # the verdict, by brute force
        assert result.valid is brute_force(ops, make_model(model_name))
    if result.valid is False:
        assert_faithful(history, result, model_name)
        again = check(history, model_name)
        assert again.failing is not None and again.failing.minimal == result.failing.minimal  # type: ignore[union-attr]


def test_read_from_a_dropped_write_is_never_the_answer() -> None:
    """etcd_000's shape: write(2) and write(1) done before read() -> 2 began. Plain ddmin kept
    write(1) and the read alone (a read of 2 from nowhere); the stale read needs write(2) too."""
    spec = [(0, "invoke", "write", 2), (0, "ok", "write", 2), (1, "invoke", "write", 1), (1, "ok", "write", 1),
            (2, "invoke", "read", None), (2, "ok", "read", 2)]
    history = History(Op(process=p, type=OpType(t), f=f, value=v) for p, t, f, v in spec)
    result = check(history, "cas-register")
    assert_faithful(history, result, "cas-register")
    assert result.failing is not None and len(result.failing.minimal) == 3
