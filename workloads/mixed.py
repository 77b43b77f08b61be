"""The mixed workload: the register's keys and the tree's directories in one run (the default campaign's).

Each op is a register op (``read``/``write``/``cas`` on keys ``r<n>``, workloads/register.py)
or, with probability ``tree`` (0.5 by default), a tree op (``mkdir``, ``put``, ``cas-key`` on
absent leaves, ``remove``, batches, ``list`` in directories ``t<n>``, workloads/tree.py), drawn
from the context's rng. Why both in one run: a 60 s campaign with only registers never sends a
remove, a batch or a directory op, so a state machine that acknowledges a remove and keeps the
value passes; a run with only the tree spends nothing on plain keys. Sharing the run gives each
half the same faults and the same windows.

The halves keep their own key spaces, value counters and final reads (every register key in
use, then one ``batch-get`` per directory in use, each retried until ok); the checker is one
linearizability check with the ``KvDirs`` model (checker/tree.py): a cas-register per key and a
directory model per directory, so a counterexample names its partition and ops as either
workload's would.
"""

from __future__ import annotations

import random
from typing import Any

from raftlab.workloads import Workload, register, tree

from raftlab import generator as gen
from raftlab.history import History


class MixedChecker:
    """Linearizability of every register key and every directory (``KvDirs``)."""

    def __init__(self, time_limit: float | None = None) -> None:
        self.time_limit = time_limit

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker import check
        from raftlab.checker.tree import KvDirs

        return check(history, KvDirs(), time_limit=opts.get("time_limit", self.time_limit), workers=1)


def workload(*, keys: int = 10, ops_per_key: int = 120, dirs: int = 6, ops_per_dir: int = 80, tree_share: float = 0.5,
             check_time_limit: float | None = 60.0, final_retry: float = 0.1, **_: Any) -> Workload:
    if not 0.0 <= tree_share <= 1.0:
        raise ValueError(f"tree_share must be between 0 and 1, not {tree_share}")
    keyspace = register.KeySpace(keys, ops_per_key)
    dirspace = tree.TreeSpace(dirs, ops_per_dir)

    def next_op(ctx: gen.Context) -> dict[str, Any]:
        rng: random.Random = ctx.rng
        return dirspace.next_op(rng) if rng.random() < tree_share else register.next_op(keyspace, ctx)

    final = gen.seq(register.final_reads(keyspace, final_retry), tree.final_reads(dirspace, final_retry))
    return Workload(name="mixed", generator=gen.lift(next_op), final_generator=final,
                    checker=MixedChecker(check_time_limit), final_fs=frozenset({"read", "batch-get"}),
                    probe={"f": "read", "key": keyspace.name(0)})
