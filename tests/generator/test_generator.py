"""Generators run under simulate(): deterministic histories from a seed, no I/O, no real clock."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from raftlab import generator as gen
from raftlab.generator import NS, PENDING, Pending, context, ops_of, simulate
from raftlab.history import NEMESIS, History, Op, OpType


def invokes(history: list[Op]) -> list[Op]:
    return ops_of(history, kind=OpType.INVOKE)


def test_a_dict_is_one_invoke_and_a_list_is_a_sequence() -> None:
    h = simulate([{"f": "write", "value": 1}, {"f": "read"}], concurrency=1, nemesis=False)
    assert [(o.type.value, o.f, o.value) for o in h] == [
        ("invoke", "write", 1), ("ok", "write", 1), ("invoke", "read", None), ("ok", "read", None)]
    History(h)  # pairs and validates


def test_same_seed_same_history_other_seed_other_choices(seed: int) -> None:
    def run(s: int) -> list[tuple[object, str, object]]:
        g = gen.limit(200, gen.mix(gen.repeat({"f": "read"}), gen.repeat({"f": "write", "value": 1})))
        return [(o.process, o.f, o.time) for o in simulate(g, concurrency=5, seed=s)]

    assert run(seed) == run(seed)
    assert run(seed) != run(seed + 1)


def test_mix_uses_every_child_roughly_evenly(seed: int) -> None:
    g = gen.limit(3000, gen.mix(gen.repeat({"f": "a"}), gen.repeat({"f": "b"}), gen.repeat({"f": "c"})))
    counts = Counter(o.f for o in invokes(simulate(g, concurrency=3, seed=seed)))
    assert sum(counts.values()) == 3000
    assert all(800 < counts[f] < 1200 for f in "abc"), counts


def test_limit_counts_ops_not_asks() -> None:
    h = simulate(gen.limit(7, gen.repeat({"f": "read"})), concurrency=3, nemesis=False)
    assert len(invokes(h)) == 7
    assert len(h) == 14


def test_time_limit_stops_invoking_after_the_deadline() -> None:
    g = gen.time_limit(2.0, gen.stagger(0.1, gen.repeat({"f": "read"})))
    h = simulate(g, concurrency=2, seed=3)
    times = [o.time for o in invokes(h)]
    assert times and max(times) < 2 * NS
    assert len(times) > 10  # ~20 expected at 0.1 s on average


def test_stagger_spaces_ops_by_about_the_interval_on_average(seed: int) -> None:
    h = simulate(gen.limit(400, gen.stagger(0.05, gen.repeat({"f": "read"}))), concurrency=10, seed=seed)
    times = [o.time for o in invokes(h)]
    mean_gap = (times[-1] - times[0]) / (len(times) - 1)
    assert 0.04 * NS < mean_gap < 0.06 * NS


def test_rate_never_exceeds_its_limit_even_with_idle_workers() -> None:
    h = simulate(gen.time_limit(5, gen.rate(20, gen.repeat({"f": "read"}))), concurrency=10)
    times = [o.time for o in invokes(h)]
    assert 95 <= len(times) <= 101
    assert all(b - a >= NS // 20 for a, b in itertools.pairwise(times))


def test_phases_wait_for_every_outstanding_op() -> None:
    slow = gen.limit(3, gen.repeat({"f": "slow"}))

    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return OpType.OK, None, (5 * NS if op.f == "slow" else NS // 1000)

    h = simulate(gen.phases(slow, {"f": "after"}), concurrency=3, complete=complete, nemesis=False)
    after = next(o for o in h if o.f == "after" and o.type is OpType.INVOKE)
    last_slow_done = max(o.time for o in h if o.f == "slow" and o.type is OpType.OK)
    assert after.time >= last_slow_done
    assert after.index > max(o.index for o in h if o.f == "slow")


def test_on_nemesis_and_on_clients_pick_their_own_threads() -> None:
    g = gen.any_of(gen.on_clients(gen.limit(20, gen.repeat({"f": "read"}))),
                   gen.on_nemesis(gen.limit(3, gen.repeat({"f": "kill"}))))
    h = simulate(g, concurrency=4)
    assert {o.process for o in h if o.f == "kill"} == {NEMESIS}
    assert all(isinstance(o.process, int) for o in h if o.f == "read")
    assert len(invokes(h)) == 23


def test_info_moves_the_thread_to_a_new_process() -> None:
    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return (OpType.INFO if op.process in (0, 1) else OpType.OK), None, 1000

    h = simulate(gen.limit(6, gen.repeat({"f": "write", "value": 1})), concurrency=2, complete=complete, nemesis=False)
    processes = [o.process for o in invokes(h)]
    # processes 0 and 1 crash; their threads continue as 2 and 3, which succeed and keep going
    assert set(processes) == {0, 1, 2, 3}
    assert processes.count(0) == 1 and processes.count(1) == 1
    History(h)  # no process invokes after its info


def test_each_process_gives_every_process_its_own_copy() -> None:
    h = simulate(gen.each_process(lambda: [{"f": "read"}, {"f": "read"}]), concurrency=4, nemesis=False)
    assert Counter(o.process for o in invokes(h)) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_each_process_with_until_ok_replaces_a_crashed_reader() -> None:
    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return (OpType.INFO if op.process == 0 else OpType.OK), None, 1000

    def final() -> gen.Generator:
        return gen.on_clients(gen.each_process(lambda: gen.until_ok(gen.repeat({"f": "read"}))))

    h = simulate(final(), concurrency=2)
    assert Counter(o.process for o in invokes(h)) == {0: 1, 1: 1}
    h = simulate(final(), concurrency=2, complete=complete)
    assert Counter(o.process for o in invokes(h)) == {0: 1, 1: 1, 2: 1}


def test_until_ok_retries_until_an_ok_then_stops() -> None:
    outcomes = iter([OpType.FAIL, OpType.INFO, OpType.FAIL, OpType.OK, OpType.OK])

    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return next(outcomes), None, 1000

    h = simulate(gen.until_ok(gen.repeat({"f": "read"})), concurrency=1, complete=complete, nemesis=False)
    assert [o.type for o in h if o.type is not OpType.INVOKE] == [OpType.FAIL, OpType.INFO, OpType.FAIL, OpType.OK]


def test_sleep_delays_the_next_generator_in_a_seq() -> None:
    h = simulate(gen.seq({"f": "a"}, gen.sleep(3), {"f": "b"}), concurrency=1, nemesis=False)
    a, b = (o for o in invokes(h))
    assert b.time - a.time >= 3 * NS


def test_repeat_times_and_factories() -> None:
    assert len(invokes(simulate(gen.repeat({"f": "x"}, 4), concurrency=2, nemesis=False))) == 4
    made = []

    def make() -> list[dict[str, str]]:
        made.append(1)
        return [{"f": "a"}, {"f": "b"}]

    h = simulate(gen.repeat(make, 3), concurrency=1, nemesis=False)
    assert [o.f for o in invokes(h)] == ["a", "b"] * 3 and len(made) == 3


def test_a_function_is_called_for_each_op_until_it_returns_none() -> None:
    values = iter(range(5))
    h = simulate(lambda ctx: {"f": "write", "value": v} if (v := next(values, None)) is not None else None,
                 concurrency=2, nemesis=False)
    assert sorted(o.value for o in invokes(h)) == [0, 1, 2, 3, 4]


def test_ops_only_go_to_free_processes_and_pinned_ones_wait() -> None:
    ctx = context(concurrency=2, rng=random.Random(0))
    busy = gen.Context(time=0, rng=ctx.rng, concurrency=2, workers=ctx.workers, free_threads=frozenset({1}))
    assert gen.once({"f": "read", "process": 0}).op(busy) is PENDING
    op = gen.once({"f": "read"}).op(busy.restrict(lambda t: isinstance(t, int)))
    assert isinstance(op, Op) and op.process == 1
    nothing_free = busy.restrict(lambda t: t == 0)
    assert gen.once({"f": "read"}).op(nothing_free) is PENDING


def test_pending_carries_the_earliest_wake_up() -> None:
    g = gen.any_of(gen.sleep(5), gen.sleep(2))
    ctx = context(concurrency=1, rng=random.Random(0))
    result = g.op(ctx)
    assert isinstance(result, Pending) and result.until == 2 * NS


def test_the_nemesis_package_schedule_runs_under_simulate(seed: int) -> None:
    from raftlab.nemesis import package

    pkg = package("kill,partition", db=None, rng=random.Random(seed), interval=1.0)

    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return OpType.INFO if op.process == NEMESIS else OpType.OK, None, NS // 100

    g = gen.phases(gen.time_limit(10, gen.any_of(gen.on_clients(gen.stagger(0.01, gen.repeat({"f": "read"}))),
                                                 gen.on_nemesis(pkg.generator))),
                   gen.on_nemesis(pkg.healer()))
    h = simulate(g, concurrency=3, complete=complete, seed=seed)
    faults = [o.f for o in invokes(h) if o.process == NEMESIS]
    assert len(faults) >= 6
    assert faults[-1] in ("start", "stop-partition")
    History(h)


def test_bad_arguments_are_rejected() -> None:
    for bad in (lambda: gen.limit(-1, {}), lambda: gen.rate(0, {}), lambda: gen.stagger(-1, {}),
                lambda: gen.time_limit(-1, {}), lambda: gen.sleep(-1), lambda: gen.lift(3)):
        with pytest.raises((ValueError, TypeError)):
            bad()
    with pytest.raises(ValueError, match="'f'"):
        gen.once({"value": 1}).op(context(concurrency=1, rng=random.Random(0)))
