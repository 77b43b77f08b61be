"""Property tests: two ways of computing the same verdict must agree (STYLE rule 4).

* A history produced by a simulated linearizable register is always linearizable.
* On small histories, mutated at random, the WGL search agrees with a brute-force reference
  that tries every order consistent with real time (and every subset of unknown operations).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from raftlab.checker import check
from raftlab.checker.models import CasRegister, KvAppend

from raftlab.history import History, Op, Operation, OpType

ACTION = st.tuples(st.integers(0, 3), st.sampled_from(["invoke", "complete"]),
                   st.sampled_from(["read", "write", "cas"]), st.integers(0, 2), st.integers(0, 2),
                   st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
ACTIONS = st.lists(ACTION, min_size=1, max_size=24)


def linearizable_history(actions: list[tuple[Any, ...]]) -> History:
    """Each op takes effect atomically at a moment inside its interval, so the result is linearizable."""
    state = 0
    open_ops: dict[int, tuple[str, Any, Any]] = {}
    events: list[Op] = []
    crashed: set[int] = set()
    for p, what, f, a, b, outcome in actions:
        if p in crashed:
            continue
        if what == "invoke" and p not in open_ops:
            value = None if f == "read" else a if f == "write" else [a, b]
            events.append(Op(process=p, type=OpType.INVOKE, f=f, value=value))
            result: Any = None
            if outcome != "fail":  # the effect happens now (for info: it happened, we just do not know)
                if f == "read":
                    result = state
                elif f == "write":
                    state = a
                elif state == a:
                    state = b
                else:
                    outcome = "fail"
            open_ops[p] = (f, value, (outcome, result))
        elif what == "complete" and p in open_ops:
            f, value, (outcome, result) = open_ops.pop(p)
            out = result if f == "read" else value
            events.append(Op(process=p, type=OpType(outcome), f=f, value=out))
            if outcome == "info":
                crashed.add(p)
    return History(events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_simulated_linearizable_register_is_linearizable(actions: list[tuple[Any, ...]]) -> None:
    history = linearizable_history(actions)
    proves_something = any(op.known for op in history.operations())
    assert check(history, "cas-register", initial_value=0).valid == (True if proves_something else "unknown")


def brute_force(ops: list[Operation], model: Any) -> bool:
    known = [o for o in ops if o.known]
    unknown = [o for o in ops if not o.known]
    for r in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, r):
            subset = known + list(chosen)
            for order in itertools.permutations(subset):
                if any(order[j].ret < order[i].call for i in range(len(order)) for j in range(i + 1, len(order))):
                    continue  # violates real-time order: a later op finished before an earlier one began
                state = model.init()
                for o in order:
                    ok, state = model.step(state, o)
                    if not ok:
                        break
                else:
                    return True
    return False


MUTATIONS = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3)), max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=12), MUTATIONS)
def test_search_agrees_with_brute_force(actions: list[tuple[Any, ...]], mutations: list[tuple[int, int]]) -> None:
    history = linearizable_history(actions)
    events = list(history)
    for position, new_value in mutations:  # corrupt some read results
        reads = [i for i, e in enumerate(events) if e.type is OpType.OK and e.f == "read"]
        if reads:
            i = reads[position % len(reads)]
            e = events[i]
            events[i] = Op(process=e.process, type=e.type, f=e.f, value=new_value)
    mutated = History(events)
    ops = mutated.operations()
    if len(ops) > 7:
        return
    model = CasRegister(initial_value=0)
    expected = brute_force(ops, model) if any(o.known for o in ops) else "unknown"
    result = check(mutated, model)
    assert result.valid == expected
    if result.failing is not None:  # the minimal sub-history is illegal to the oracle too
        kept = [o for o in ops if o.id in set(result.failing.minimal)]
        assert kept and brute_force(kept, model) is False
    assert all(o.ret == math.inf or o.ret > o.call for o in ops)


APPEND_ACTION = st.tuples(st.integers(0, 2), st.sampled_from(["invoke", "complete"]),
                          st.sampled_from(["get", "get", "append", "put"]), st.sampled_from("ab"),
                          st.sampled_from(["ok", "ok", "ok", "info", "fail"]))


def appending_history(actions: list[tuple[Any, ...]], corrupt: list[tuple[int, int]]) -> History:
    """porcupine's kv on one key, each operation atomic inside its interval (so linearizable),
    then some gets' results corrupted: cut short by one character, or one character appended."""
    state = ""
    open_ops: dict[int, tuple[str, Any, str, Any]] = {}
    events: list[Op] = []
    crashed: set[int] = set()
    for p, what, f, value, outcome in actions:
        if p in crashed:
            continue
        if what == "invoke" and p not in open_ops:
            arg = None if f == "get" else value.upper() if f == "put" else value  # a put is no prefix
            events.append(Op(process=p, type=OpType.INVOKE, f=f, key="k", value=arg))
            if outcome != "fail":
                state = arg if f == "put" else state + value if f == "append" else state
            open_ops[p] = (f, arg, outcome, state if f == "get" else arg)
        elif what == "complete" and p in open_ops:
            f, arg, outcome, out = open_ops.pop(p)
            events.append(Op(process=p, type=OpType(outcome), f=f, key="k", value=out))
            if outcome == "info":
                crashed.add(p)
    gets = [i for i, e in enumerate(events) if e.type is OpType.OK and e.f == "get"]
    for position, how in corrupt:
        if gets:
            i = gets[position % len(gets)]
            e = events[i]
            events[i] = Op(process=e.process, type=e.type, f="get", key="k",
                           value=e.value[:-1] if how % 2 and e.value else (e.value or "") + "ab"[how // 2 % 2])
    return History(events)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(APPEND_ACTION, min_size=6, max_size=16), MUTATIONS)
# a put that returned before the get began must be placed before the get is given up
@example([(0, "invoke", "append", "a", "ok"), (0, "complete", "append", "a", "ok"), (1, "invoke", "put", "b", "ok"),
          (1, "complete", "put", "b", "ok"), (2, "invoke", "get", "a", "ok"), (2, "complete", "get", "a", "ok")], [])
# ... and one that overlaps it may come before it
@example([(0, "invoke", "append", "a", "ok"), (0, "complete", "append", "a", "ok"), (1, "invoke", "put", "b", "ok"),
          (2, "invoke", "get", "a", "ok"), (2, "complete", "get", "a", "ok"), (1, "complete", "put", "b", "ok")], [])
# a get that returned before a later append must not show it; one showing an append out of order
@example([(0, "invoke", "append", "a", "ok"), (0, "complete", "append", "a", "ok"), (1, "invoke", "append", "b", "ok"),
          (1, "complete", "append", "b", "ok"), (2, "invoke", "get", "a", "ok"), (2, "complete", "get", "a", "ok")],
         [(0, 1)])
def test_kv_append_search_agrees_with_brute_force(actions: list[tuple[Any, ...]],
                                                  corrupt: list[tuple[int, int]]) -> None:
    """The monotone cut (a get the string has grown past is dead unless a put may come first)
    and the read-only-first phase never change a kv-append verdict."""
    history = appending_history(actions, corrupt)
    ops = history.operations()
    if len(ops) > 7:
        return
    model = KvAppend()
    expected = brute_force(ops, model) if any(o.known for o in ops) else "unknown"
    result = check(history, model)
    assert result.valid == expected
    if result.failing is not None:
        kept = [o for o in ops if o.id in set(result.failing.minimal)]
        assert kept and brute_force(kept, model) is False
