"""Process faults: kill (SIGKILL, healed by start) and pause (SIGSTOP, healed by SIGCONT).

The nemesis decides *whom* to hit (``Targets``: one, the leader, a minority, a majority, all)
and asks the DB to do it (``Killable.kill/start``, ``Pausable.pause/resume``), because only the DB
knows how its processes run. ``signal_pid_file`` and ``process_state`` are the shell pieces a DB
uses for that on any ``Remote``. A completion says which hosts were really hit; a host whose
action raised is listed under ``failed`` with the reason, and the op's ``error`` is set.
"""

from __future__ import annotations

import asyncio
import random
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from raftlab.history import NEMESIS, Op, OpType
from raftlab.protocols import HasPrimaries, Host, Killable, Lab, Pausable, Remote

TARGETS = ("one", "leader", "minority", "majority", "all")


class TargetError(ValueError):
    """No host can be chosen for a target (unknown target, or no leader known)."""


async def choose(target: Any, hosts: Sequence[Host], rng: random.Random, db: object) -> list[Host]:
    """The hosts a target names; ``leader`` asks the DB's ``primaries()``."""
    if isinstance(target, list):
        unknown = [h for h in target if h not in hosts]
        if unknown:
            raise TargetError(f"unknown hosts {', '.join(map(str, unknown))}")
        return list(target)
    shuffled = list(hosts)
    rng.shuffle(shuffled)
    if target == "one":
        return shuffled[:1]
    if target == "minority":
        return sorted(shuffled[: (len(hosts) - 1) // 2] or shuffled[:1])
    if target == "majority":
        return sorted(shuffled[: len(hosts) // 2 + 1])
    if target == "all":
        return list(hosts)
    if target == "leader":
        leader = await current_leader(db)
        if leader is None:
            raise TargetError("no leader known")
        return [leader]
    raise TargetError(f"unknown target {target!r} (known: {', '.join(TARGETS)}, or a list of hosts)")


async def current_leader(db: object) -> Host | None:
    if not isinstance(db, HasPrimaries):
        raise TargetError("the DB cannot name its leader (it has no primaries())")
    primaries = await db.primaries()
    return primaries[0] if primaries else None


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


class ProcessNemesis:
    """kill/start and pause/resume through the DB's Killable and Pausable capabilities."""

    def __init__(self, db: object, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        self.hosts: list[Host] = []
        self.killed: set[Host] = set()
        self.paused: set[Host] = set()

    def fs(self) -> frozenset[str]:
        return frozenset({"kill", "start", "pause", "resume"})

    async def setup(self, lab: Lab) -> None:
        self.hosts = list(lab.hosts)

    async def invoke(self, op: Op) -> Op:
        needs = Killable if op.f in ("kill", "start") else Pausable
        if not isinstance(self.db, needs):
            return failure(op, f"the DB cannot {op.f} (it is not {needs.__name__})")
        if op.f in ("kill", "pause"):
            try:
                targets = await choose(op.value, self.hosts, self.rng, self.db)
            except TargetError as e:
                return failure(op, str(e))
            action = self.db.kill if op.f == "kill" else self.db.pause  # type: ignore[attr-defined]
            done, failed = await on_each(targets, action)
            (self.killed if op.f == "kill" else self.paused).update(done)
            return completion(op, {"targets": targets, "done": done}, failed)
        # Healers: the hosts we hit (or the ones named), in any state; "all" restarts every host.
        hit = self.killed if op.f == "start" else self.paused
        hosts = list(self.hosts) if op.value == "all" else sorted(hit)
        action = self.db.start if op.f == "start" else self.db.resume  # type: ignore[attr-defined]
        done, failed = await on_each(hosts, action)
        hit.difference_update(done)
        return completion(op, {"targets": hosts, "done": done}, failed)

    async def teardown(self) -> None:
        if self.paused and isinstance(self.db, Pausable):
            await on_each(sorted(self.paused), self.db.resume)
            self.paused.clear()


def op(f: str, value: Any = None) -> Op:
    """A nemesis invocation."""
    return Op(type=OpType.INVOKE, process=NEMESIS, f=f, value=value)


# --- shell pieces for DB implementations -----------------------------------------------------


async def signal_pid_file(remote: Remote, pid_file: str, signal: str, *, wait_gone: float = 0.0) -> int | None:
    """Send ``signal`` (KILL, STOP, CONT, TERM) to the pid in ``pid_file``; the pid, or None if not running.

    With ``wait_gone`` > 0, wait up to that many seconds for the process to disappear (a zombie
    counts as gone) and raise ``TimeoutError`` if it does not.
    """
    pf = shlex.quote(pid_file)
    r = await remote.run(f"p=$(cat {pf} 2>/dev/null) && [ -n \"$p\" ] && kill -{signal} \"$p\" 2>/dev/null && echo $p",
                         check=False)
    if r.exit_status != 0:
        return None
    pid = int(r.stdout.split()[0])
    if wait_gone > 0:
        steps = max(1, int(wait_gone / 0.05))
        gone = (f"i=0; while [ $i -lt {steps} ]; do s=$(sed 's/.*) //;s/ .*//' /proc/{pid}/stat 2>/dev/null) || exit 0; "
                f"[ \"$s\" = Z ] && exit 0; sleep 0.05; i=$((i+1)); done; exit 1")
        if (await remote.run(gone, check=False)).exit_status != 0:
            raise TimeoutError(f"pid {pid} still exists {wait_gone}s after SIGKILL (blocked on a paused disk?)")
    return pid


async def process_state(remote: Remote, pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (R, S, D, T, Z, ...), or None if it is gone."""
    r = await remote.run(f"sed 's/.*) //;s/ .*//' /proc/{int(pid)}/stat", check=False)
    return r.stdout.strip() or None if r.exit_status == 0 else None
