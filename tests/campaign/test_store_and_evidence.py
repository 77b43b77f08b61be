"""The run directory layout, the campaign round trip, and the checks that stop an empty run passing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from raftlab.checker import merge_valid as merge

from raftlab import evidence, store
from raftlab.history import NEMESIS, History, Op, OpType
from raftlab.rng import RunRandom, parse_seed
from raftlab.runner import Campaign, CampaignError


def test_new_run_writes_the_campaign_first_and_latest_follows(tmp_path: Path) -> None:
    a = store.new_run(tmp_path, "register", {"seed": 1}, now=0)
    b = store.new_run(tmp_path, "register", {"seed": 2}, now=0)
    assert a.path != b.path and b.path.name.endswith("-1")  # same second, never reused
    assert json.loads(a.campaign.read_text()) == {"seed": 1}
    store.set_latest(tmp_path, a)
    store.set_latest(tmp_path, b)
    latest = tmp_path / "latest"
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest))
    assert store.open_run(latest).read_campaign() == {"seed": 2}


def test_open_run_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="not a directory"):
        store.open_run(tmp_path / "missing")
    with pytest.raises(store.StoreError, match=r"no campaign\.json"):
        store.open_run(tmp_path)
    (tmp_path / "campaign.json").write_text("{oops")
    with pytest.raises(store.StoreError, match="not valid JSON"):
        store.open_run(tmp_path).read_campaign()
    with pytest.raises(store.StoreError, match="cannot name a directory"):
        store.new_run(tmp_path, "../x", {})


def test_campaign_round_trips_and_rejects_bad_options() -> None:
    c = Campaign(seed=7, nemesis=("kill", "partition"), node_args=("--unsafe-local-reads",), workload_opts={"keys": 2})
    assert Campaign.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(CampaignError, match="unknown options bogus"):
        Campaign.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(CampaignError, match="time-limit must be positive"):
        Campaign(seed=1, time_limit=0)
    with pytest.raises(CampaignError, match="no seed"):
        Campaign.from_dict({"workload": "set"})


def test_seed_streams_are_independent_and_reproducible() -> None:
    a, b = RunRandom(5), RunRandom(5)
    assert a.stream("nemesis").random() == b.stream("nemesis").random()
    assert RunRandom(5).stream("workload").random() != RunRandom(5).stream("nemesis").random()
    assert parse_seed("0x10") == 16
    with pytest.raises(ValueError, match="non-negative"):
        parse_seed("-3")


def test_merge_priorities() -> None:
    assert merge([True, True]) is True
    assert merge([True, "unknown"]) == "unknown"
    assert merge(["unknown", False, True]) is False


def ev(process: object, type_: str, f: str, value: object = None, error: str | None = None, t: int = 0) -> Op:
    return Op(type=OpType(type_), process=process, f=f, value=value, error=error, time=t)  # type: ignore[arg-type]


def healthy_tail(final_ok: bool = True) -> list[Op]:
    tail = [ev(NEMESIS, "invoke", "wait-healthy"),
            ev(NEMESIS, "info", "wait-healthy", {"healthy": True, "seconds": 1.5, "timeout": 30}),
            ev(9, "invoke", "read")]
    tail.append(ev(9, "ok" if final_ok else "fail", "read", 1))
    return tail


def test_stats_unknown_when_too_few_ops_succeed() -> None:
    events = []
    for p in range(5):
        events += [ev(p, "invoke", "write", 1), ev(p, "fail", "write", 1)]
    events += [ev(5, "invoke", "read"), ev(5, "ok", "read", 1)]
    valid, why, data = evidence.stats(History(events + healthy_tail()), min_ok=3)
    assert valid == "unknown" and "only 1 operations succeeded" in why
    assert data["by_f"]["write"] == {"ok": 0, "fail": 5, "info": 0}
    valid, why, _ = evidence.stats(History(events + healthy_tail()), min_ok=1)
    assert valid == "unknown" and "no write ever succeeded" in why


def test_faults_unknown_when_none_took_effect_and_counted_per_fault() -> None:
    perf = [{"name": "kill", "start": ["kill"], "stop": ["start"]},
            {"name": "partition", "start": ["start-partition"], "stop": ["stop-partition"]}]
    failed = [ev(NEMESIS, "invoke", "kill", "one"), ev(NEMESIS, "info", "kill", {"applied": False}, "n2: not running")]
    valid, why, _ = evidence.faults(History(failed), perf)
    assert valid == "unknown" and "n2: not running" in why
    valid, why, _ = evidence.faults(History([]), perf)
    assert valid == "unknown" and "none was injected" in why
    worked = [*failed, ev(NEMESIS, "invoke", "start-partition", "halves"), ev(NEMESIS, "info", "start-partition", {"grudge": {}})]
    valid, _, data = evidence.faults(History(worked), perf)
    assert valid is True and data["by_fault"]["partition"]["took_effect"] == 1
    assert data["never_took_effect"] == ["kill"]
    assert evidence.faults(History([]), [])[0] is True  # no faults asked for


def test_faults_with_a_shared_start_f_are_counted_for_the_fault_the_schedule_chose() -> None:
    """partition/partition-leader, kill/kill-leader and pause/pause-leader share their start f: each
    start the schedule emits is counted for the fault it drew, so neither is reported as idle."""
    import random

    from raftlab.nemesis import package

    from raftlab import generator as gen

    names = ["partition", "partition-leader", "kill", "kill-leader", "pause", "pause-leader"]
    pkg = package(names, db=None, rng=random.Random(7), interval=1.0)

    def complete(o: Op, rng: random.Random) -> tuple[OpType, object, int]:
        return OpType.INFO, {"hosts": ["n1"]}, 10**7

    events = [o for o in gen.simulate(gen.on_nemesis(gen.limit(4 * len(names), pkg.generator)), concurrency=1,
                                      complete=complete)]
    drawn = [o.extra["fault"] for o in events if o.type is OpType.INVOKE and o.f in {"kill", "pause", "start-partition"}]
    history = History.parse(json.dumps(e.to_dict()) for e in events)  # the field survives the JSON form
    valid, _, data = evidence.faults(history, pkg.perf)
    assert valid is True and "never_took_effect" not in data
    for name in names:
        assert data["by_fault"][name]["took_effect"] == drawn.count(name) == 2  # the bag draws each twice


def test_final_and_recovery() -> None:
    assert evidence.final(History(healthy_tail()), frozenset({"read"}))[0] is True
    valid, why, _ = evidence.final(History(healthy_tail(final_ok=False)), frozenset({"read"}))
    assert valid == "unknown" and "no final read succeeded" in why
    assert evidence.final(History([]), frozenset({"read"}))[0] == "unknown"
    assert evidence.recovery(History(healthy_tail()))[0] is True
    sick = [ev(NEMESIS, "invoke", "wait-healthy"),
            ev(NEMESIS, "info", "wait-healthy", {"healthy": False, "timeout": 30, "last_problem": "no leader"},
               "no leader")]
    valid, why, _ = evidence.recovery(History(sick))
    assert valid is False and "did not recover within 30 s" in why
