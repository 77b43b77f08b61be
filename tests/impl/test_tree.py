"""DtKV tree semantics: the replicated state machine answers like a filesystem of values.

Checks each operation's contract and typed errors, the atomicity of batches (a failing batch
changes nothing), that every result carries its Raft index, and (property) that replaying the
same commands into a fresh tree, or through snapshot/restore, gives the same state.
"""

from __future__ import annotations

import random

import pytest
from raftlab.impl.dtkv.commands import (
    BatchGet,
    BatchPut,
    BatchRemove,
    Cas,
    Command,
    ErrorKind,
    Get,
    List,
    Mkdir,
    Put,
    Remove,
)
from raftlab.impl.dtkv.tree import Tree


def applied(commands: list[Command]) -> Tree:
    tree = Tree()
    for i, cmd in enumerate(commands, start=1):
        tree.apply(i, cmd)
    return tree


def test_put_needs_an_existing_parent_directory() -> None:
    tree = Tree()
    r = tree.apply(1, Put(key="a.b", value=b"1"))
    assert r.error is ErrorKind.KEY_NOT_FOUND and "'a'" in r.message and r.index == 1
    assert tree.apply(2, Mkdir(key="a")).error is None
    assert tree.apply(3, Put(key="a.b", value=b"1")) .error is None
    r = tree.apply(4, Put(key="a.b.c", value=b"x"))
    assert r.error is ErrorKind.NOT_A_DIR and "'a.b'" in r.message
    assert tree.apply(5, Put(key="a", value=b"x")).error is ErrorKind.IS_A_DIR
    assert tree.read(Get(key="a.b")).value == b"1"
    assert tree.read(Get(key="a.b")).index == 5
    assert tree.read(Get(key="nope")).value is None


def test_list_remove_and_directories() -> None:
    tree = applied([Mkdir(key="d"), Put(key="d.y", value=b"1"), Put(key="d.x", value=b"2"), Put(key="top", value=b"")])
    assert tree.read(List(key="d")).children == ("x", "y")
    assert tree.read(List()).children == ("d", "top")
    assert tree.read(List(key="top")).error is ErrorKind.NOT_A_DIR
    assert tree.read(List(key="zz")).error is ErrorKind.KEY_NOT_FOUND
    assert tree.apply(5, Remove(key="d")).error is ErrorKind.DIR_NOT_EMPTY
    assert tree.apply(6, Remove(key="zz")).error is ErrorKind.KEY_NOT_FOUND
    assert tree.apply(7, Mkdir(key="top")).error is ErrorKind.NOT_A_DIR
    assert tree.apply(8, Mkdir(key="d")).error is None  # idempotent
    for i, key in enumerate(["d.x", "d.y", "d"], start=9):
        assert tree.apply(i, Remove(key=key)).error is None
    assert tree.read(List()).children == ("top",)


def test_cas_semantics() -> None:
    tree = Tree()
    assert tree.apply(1, Cas(key="k", expected=None, new=b"1")).error is None
    r = tree.apply(2, Cas(key="k", expected=None, new=b"2"))
    assert r.error is ErrorKind.CAS_MISMATCH and r.value == b"1"
    assert tree.apply(3, Cas(key="k", expected=b"1", new=b"3")).error is None
    assert tree.read(Get(key="k")).value == b"3"
    tree.apply(4, Mkdir(key="dir"))
    assert tree.apply(5, Cas(key="dir", expected=None, new=b"x")).error is ErrorKind.IS_A_DIR


def test_batches_are_all_or_nothing() -> None:
    tree = applied([Mkdir(key="a"), Put(key="a.x", value=b"0")])
    r = tree.apply(3, BatchPut(items=(("a.y", b"1"), ("b.z", b"2"))))
    assert r.error is ErrorKind.KEY_NOT_FOUND
    assert tree.read(BatchGet(keys=("a.x", "a.y"))).values == (b"0", None)
    assert tree.apply(4, BatchPut(items=(("a.y", b"1"), ("a.x", b"9")))).error is None
    assert tree.read(BatchGet(keys=("a.x", "a.y"))).values == (b"9", b"1")
    tree.apply(5, Mkdir(key="full"))
    tree.apply(6, Put(key="full.f", value=b""))
    r = tree.apply(7, BatchRemove(keys=("a.x", "full")))
    assert r.error is ErrorKind.DIR_NOT_EMPTY and tree.read(Get(key="a.x")).value == b"9"
    r = tree.apply(8, BatchRemove(keys=("a.x", "a.y", "a", "full.f", "absent")))
    assert r.error is None and r.count == 4
    assert tree.read(List()).children == ("full",)


def test_apply_refuses_to_go_backwards() -> None:
    tree = applied([Mkdir(key="a")])
    with pytest.raises(ValueError, match="already applied"):
        tree.apply(1, Mkdir(key="b"))
    tree.skip(5)
    assert tree.apply(6, Put(key="b", value=b"")).index == 6


def random_commands(rng: random.Random, n: int) -> list[Command]:
    keys = ["a", "b", "a.x", "a.y", "b.z", "c"]
    out: list[Command] = []
    for _ in range(n):
        key = rng.choice(keys)
        value = bytes([rng.randrange(3)])
        out.append(rng.choice([
            Put(key=key, value=value), Mkdir(key=key), Remove(key=key),
            Cas(key=key, expected=rng.choice([None, value]), new=value),
            BatchPut(items=((key, value), (rng.choice(keys), value))),
            BatchRemove(keys=(key, rng.choice(keys))),
        ]))
    return out


def test_replay_and_snapshot_reproduce_the_state(seed: int) -> None:
    rng = random.Random(seed)
    commands = random_commands(rng, 400)
    one, two = applied(commands), applied(commands)
    assert one.image() == two.image()
    restored = Tree()
    restored.restore_image(one.applied, *one.image())
    assert restored.digest() == one.digest()
    assert restored.dirs == one.dirs and restored.values == one.values and restored.applied == 400
    for d, children in one.dirs.items():  # invariant: dirs[d] is exactly d's children
        assert children == {k.rpartition(".")[2] for k in [*one.dirs, *one.values]
                            if k and k.rpartition(".")[0] == d}


def test_digest_is_equal_for_equal_states_and_differs_for_any_change() -> None:
    """Tree.digest is what the harness compares across replicas at the end of a campaign."""
    a = applied([Mkdir(key="d"), Put(key="d.x", value=b"1"), Put(key="y", value=b"2")])
    b = applied([Put(key="y", value=b"2"), Mkdir(key="d"), Put(key="d.x", value=b"1")])
    assert a.digest() == b.digest()
    for change in (Put(key="y", value=b"3"), Remove(key="d.x"), Mkdir(key="e"), Put(key="d.z", value=b"")):
        c = applied([Mkdir(key="d"), Put(key="d.x", value=b"1"), Put(key="y", value=b"2"), change])
        assert c.digest() != a.digest(), change
    # a value that looks like a directory name does not collide with the directory
    assert applied([Put(key="k", value=b"")]).digest() != applied([Mkdir(key="k")]).digest()
