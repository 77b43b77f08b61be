"""The register workload: reads, writes and compare-and-sets on many keys, checked per key.

Ops (the contract with clients): ``read`` (key; ok value = the int read, or null if absent),
``write`` (key, value int), ``cas`` (key, value ``[expected, new]``; ``fail`` when the current
value is not ``expected``; ``expected`` null means "only if absent").

Values. By default (``values=0``) every write and cas writes a value unique to its key (a
counter), so a lost, resent or duplicated write can never pass for another write of the same
value, and a cas expects the value most recently written to that key by the generator (usually
current, so it succeeds often enough to matter), now and then null (a cas on an absent key,
which succeeds on a fresh key and must fail on a written one) or an older value. ``values=N``
draws every value from 0..N-1 instead, as Jepsen's small-domain registers do.

Keys rotate: ``keys`` keys are in use at a time and each is retired after ``ops_per_key`` ops and
replaced by a fresh one (Jepsen's independent keys). Linearizability checking is exponential in
the concurrency of one key's history, so short per-key histories keep the checker fast while the
whole run stays long. The ``kv`` model checks each key as its own cas-register.
The final phase reads every key still in use, each until a read succeeds.
"""

from __future__ import annotations

import random
from typing import Any

from raftlab.workloads import Workload

from raftlab import generator as gen
from raftlab.history import History

SMALL_VALUES = 5  # the small domain of the original register workload (values=5)


class KeySpace:
    """The keys in use; every choice comes from the rng it is given (the context's)."""

    def __init__(self, keys: int, ops_per_key: int, prefix: str = "r") -> None:
        if keys < 1:
            raise ValueError(f"keys must be at least 1, not {keys}")
        if ops_per_key < 1:
            raise ValueError(f"ops per key must be at least 1, not {ops_per_key}")
        self.prefix = prefix
        self.ops_per_key = ops_per_key
        self.active = list(range(keys))
        self.counts = [0] * keys
        self.next_id = keys
        self.written: dict[str, list[int]] = {}  # key -> values the generator wrote, oldest first

    def name(self, n: int) -> str:
        return f"{self.prefix}{n}"

    def pick(self, rng: random.Random) -> str:
        slot = rng.randrange(len(self.active))
        key = self.name(self.active[slot])
        self.counts[slot] += 1
        if self.counts[slot] >= self.ops_per_key:
            self.active[slot], self.counts[slot] = self.next_id, 0
            self.next_id += 1
        return key

    def in_use(self) -> list[str]:
        return [self.name(n) for n in self.active]


def next_op(space: KeySpace, ctx: gen.Context, values: int = 0) -> dict[str, Any]:
    rng = ctx.rng
    key = space.pick(rng)
    f = rng.choice(("read", "write", "cas"))
    if f == "read":
        return {"f": "read", "key": key}
    if values:
        if f == "write":
            return {"f": "write", "key": key, "value": rng.randrange(values)}
        return {"f": "cas", "key": key, "value": [rng.randrange(values), rng.randrange(values)]}
    written = space.written.setdefault(key, [])
    new = len(written) + 1  # unique per key: 1, 2, 3, ...
    expected: int | None = None
    if f == "cas":
        r = rng.random()
        if written and r < 0.7:
            expected = written[-1]
        elif written and r < 0.85:
            expected = rng.choice(written)
    written.append(new)
    if f == "write":
        return {"f": "write", "key": key, "value": new}
    return {"f": "cas", "key": key, "value": [expected, new]}


class KvChecker:
    """Linearizability of every key as a cas-register (``raftlab.checker``'s ``kv`` model)."""

    def __init__(self, time_limit: float | None = None) -> None:
        self.time_limit = time_limit

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker import check

        # workers=1: the runner is an asyncio program with helper threads, and forking a
        # threaded process can deadlock on a lock some thread held; campaign histories are small
        return check(history, "kv", time_limit=opts.get("time_limit", self.time_limit), workers=1)


def final_reads(space: KeySpace, retry: float) -> gen.Generator:
    """A read of each key in use at the end, retried every ~``retry`` s until one succeeds."""
    return gen.repeat(lambda: gen.seq(*(gen.until_ok(gen.stagger(retry, gen.repeat({"f": "read", "key": k})))
                                        for k in space.in_use())), 1)


def workload(*, keys: int = 10, ops_per_key: int = 120, values: int = 0, check_time_limit: float | None = 60.0,
             final_retry: float = 0.1, **_: Any) -> Workload:
    if values < 0:
        raise ValueError(f"values must be 0 (unique per write) or a domain size, not {values}")
    space = KeySpace(keys, ops_per_key)
    return Workload(name="register", generator=gen.lift(lambda ctx: next_op(space, ctx, values)),
                    final_generator=final_reads(space, final_retry), checker=KvChecker(check_time_limit),
                    final_fs=frozenset({"read"}), probe={"f": "read", "key": space.name(0)})
