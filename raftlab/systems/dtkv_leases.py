"""The lock, watch and ttl workloads' ops on the reference node (workloads/leases.py's contract).

One ``LeaseOps`` per worker (the interpreter opens a ``DtkvClient`` per worker), because these
ops carry the worker's own state between calls: the index its watch resumes from, the number of
its current temp node. A worker's owner id is ``p<process>``, so a lock or temp node of a
crashed worker (a new process) is never mistaken for its successor's.

* ``hold`` (value ``{"elem", "lease_ms", "hold_ms", "pause_ms", "fenced"}``): try-lock ``lock``
  without queueing (``fail`` when held), read the guarded list ``lockset``, wait half of
  ``hold_ms``, refresh the lease, wait the other half, write the list back with ``[token, elem]``
  appended, unlock. With ``pause_ms`` the holder instead stalls that long without refreshing (a
  GC pause: it does not know whether it still holds the lock) and then writes anyway. With
  ``fenced`` the write is a fenced one: refused (``fail``) when the list already holds a newer
  token, else a compare-and-set of the list as read. ok value: ``{"elem", "token",
  "acquired_ns", "released_ns"}`` (nanoseconds after the op began: when the lock was granted and
  when the unlock was sent). ``read-set``: the guarded list.
* ``wput`` (key, value int): a put under ``w``; ok value ``[value, index]``. ``watch``: one
  poll of ``w`` from the worker's next index; ok value ``{"from", "next", "events"}`` with
  events ``[index, kind, key, value]``; a ``compacted`` fail restarts the worker's watch "from
  now" (its next op starts a new segment).
* ``ttl-create`` / ``ttl-refresh`` / ``ttl-read`` (value ``{"ttl_ms"}``): the worker's temp node
  ``ttl.p<process>_<n>``, ``n`` counting its creates (so the checker can name the key of an op
  that ended ``info``); ok value ``{"key", "present"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from raftlab.history import Op
from raftlab.impl.client import Compacted, DefiniteError, KeyNotFound, KvClient, NotOwner

LOCK_KEY = "lock"
LOCK_SET = "lockset"
WATCH_DIR = "w"
TTL_DIR = "ttl"
LEASE_FS = frozenset({"hold", "read-set", "wput", "watch", "ttl-create", "ttl-refresh", "ttl-read"})


class Fenced(DefiniteError):
    """A fenced write refused: the guarded resource has seen a newer token."""

    kind = "fenced"


def ttl_key(process: Any, n: int) -> str:
    return f"{TTL_DIR}.p{process}_{n}"


class LeaseOps:
    def __init__(self) -> None:
        self.watch_next = 0  # 0: from now
        self.creates = 0

    async def call(self, kv: KvClient, op: Op) -> Any:
        owner = f"p{op.process}"
        arg = op.value if isinstance(op.value, dict) else {}
        match op.f:
            case "hold":
                return await self._hold(kv, owner, arg)
            case "read-set":
                raw = await kv.get(LOCK_SET)
                return json.loads(raw) if raw else []
            case "wput":
                index = await _ensure_dir(kv, WATCH_DIR, lambda: kv.put(f"{WATCH_DIR}.{op.key}", str(op.value).encode()))
                return [op.value, index]
            case "watch":
                start = self.watch_next
                try:
                    events, self.watch_next = await kv.watch_poll(WATCH_DIR, start)
                except Compacted:
                    self.watch_next = 0
                    raise
                return {"from": start, "next": self.watch_next,
                        "events": [[e.index, e.kind, e.key, None if e.value is None else e.value.decode()]
                                   for e in events]}
            case "ttl-create":
                self.creates += 1
                key = ttl_key(op.process, self.creates)
                await _ensure_dir(kv, TTL_DIR, lambda: kv.put_temp(key, b"up", owner, int(arg["ttl_ms"])))
                return {"key": key, "present": True}
            case "ttl-refresh":
                key = ttl_key(op.process, self.creates)
                await kv.refresh(key, owner, int(arg["ttl_ms"]))
                return {"key": key, "present": True}
            case "ttl-read":
                key = ttl_key(op.process, self.creates)
                return {"key": key, "present": await kv.get(key) is not None}
        raise ValueError(f"not a lease op: {op.f!r}")

    async def _hold(self, kv: KvClient, owner: str, arg: dict[str, Any]) -> dict[str, Any]:
        began = time.monotonic_ns()
        lease_ms, half = int(arg["lease_ms"]), float(arg["hold_ms"]) / 2000
        token = await kv.try_lock(LOCK_KEY, owner, lease_ms)
        acquired = time.monotonic_ns() - began
        raw = await kv.get(LOCK_SET)
        items = json.loads(raw) if raw else []
        if arg.get("pause_ms"):
            await asyncio.sleep(float(arg["pause_ms"]) / 1000)
        else:
            await asyncio.sleep(half)
            await kv.refresh(LOCK_KEY, owner, lease_ms)
            await asyncio.sleep(half)
        new = json.dumps([*items, [token, arg["elem"]]]).encode()
        if arg.get("fenced"):
            if any(t > token for t, _ in items):
                raise Fenced(f"token {token} is older than one already written")
            await kv.cas(LOCK_SET, raw, new)  # CasMismatch (fail) if a newer holder wrote since the read
        else:
            await kv.put(LOCK_SET, new)
        released = time.monotonic_ns() - began
        with contextlib.suppress(NotOwner):  # it expired meanwhile (the checker sees any overlap)
            await kv.unlock(LOCK_KEY, owner)
        return {"elem": arg["elem"], "token": token, "acquired_ns": acquired, "released_ns": released}


async def _ensure_dir(kv: KvClient, d: str, write: Any) -> int:
    try:
        return int(await write())
    except KeyNotFound:  # definite: the directory is missing and nothing was written
        await kv.mkdir(d)
        return int(await write())
