"""The health gate: is the cluster serving again? Asked at startup, after healing, and by tests.

A cluster is healthy when the DB names a leader (if it can: ``HasPrimaries``) and a probe
operation (the workload's ``probe``, usually a read) completes ``ok`` through the system's own
client, on each host in turn. ``probe_health`` polls until that holds or the timeout passes and
says the last problem; an unreachable cluster (OSError, timeout) is what it waits out, but an
exception from the system's code is a bug and stops the run at once (``Incomplete``).
``HealthGate`` puts the same check on the nemesis thread as the ``wait-healthy`` op, so the time
the healed cluster took to serve is in the history (``raftlab.evidence.recovery`` judges it),
and with ``restart`` the ``restart-all`` op: every node SIGKILLed at once, started again, and the
same check (``raftlab.evidence.restart`` judges it). Why kill them all: a node that recovers
alone can be repaired by its peers before anyone looks; a whole cluster restarting from its own
files shows whether what each one wrote is what it acknowledged (a truncation that never reached
the file, a segment it cannot read back).
This module is the one place both the runner and the pytest plugin ask it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from raftlab import evidence
from raftlab.history import Op, OpType
from raftlab.lifecycle import Incomplete, UserCall, format_traceback, user_call, where
from raftlab.protocols import HasPrimaries, Host, Killable, Lab, Nemesis
from raftlab.systems import System


async def probe_health(system: System, hosts: Sequence[Host], probe: dict[str, Any], timeout: float,
                       ) -> tuple[bool, float, str]:
    """Poll until the DB names a leader (if it can) and a probe read succeeds: (healthy, seconds, problem)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    problem = "not probed yet"
    attempt = 0
    while True:
        attempt += 1
        try:
            problem = await _probe_once(system, hosts[attempt % len(hosts)], probe)
        except (OSError, TimeoutError) as e:  # an unreachable cluster is what we are waiting out
            problem = f"{type(e).__name__}: {e}"
        except Exception as e:  # a bug in the system's code: waiting will not fix it
            inner = e.error if isinstance(e, UserCall) else e
            raise Incomplete("startup", f"{where(e)} raised {type(inner).__name__}: {inner}",
                             detail=format_traceback(e)) from None
        if not problem:
            return True, loop.time() - start, ""
        if loop.time() - start > timeout:
            return False, loop.time() - start, problem
        await asyncio.sleep(0.2)


async def _probe_once(system: System, host: Host, probe: dict[str, Any]) -> str:
    if isinstance(system.db, HasPrimaries) and not await user_call("the DB's primaries()", system.db.primaries()):
        return "no leader"
    client = await user_call(f"the client's open({host!r})", system.client.open(host))
    try:
        op = Op(type=OpType.INVOKE, process="probe", f=probe["f"], key=probe.get("key"), value=probe.get("value"))
        done = await user_call(f"the client's invoke({op.describe()})", client.invoke(op))
    finally:
        await user_call("the client's close()", client.close())
    return "" if done.type is OpType.OK else f"probe {op.f} via {host}: {done.type.value} {done.error or ''}".strip()


class HealthGate:
    """The package's nemesis plus the harness's own ``wait-healthy`` step (a nemesis-thread op)."""

    def __init__(self, inner: Nemesis, wait: Callable[[], Any], timeout: float,
                 restart: tuple[Killable, Sequence[Host]] | None = None) -> None:
        self.inner = inner
        self.wait = wait
        self.timeout = timeout
        self.restart = restart

    def fs(self) -> frozenset[str]:
        return self.inner.fs() | {evidence.WAIT_HEALTHY} | ({evidence.RESTART_ALL} if self.restart else set())

    async def setup(self, lab: Lab) -> None:
        await self.inner.setup(lab)

    async def invoke(self, op: Op) -> Op:
        if op.f == evidence.RESTART_ALL and self.restart is not None:
            return await self._restart_all(op, *self.restart)
        if op.f != evidence.WAIT_HEALTHY:
            return await self.inner.invoke(op)
        healthy, seconds, problem = await self.wait()
        value = {"healthy": healthy, "seconds": round(seconds, 3), "timeout": self.timeout}
        if not healthy:
            value["last_problem"] = problem
        return replace(op, type=OpType.INFO, value=value, error=None if healthy else problem, index=-1)

    async def _restart_all(self, op: Op, db: Killable, hosts: Sequence[Host]) -> Op:
        from raftlab.nemesis.targets import on_each

        _, kill_failed = await on_each(hosts, db.kill)  # a node already down after healing is a finding too
        started, start_failed = await on_each(hosts, db.start)
        errors = [f"{h} could not be killed (was it running after healing?): {why}" for h, why in sorted(kill_failed.items())]
        errors += [f"{h} did not start: {why}" for h, why in sorted(start_failed.items())]
        healthy, seconds, problem = await self.wait()
        value: dict[str, Any] = {"restarted": started, "healthy": healthy, "seconds": round(seconds, 3)}
        if kill_failed or start_failed:
            value["failed"] = {**kill_failed, **start_failed}
        if not healthy:
            value["last_problem"] = problem
            errors.append(f"the cluster did not serve again within {self.timeout} s: {problem}")
        return replace(op, type=OpType.INFO, value=value, error="; ".join(errors) or None, index=-1)

    async def teardown(self) -> None:
        await self.inner.teardown()


