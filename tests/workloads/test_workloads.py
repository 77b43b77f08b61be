"""Workload generators under simulate(): the op vocabulary, key rotation, unique adds, final reads."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from raftlab.workloads import WORKLOADS, UnknownWorkload, make

from raftlab import generator as gen
from raftlab.generator import NS, simulate
from raftlab.history import History, Op, OpType


def campaign(name: str, n: int, seed: int, complete: gen.Completer | None = None, **opts: object) -> list[Op]:
    w = make(name, **opts)
    return simulate(gen.phases(gen.on_clients(gen.limit(n, w.generator)),
                               gen.on_clients(gen.time_limit(30, w.final_generator))),
                    concurrency=5, seed=seed, complete=complete)


def test_registry_names_and_unknown_workload() -> None:
    assert set(WORKLOADS) == {"register", "set", "tree", "mixed", "lock", "watch", "ttl"}
    with pytest.raises(UnknownWorkload, match="known: register, set, tree, mixed, lock, watch, ttl"):
        make("bank")


def test_lease_workloads_speak_their_vocabulary(seed: int) -> None:
    locks = [o for o in campaign("lock", 50, seed) if o.type is OpType.INVOKE]
    assert {o.f for o in locks} == {"hold", "read-set"}
    assert len({o.value["elem"] for o in locks if o.f == "hold"}) == 50  # unique elements
    watch = {o.f for o in campaign("watch", 200, seed) if o.type is OpType.INVOKE}
    assert watch == {"wput", "watch"}
    w = make("ttl", ttl_ms=300, refreshes=2, bound=0.5)
    ops = simulate(gen.on_clients(gen.limit(40, w.generator)), concurrency=2, seed=seed)
    fs = [o.f for o in ops if o.type is OpType.INVOKE and o.process == 0]
    assert fs[:4] == ["ttl-create", "ttl-refresh", "ttl-refresh", "ttl-read"]
    with pytest.raises(ValueError, match="ttl_ms"):
        make("ttl", ttl_ms=1)


def test_mixed_gives_its_first_thread_temp_nodes_read_until_gone_on_the_healed_cluster(seed: int) -> None:
    def gone_at_third_final_read(op: Op, rng: object) -> tuple[OpType, Any, int]:
        if op.f == "ttl-read" and op.value.get("healed"):
            reads[0] += 1
            return OpType.OK, {"present": reads[0] < 3}, 1_000_000
        return OpType.OK, {"present": True} if op.f.startswith("ttl") else op.value, 1_000_000

    reads = [0]
    h = campaign("mixed", 12000, seed, keys=3, dirs=2, ttl_ms=300, refreshes=2, bound=0.5,
                 complete=gone_at_third_final_read)
    invokes = [o for o in h if o.type is OpType.INVOKE]
    ttl = [o for o in invokes if o.f.startswith("ttl")]
    assert ttl and {o.process % 5 for o in ttl} == {0}  # thread 0 owns temp nodes, nobody else does
    assert not any(o.f.startswith("ttl") for o in invokes if o.process % 5 != 0)
    final = [o for o in ttl if o.value.get("healed")]
    assert len(final) == 3 and {o.f for o in final} == {"ttl-read"}  # until gone, then no more
    main = [o.f for o in ttl if not o.value.get("healed")]
    assert main[:4] == ["ttl-create", "ttl-refresh", "ttl-refresh", "ttl-read"]
    assert main.count("ttl-create") >= 2 and main[16] == "ttl-create"  # 1 + 2 refreshes + 13 reads (TTL + 1 s)
    kv = make("mixed", ttl_workers=0)
    assert kv.checker.ttl is None
    with pytest.raises(ValueError, match="ttl_workers"):
        make("mixed", ttl_workers=-1)


def test_register_ops_follow_the_kv_vocabulary(seed: int) -> None:
    h = campaign("register", 600, seed, values=5)
    invokes = [o for o in h if o.type is OpType.INVOKE]
    assert Counter(o.f for o in invokes).keys() == {"read", "write", "cas"}
    for o in invokes:
        assert isinstance(o.key, str)
        if o.f == "write":
            assert o.value in range(5)
        if o.f == "cas":
            assert isinstance(o.value, list) and len(o.value) == 2 and all(v in range(5) for v in o.value)
    History(h)


def test_register_values_are_unique_per_key_and_cas_expects_recent_or_absent(seed: int) -> None:
    h = campaign("register", 900, seed)
    invokes = [o for o in h if o.type is OpType.INVOKE and o.f in ("write", "cas")]
    written: dict[str, list[int]] = {}
    absent_cas = recent_cas = 0
    for o in invokes:
        new = o.value if o.f == "write" else o.value[1]
        assert new not in written.get(o.key, []), o  # never the same value twice on one key
        if o.f == "cas":
            expected = o.value[0]
            assert expected is None or expected in written.get(o.key, []), o
            absent_cas += expected is None
            recent_cas += bool(written.get(o.key)) and expected == written[o.key][-1]
        written.setdefault(o.key, []).append(new)
    assert absent_cas > 0 and recent_cas > absent_cas


def test_register_keys_rotate_after_ops_per_key(seed: int) -> None:
    h = campaign("register", 900, seed, keys=3, ops_per_key=50)
    main = [o for o in h if o.type is OpType.INVOKE][:900]
    per_key = Counter(o.key for o in main)
    assert max(per_key.values()) <= 50
    assert len(per_key) >= 900 // 50  # fresh keys replaced the retired ones


def test_register_final_phase_reads_every_key_in_use_until_ok(seed: int) -> None:
    fails = {"left": 4}

    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        if op.f == "read" and op.time > 0 and fails["left"] > 0 and op.index > 200:
            fails["left"] -= 1
            return OpType.FAIL, None, NS // 1000
        return OpType.OK, op.value if op.f != "read" else 1, NS // 1000

    h = campaign("register", 100, seed, complete=complete, keys=3)
    final = [o for o in h if o.index >= 200]
    assert {o.key for o in final if o.type is OpType.OK} == {o.key for o in final}
    assert len({o.key for o in final}) == 3


def test_set_adds_are_unique_and_the_final_read_retries(seed: int) -> None:
    outcomes = iter([OpType.INFO, OpType.FAIL])

    def complete(op: Op, rng: random.Random) -> tuple[OpType, object, int]:
        if op.f == "read":
            return next(outcomes, OpType.OK), [0, 1], NS // 100
        return OpType.OK, op.value, NS // 1000

    h = campaign("set", 300, seed, complete=complete)
    adds = [o.value for o in h if o.f == "add" and o.type is OpType.INVOKE]
    assert len(adds) == 300 and len(set(adds)) == 300
    reads = [o for o in h if o.f == "read"]
    done = [o.type for o in reads if o.type is not OpType.INVOKE]
    # retried after info and fail; a retry already in flight when one succeeds may succeed too
    assert done[:2] == [OpType.INFO, OpType.FAIL] and set(done[2:]) == {OpType.OK}
    first_ok = next(i for i, o in enumerate(reads) if o.type is OpType.OK)
    assert all(o.type is not OpType.INVOKE for o in reads[first_ok:])  # no read starts after a success
    History(h)


def test_probe_ops_are_reads() -> None:
    assert make("register").probe["f"] == "read" and make("set").probe == {"f": "read"}


def test_tree_ops_cover_the_dtkv_vocabulary_inside_one_directory(seed: int) -> None:
    from raftlab.checker.tree import DtkvDirs

    h = campaign("tree", 1500, seed, dirs=3, ops_per_dir=60)
    invokes = [o for o in h if o.type is OpType.INVOKE]
    assert {o.f for o in invokes} == DtkvDirs.fs
    firsts: dict[str, str] = {}
    for o in invokes:
        assert isinstance(o.key, str) and o.key.startswith("t")
        firsts.setdefault(o.key, o.f)
        if o.f == "cas-key":
            assert len(o.value) == 3
    assert Counter(firsts.values())["mkdir"] > len(firsts) // 2  # a fresh directory is usually made first
    final = invokes[1500:]  # the final phase: a batch-get of every leaf per directory in use (retried until ok)
    assert {o.f for o in final} == {"batch-get"} and len({o.key for o in final}) == 3
    assert all(o.value == ["a", "b", "c", "d"] for o in final)
    History(h)


def test_mixed_sends_register_and_tree_ops_and_reads_both_at_the_end(seed: int) -> None:
    from raftlab.checker.tree import DtkvDirs

    h = campaign("mixed", 1200, seed, keys=3, dirs=2, ttl_workers=0)
    invokes = [o for o in h if o.type is OpType.INVOKE]
    during, final = invokes[:1200], invokes[1200:]
    fs = Counter(o.f for o in during)
    register, tree = sum(fs[f] for f in ("read", "write", "cas")), sum(fs[f] for f in DtkvDirs.fs)
    assert register + tree == 1200 and 450 < tree < 750  # about half each (tree_share=0.5)
    assert {o.key[0] for o in during if o.f in ("read", "write", "cas")} == {"r"}
    assert {o.key[0] for o in during if o.f in DtkvDirs.fs} == {"t"}
    assert {(o.f, o.key[0]) for o in final} == {("read", "r"), ("batch-get", "t")}
    assert len({o.key for o in final}) == 5  # every register key and every directory in use
    assert make("mixed").final_fs == {"read", "batch-get"}
    with pytest.raises(ValueError, match="tree_share"):
        make("mixed", tree_share=1.5)
