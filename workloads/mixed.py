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

Besides, the first ``ttl_workers`` client threads (1 by default; 0: none) own temp nodes, as in
the ttl workload (workloads/leases.py): cycles of ``ttl-create``, ``refreshes`` refreshes every
TTL/3 and reads for TTL + 1 s (a premature expiry shows there), and in the final phase, on the
healed cluster, reads of each one's last temp node until it is gone (a missed expiry shows
there: under faults no expiry bound holds, a leader change re-arms the TTL). Why: temp nodes
expire on the leader's clock, a path no key or directory op reaches.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from raftlab.workloads import Workload, leases, register, tree

from raftlab import generator as gen
from raftlab.history import History


class MixedChecker:
    """Linearizability of every register key and every directory (``KvDirs``), and with temp nodes
    the ttl checker's verdict on those, merged into the one result (so the report still finds the
    linearizability counterexample where it looks for it)."""

    def __init__(self, time_limit: float | None = None, ttl: leases.TtlChecker | None = None) -> None:
        self.time_limit = time_limit
        self.ttl = ttl

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker import check, merge_valid
        from raftlab.checker.leases import TTL_FS
        from raftlab.checker.tree import KvDirs

        kv = check(history, KvDirs(), time_limit=opts.get("time_limit", self.time_limit), workers=1,
                   keep=lambda op: op.f not in TTL_FS)
        if self.ttl is None:
            return kv
        ttl = self.ttl.check(history, opts)
        lines = [x for x in (kv.explanation, f"temp nodes: {ttl.explanation}") if x]
        return replace(kv, valid=merge_valid([kv.valid, ttl.valid]), explanation="\n".join(lines),
                       details={**kv.details, "ttl": ttl.to_dict()})


def workload(*, keys: int = 10, ops_per_key: int = 120, dirs: int = 6, ops_per_dir: int = 80, tree_share: float = 0.5,
             ttl_workers: int = 1, ttl_ms: int = 800, refreshes: int = 4, bound: float = 3.0,
             check_time_limit: float | None = 60.0, final_retry: float = 0.1, **_: Any) -> Workload:
    if not 0.0 <= tree_share <= 1.0:
        raise ValueError(f"tree_share must be between 0 and 1, not {tree_share}")
    n_ttl = int(ttl_workers)
    if n_ttl < 0:
        raise ValueError(f"ttl_workers must be 0 or more, not {ttl_workers}")
    leases.check_ttl_opts(ttl_ms, refreshes, bound)
    keyspace = register.KeySpace(keys, ops_per_key)
    dirspace = tree.TreeSpace(dirs, ops_per_dir)

    def next_op(ctx: gen.Context) -> dict[str, Any]:
        rng: random.Random = ctx.rng
        return dirspace.next_op(rng) if rng.random() < tree_share else register.next_op(keyspace, ctx)

    def owns_temp_nodes(thread: gen.Thread) -> bool:
        return isinstance(thread, int) and thread < n_ttl

    def keys_only(thread: gen.Thread) -> bool:
        return not owns_temp_nodes(thread)

    kv = gen.lift(next_op)
    final: gen.Generator = gen.seq(register.final_reads(keyspace, final_retry), tree.final_reads(dirspace, final_retry))
    ttl_checker = leases.TtlChecker(int(ttl_ms), float(bound), missed_when_healed=True) if n_ttl else None
    if n_ttl:
        temp = gen.each_process(lambda: gen.repeat(lambda: leases.ttl_cycle(ttl_ms, refreshes, ttl_ms / 1000 + 1)))
        kv = gen.any_of(gen.on_threads(owns_temp_nodes, temp), gen.on_threads(keys_only, kv))
        final = gen.any_of(gen.on_threads(owns_temp_nodes, leases.ttl_final_reads(ttl_ms, bound)),
                           gen.on_threads(keys_only, final))
    return Workload(name="mixed", generator=kv, final_generator=final,
                    checker=MixedChecker(check_time_limit, ttl_checker), final_fs=frozenset({"read", "batch-get"}),
                    probe={"f": "read", "key": keyspace.name(0)})
