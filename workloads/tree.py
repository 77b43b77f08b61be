"""The tree workload: the full DtKV vocabulary on rotating directories, checked per directory.

Where the register workload sees one value per key, this one exercises what makes DtKV a tree:
``mkdir``/``rmdir`` of a directory, ``put``/``get``/``cas-key``/``remove`` of its leaves (cas on
absent leaves included), atomic ``batch-put``/``batch-get``/``batch-remove`` of several leaves,
and ``list`` of its children. Every op stays inside one top-level directory (the op's ``key``,
``t<n>``), so the ``dtkv-dir`` model (checker/tree.py) checks each directory on its own.

Directories rotate like the register's keys: ``dirs`` are in use at a time, each retired after
``ops_per_dir`` ops. A fresh directory is usually created first (a put before its mkdir must
fail). Values are unique per directory (a counter), so a lost, duplicated or resurrected value is
never mistaken for another write; a cas expects the leaf's last written value (60%), absence
(25%) or an older value. The final phase reads every leaf of every directory in use with one
``batch-get`` each, retried until ok.

Ops (the contract with clients; names are leaf names, values ints):
``mkdir``, ``rmdir``, ``list`` -> [names]; ``put`` [name, v]; ``get`` [name] -> v or null;
``cas-key`` [name, expected or null, new]; ``remove`` [name]; ``batch-put`` [[name, v], ...];
``batch-get`` [names] -> [v or null, ...]; ``batch-remove`` [names].
"""

from __future__ import annotations

import random
from typing import Any

from raftlab.workloads import Workload
from raftlab.workloads.register import KeySpace

from raftlab import generator as gen
from raftlab.history import History

NAMES = ("a", "b", "c", "d")
WEIGHTS = {"mkdir": 6, "rmdir": 3, "put": 14, "get": 12, "cas-key": 12, "remove": 8, "batch-put": 10,
           "batch-get": 12, "batch-remove": 5, "list": 12}


class TreeSpace:
    """Directories in use and what the generator wrote to each (choices from the context's rng)."""

    def __init__(self, dirs: int, ops_per_dir: int) -> None:
        self.keys = KeySpace(dirs, ops_per_dir, prefix="t")
        self.written: dict[str, dict[str, list[int]]] = {}
        self.counters: dict[str, int] = {}

    def value(self, d: str) -> int:
        self.counters[d] = self.counters.get(d, 0) + 1
        return self.counters[d]

    def next_op(self, rng: random.Random) -> dict[str, Any]:
        d = self.keys.pick(rng)
        fresh = d not in self.written
        leaves = self.written.setdefault(d, {})
        f = "mkdir" if fresh and rng.random() < 0.7 else rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
        name = rng.choice(NAMES)
        if f in ("mkdir", "rmdir", "list"):
            return {"f": f, "key": d}
        if f == "put":
            v = self.value(d)
            leaves.setdefault(name, []).append(v)
            return {"f": f, "key": d, "value": [name, v]}
        if f in ("get", "remove"):
            return {"f": f, "key": d, "value": [name]}
        if f == "cas-key":
            history = leaves.get(name, [])
            r = rng.random()
            expected = (history[-1] if history and r < 0.6 else None if r < 0.85 or not history
                        else rng.choice(history))
            v = self.value(d)
            leaves.setdefault(name, []).append(v)
            return {"f": f, "key": d, "value": [name, expected, v]}
        some = sorted(rng.sample(NAMES, rng.randint(2, len(NAMES))))
        if f == "batch-put":
            items = [[n, self.value(d)] for n in some]
            for n, v in items:
                leaves.setdefault(n, []).append(v)
            return {"f": f, "key": d, "value": items}
        return {"f": f, "key": d, "value": some}  # batch-get, batch-remove

    def in_use(self) -> list[str]:
        return self.keys.in_use()


class TreeChecker:
    """Linearizability of every directory with the ``dtkv-dir`` model."""

    def __init__(self, time_limit: float | None = None) -> None:
        self.time_limit = time_limit

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker import check
        from raftlab.checker.tree import DtkvDirs

        return check(history, DtkvDirs(), time_limit=opts.get("time_limit", self.time_limit), workers=1)


def final_reads(space: TreeSpace, retry: float) -> gen.Generator:
    """One batch-get of every leaf name of each directory in use, each retried until ok."""
    return gen.repeat(lambda: gen.seq(*(
        gen.until_ok(gen.stagger(retry, gen.repeat({"f": "batch-get", "key": d, "value": list(NAMES)})))
        for d in space.in_use())), 1)


def workload(*, dirs: int = 6, ops_per_dir: int = 80, check_time_limit: float | None = 60.0,
             final_retry: float = 0.1, **_: Any) -> Workload:
    space = TreeSpace(dirs, ops_per_dir)
    return Workload(name="tree", generator=gen.lift(lambda ctx: space.next_op(ctx.rng)),
                    final_generator=final_reads(space, final_retry), checker=TreeChecker(check_time_limit),
                    final_fs=frozenset({"batch-get"}), probe={"f": "get", "key": "t0", "value": ["a"]})
