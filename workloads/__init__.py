"""Workloads: what the clients do during a campaign, and how the result is judged.

A workload is a partial campaign (Jepsen's ``tests/linearizable_register.clj``): a ``generator``
of client ops for the faulty period, a ``final_generator`` run after every fault is healed and the
cluster is healthy again (or None), and the ``checker`` that judges the history. The client that
executes the ops belongs to the system under test (``raftlab.systems``), so the op vocabulary of
each workload is its contract with clients:

| workload | ops (f: value) | final | checked with |
| --- | --- | --- | --- |
| register | read key: null/int, write key: int, cas key: [old, new] | a read of every key in use | the ``kv`` model |
| set | add: unique int; read: sorted list of ints | a read of the whole set | the set checker |
| tree | mkdir, rmdir, list, put, get, cas-key, remove, batch-put, batch-get, batch-remove in one directory | a batch-get of each directory in use | the ``dtkv-dir`` model |
| mixed | register ops on keys ``r<n>`` and tree ops on directories ``t<n>``, half each | both final phases | ``kv`` per key, ``dtkv-dir`` per directory |
| lock, watch, ttl | locks, watch polls and temp nodes (``workloads/leases.py``) | see there | ``checker/leases.py`` |

``WORKLOADS`` maps each name to a factory ``make(**opts) -> Workload``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftlab.generator import Generator
from raftlab.protocols import Checker


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """The client side of a campaign.

    ``final_fs``: the fs whose ok completion in the final phase shows the final reads really ran
    (a run without one proves nothing). ``probe``: a read-only op spec the runner sends (outside
    the history) to decide that the cluster serves requests again after healing.
    """

    name: str
    generator: Generator
    final_generator: Generator | None
    checker: Checker
    final_fs: frozenset[str] = frozenset()
    probe: dict[str, Any] = field(default_factory=lambda: {"f": "read"})


def _register(**opts: Any) -> Workload:
    from raftlab.workloads.register import workload

    return workload(**opts)


def _set(**opts: Any) -> Workload:
    from raftlab.workloads.set import workload

    return workload(**opts)


def _tree(**opts: Any) -> Workload:
    from raftlab.workloads.tree import workload

    return workload(**opts)


def _mixed(**opts: Any) -> Workload:
    from raftlab.workloads.mixed import workload

    return workload(**opts)


def _leases(name: str) -> Callable[..., Workload]:
    def make(**opts: Any) -> Workload:
        from raftlab.workloads import leases

        return getattr(leases, name)(**opts)
    return make


WORKLOADS: dict[str, Callable[..., Workload]] = {"register": _register, "set": _set, "tree": _tree,
                                                 "mixed": _mixed,
                                                 "lock": _leases("lock"), "watch": _leases("watch"),
                                                 "ttl": _leases("ttl")}


class UnknownWorkload(ValueError):
    """A workload name not in WORKLOADS."""


def make(name: str, **opts: Any) -> Workload:
    if name not in WORKLOADS:
        raise UnknownWorkload(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
    return WORKLOADS[name](**opts)


__all__ = ["WORKLOADS", "UnknownWorkload", "Workload", "make"]
