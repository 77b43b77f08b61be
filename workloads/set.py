"""The set workload: unique adds during the faults, then a read of the whole set after healing.

Ops (the contract with clients): ``add`` (value: an int never added before in this run) and
``read`` (ok value: the sorted list of every element present). Every acknowledged add must be
in the final read (else it is *lost*); nothing that was never added may appear (*unexpected*);
an add that ended ``info`` may or may not be there (*recovered* when it is). The set checker of
``raftlab.checker`` decides this from the history.

Without a successful final read nothing is proven: the final phase retries the read until it
succeeds (the runner bounds it in time), and the runner reports ``unknown`` if none succeeded.
"""

from __future__ import annotations

import itertools
from typing import Any

from raftlab.workloads import Workload

from raftlab import generator as gen
from raftlab.history import History


class SetChecker:
    """Lost, unexpected and recovered elements (``raftlab.checker``'s set checker)."""

    def check(self, history: History, opts: dict[str, Any]) -> Any:
        from raftlab.checker import check_set

        return check_set(history)


def workload(*, final_retry: float = 0.1, **_: Any) -> Workload:
    counter = itertools.count()
    adds = gen.lift(lambda ctx: {"f": "add", "value": next(counter)})
    final = gen.until_ok(gen.stagger(final_retry, gen.repeat({"f": "read"})))
    return Workload(name="set", generator=adds, final_generator=final, checker=SetChecker(),
                    final_fs=frozenset({"read"}))
