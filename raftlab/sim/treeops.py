"""The tree workload's operations as DtKV commands, for the simulator's clients (pure).

With ``SimConfig.workload == "tree"`` the simulated clients speak the tree workload's vocabulary
(workloads/tree.py: mkdir, rmdir, list, put, get, cas-key, remove and the batches, each inside
one top-level directory) instead of the register's read/write/cas, and the history is judged
with the ``dtkv-dir`` model (checker/tree.py). So a mistake in the replicated state machine
(impl/dtkv/tree.py) is within reach of a seed too, not only of a campaign.

``command`` turns an op into the command the dtkv system's client sends for it
(raftlab/systems/dtkv.py ``_tree_call`` does the same through the asyncio client) and ``output``
turns a successful reply body into the op's completion value, exactly as that client does.
"""

from __future__ import annotations

from typing import Any

from raftlab.impl.dtkv.commands import (
    BatchGet,
    BatchPut,
    BatchRemove,
    Cas,
    Command,
    Get,
    List,
    Mkdir,
    Put,
    Remove,
)
from raftlab.systems.dtkv import _decode as _dec  # the campaign client's value encoding, shared
from raftlab.systems.dtkv import _encode as _enc

TREE_READS = frozenset({"get", "batch-get", "list"})


def command(f: str, d: str, arg: Any) -> Command:
    """The DtKV command of tree op ``f`` on directory ``d`` with argument ``arg``."""
    match f:
        case "mkdir":
            return Mkdir(key=d)
        case "rmdir":
            return Remove(key=d)
        case "list":
            return List(key=d)
        case "put":
            return Put(key=f"{d}.{arg[0]}", value=_enc(arg[1]))
        case "get":
            return Get(key=f"{d}.{arg[0]}")
        case "cas-key":
            return Cas(key=f"{d}.{arg[0]}", expected=None if arg[1] is None else _enc(arg[1]), new=_enc(arg[2]))
        case "remove":
            return Remove(key=f"{d}.{arg[0]}")
        case "batch-put":
            return BatchPut(items=tuple((f"{d}.{n}", _enc(v)) for n, v in arg))
        case "batch-get":
            return BatchGet(keys=tuple(f"{d}.{n}" for n in arg))
        case "batch-remove":
            return BatchRemove(keys=tuple(f"{d}.{n}" for n in arg))
    raise ValueError(f"not a tree workload op: {f!r}")


def output(f: str, arg: Any, body: dict[str, Any]) -> Any:
    """The completion value of a successful tree op (reads: what was read; writes: the argument)."""
    if f == "list":
        return sorted(body.get("children", []))
    if f == "get":
        return _dec(body.get("value"))
    if f == "batch-get":
        return [_dec(v) for v in body.get("values") or [None] * len(arg)]
    return arg
