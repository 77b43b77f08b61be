"""Whom a fault hits, and how its completion says what happened: shared by every fault family.

A target is a name (``one``, ``leader``, ``minority``, ``majority``, ``all``) or an explicit list
of hosts. Each name is a ``TargetRule`` in ``TARGETS``: an async function of (hosts, the hosts in a seeded order, db)
that returns the hosts, so a new rule (a state-timed or state-chosen target, say "the most
lagging follower") is one ``TARGETS[name] = rule`` in its own module, and every family that
draws targets through ``choose`` can use it. ``leader`` asks the DB's ``primaries()``.

A completion says which hosts were really hit; a host whose action raised is listed under
``failed`` with the reason, and the op's ``error`` is set: a fault is never assumed to have worked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from raftlab.history import NEMESIS, Op, OpType
from raftlab.protocols import HasPrimaries, Host

TargetRule = Callable[[Sequence[Host], Sequence[Host], object], Awaitable[list[Host]]]
"""(the lab's hosts, the same hosts in a seeded random order, the DB) -> the hosts to hit."""


class TargetError(ValueError):
    """No host can be chosen for a target (unknown target, or no leader known)."""


async def current_leader(db: object) -> Host | None:
    if not isinstance(db, HasPrimaries):
        raise TargetError("the DB cannot name its leader (it has no primaries())")
    primaries = await db.primaries()
    return primaries[0] if primaries else None


async def _one(hosts: Sequence[Host], shuffled: Sequence[Host], db: object) -> list[Host]:
    return list(shuffled[:1])


async def _minority(hosts: Sequence[Host], shuffled: Sequence[Host], db: object) -> list[Host]:
    return sorted(shuffled[: (len(hosts) - 1) // 2] or shuffled[:1])


async def _majority(hosts: Sequence[Host], shuffled: Sequence[Host], db: object) -> list[Host]:
    return sorted(shuffled[: len(hosts) // 2 + 1])


async def _all(hosts: Sequence[Host], shuffled: Sequence[Host], db: object) -> list[Host]:
    return list(hosts)


async def _leader(hosts: Sequence[Host], shuffled: Sequence[Host], db: object) -> list[Host]:
    leader = await current_leader(db)
    if leader is None:
        raise TargetError("no leader known")
    return [leader]


TARGETS: dict[str, TargetRule] = {"one": _one, "leader": _leader, "minority": _minority,
                                  "majority": _majority, "all": _all}


async def choose(target: Any, hosts: Sequence[Host], rng: random.Random, db: object) -> list[Host]:
    """The hosts a target names."""
    if isinstance(target, list):
        unknown = [h for h in target if h not in hosts]
        if unknown:
            raise TargetError(f"unknown hosts {', '.join(map(str, unknown))}")
        return list(target)
    rule = TARGETS.get(target) if isinstance(target, str) else None
    if rule is None:
        raise TargetError(f"unknown target {target!r} (known: {', '.join(TARGETS)}, or a list of hosts)")
    shuffled = list(hosts)
    rng.shuffle(shuffled)  # one draw whatever the rule, so adding a rule never shifts the stream
    return await rule(hosts, shuffled, db)


def op(f: str, value: Any = None) -> Op:
    """A nemesis invocation."""
    return Op(type=OpType.INVOKE, process=NEMESIS, f=f, value=value)


def completion(op: Op, value: dict[str, Any], failed: dict[Host, str] | None = None) -> Op:
    """The info completion of a nemesis op; ``error`` says what did not take effect."""
    error = None
    if failed:
        value = {**value, "failed": failed}
        error = "; ".join(f"{h}: {why}" for h, why in sorted(failed.items()))
    return replace(op, type=OpType.INFO, value=value, error=error, index=-1)


def failure(op: Op, reason: str) -> Op:
    return replace(op, type=OpType.INFO, value={"applied": False}, error=reason, index=-1)


async def on_each(hosts: Sequence[Host], action: Callable[[Host], Awaitable[None]]) -> tuple[list[Host], dict[Host, str]]:
    """Run ``action`` on every host at once; which succeeded, and why the others failed."""
    done: list[Host] = []
    failed: dict[Host, str] = {}

    async def one(host: Host) -> None:
        try:
            await action(host)
            done.append(host)
        except Exception as e:  # recorded in the history, never assumed to have worked
            failed[host] = f"{e.__class__.__name__}: {e}"

    async with asyncio.TaskGroup() as tg:
        for h in hosts:
            tg.create_task(one(h))
    return sorted(done), failed
