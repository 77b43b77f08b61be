"""``raftlab system check MODULE``: exercise a system module through every capability it claims.

Why: a system module's bugs otherwise surface in the middle of a campaign, as an odd verdict or
a fault that "did not take effect". This runs the module on a small fresh local lab and checks
each promise of the plugin contract (``raftlab.protocols``, docs/campaigns.md) against the
machine itself, not against what the module says: the processes whose working directory is a
host's ``node_dir`` (``raftlab.lab.local.processes_under``), their states in /proc, the files on
disk. In order:

1. ``load``: the module imports and ``system(lab, options)`` returns a ``System``;
2. ``DB.teardown`` on hosts where nothing was ever set up; ``DB.setup`` on every host in parallel;
   ``ClusterSetup.setup_cluster`` if claimed;
3. ``serving``: a leader (if ``HasPrimaries``) and a successful read through the ``Client``; then
   ``Client``: a write and a read of it, each an ``ok`` completion of the same process and f;
4. ``HasPrimaries.primaries``: a list of the lab's hosts;
5. ``Killable``: ``start`` on a running node leaves its processes as they are; ``kill`` returns
   only when the node's processes are gone; ``start`` brings it back and the cluster serves;
6. ``Pausable``: ``pause`` leaves every process of the node stopped (state T), ``resume`` none;
7. ``Reconfigurable`` (what ``--nemesis member`` uses): ``members`` names every host of the fresh
   cluster; ``set_members`` without one follower returns with ``members`` saying so and the
   cluster serving, and with every host again brings it back; ``wipe`` of a removed follower
   leaves its node running, and re-adding it restores the whole membership; ``ShowsMembership``,
   if claimed, agrees with ``members`` and names a leader among the voters. With fewer than
   three hosts nothing is removed (the member nemesis never goes below two voters);
8. ``HasLogFiles``: every file it names exists and can be fetched;
9. ``ClusterTeardown`` if claimed; ``DB.teardown``: no process is left in any host directory.

Each step is bounded by a timeout and reported as one ``Finding`` naming the capability; the first
failing step of a capability skips the steps that depend on it. Exceptions from the module's code
are findings with their type and message, never a traceback of raftlab's.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from raftlab.history import Op, OpType
from raftlab.lab.local import processes_under
from raftlab.protocols import (
    ClusterSetup,
    ClusterTeardown,
    HasLogFiles,
    HasPrimaries,
    Host,
    HostLab,
    Killable,
    Pausable,
    Reconfigurable,
    ShowsMembership,
)
from raftlab.systems import System, SystemOptions

STEP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    capability: str
    ok: bool
    detail: str

    def describe(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.capability}: {self.detail}"


class StepFailed(Exception):
    """A step of the check failed; the message says what was wrong in plain words."""


def _states(pids: list[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
    return out


class SystemCheck:
    """One check of one system module on one lab; ``run`` returns the findings in order."""

    def __init__(self, lab: HostLab, system: System, *, on_finding: Callable[[Finding], None] | None = None) -> None:
        self.lab = lab
        self.system = system
        self.hosts = list(lab.hosts)
        self.findings: list[Finding] = []
        self.on_finding = on_finding

    def note(self, capability: str, ok: bool, detail: str) -> bool:
        finding = Finding(capability=capability, ok=ok, detail=detail)
        self.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)
        return ok

    async def step(self, capability: str, action: Callable[[], Awaitable[str]]) -> bool:
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                detail = await action()
        except TimeoutError:
            return self.note(capability, False, f"did not finish within {STEP_TIMEOUT:.0f}s")
        except StepFailed as e:
            return self.note(capability, False, str(e))
        except Exception as e:
            return self.note(capability, False, f"raised {type(e).__name__}: {e}")
        return self.note(capability, True, detail)

    def processes(self, host: Host) -> list[int]:
        return [pid for pid, _ in processes_under(Path(self.lab.node_dir(host)))]

    # -- the steps -----------------------------------------------------------------------------

    async def run(self) -> list[Finding]:
        db = self.system.db
        if not await self.step("DB.teardown", self._teardown_fresh):
            return self.findings
        if not await self.step("DB.setup", self._setup):
            await self.step("DB.teardown", self._teardown)
            return self.findings
        if isinstance(db, ClusterSetup):
            await self.step("ClusterSetup.setup_cluster", self._cluster_setup)
        serving = await self.step("serving", self._serving)
        if serving:
            await self.step("Client", self._client)
        if isinstance(db, HasPrimaries):
            await self.step("HasPrimaries.primaries", self._primaries)
        if isinstance(db, Killable):
            victim = await self._victim()
            if (await self.step("Killable.start (on a running node)", lambda: self._start_running(victim))
                    and await self.step("Killable.kill", lambda: self._kill(victim))):
                await self.step("Killable.start (after kill)", lambda: self._restart(victim))
        if isinstance(db, Pausable):
            await self.step("Pausable.pause/resume", lambda: self._pause(self.hosts[-1]))
        if isinstance(db, Reconfigurable):
            await self._reconfigure(db)
        if isinstance(db, HasLogFiles):
            await self.step("HasLogFiles.log_files", self._logs)
        if isinstance(db, ClusterTeardown):
            await self.step("ClusterTeardown.teardown_cluster", self._cluster_teardown)
        await self.step("DB.teardown", self._teardown)
        return self.findings

    async def _on_all(self, action: Callable[[Host], Awaitable[None]]) -> None:
        results = await asyncio.gather(*(action(h) for h in self.hosts), return_exceptions=True)
        for host, result in zip(self.hosts, results, strict=True):
            if isinstance(result, BaseException):
                raise StepFailed(f"on {host}: raised {type(result).__name__}: {result}")

    async def _teardown_fresh(self) -> str:
        await self._on_all(self.system.db.teardown)
        return "works on hosts where nothing was set up"

    async def _setup(self) -> str:
        await self._on_all(self.system.db.setup)
        empty = [h for h in self.hosts if not self.processes(h)]
        if empty:
            raise StepFailed(f"setup returned but {', '.join(empty)} run no process in their node_dir "
                             "(start nodes with the node_dir as working directory)")
        return f"{len(self.hosts)} hosts set up, each running in its node_dir"

    async def _cluster_setup(self) -> str:
        db = self.system.db
        assert isinstance(db, ClusterSetup)
        await db.setup_cluster(self.hosts)
        return "ran once after every host's setup"

    async def _probe(self, host: Host, op: Op) -> Op:
        client = await self.system.client.open(host)
        try:
            done = await asyncio.wait_for(client.invoke(op), STEP_TIMEOUT)
        finally:
            await client.close()
        if not isinstance(done, Op) or done.process != op.process or done.f != op.f or done.type is OpType.INVOKE:
            raise StepFailed(f"invoke({op.describe()}) returned {done!r}: a completion must be an Op with the same "
                             "process and f, of type ok, fail or info")
        return done

    async def _serving(self) -> str:
        loop = asyncio.get_running_loop()
        start = loop.time()
        problem = ""
        while loop.time() - start < STEP_TIMEOUT - 1:
            db = self.system.db
            if isinstance(db, HasPrimaries) and not await db.primaries():
                problem = "primaries() named no leader"
            else:
                read = Op(type=OpType.INVOKE, process=0, f="read", key="check")
                done = await self._probe(self.hosts[0], read)
                if done.type is OpType.OK:
                    return f"served a read {loop.time() - start:.1f}s after setup"
                problem = f"the read completed {done.type.value}: {done.error}"
            await asyncio.sleep(0.2)
        raise StepFailed(f"the cluster did not serve: {problem}")

    async def _client(self) -> str:
        write = await self._probe(self.hosts[0], Op(type=OpType.INVOKE, process=0, f="write", key="check", value=3))
        if write.type is not OpType.OK:
            raise StepFailed(f"a write on a healthy cluster completed {write.type.value}: {write.error}")
        read = await self._probe(self.hosts[0], Op(type=OpType.INVOKE, process=0, f="read", key="check"))
        if read.type is not OpType.OK or read.value != 3:
            raise StepFailed(f"after writing 3, a read completed {read.describe()}")
        return "write(3) then read() -> 3, both ok"

    async def _primaries(self) -> str:
        db = self.system.db
        assert isinstance(db, HasPrimaries)
        leaders = await db.primaries()
        if not isinstance(leaders, list) or not all(h in self.hosts for h in leaders):
            raise StepFailed(f"returned {leaders!r}: it must be a list of the lab's hosts ({', '.join(self.hosts)})")
        if not leaders:
            raise StepFailed("returned [] on a cluster that serves")
        return f"leader {leaders[0]}"

    async def _victim(self) -> Host:
        db = self.system.db
        if isinstance(db, HasPrimaries):
            try:
                leaders = await db.primaries()
            except Exception:  # already reported by its own step
                leaders = []
            if leaders and leaders[0] in self.hosts:
                return leaders[0]
        return self.hosts[-1]

    async def _start_running(self, host: Host) -> str:
        db = self.system.db
        assert isinstance(db, Killable)
        before = set(self.processes(host))
        await db.start(host)
        after = set(self.processes(host))
        if after != before:
            raise StepFailed(f"start({host}) on a running node changed its processes ({sorted(before)} -> "
                             f"{sorted(after)}): start must do nothing when the node runs (healers call it in any "
                             "state)")
        return f"start({host}) left the running node alone"

    async def _kill(self, host: Host) -> str:
        db = self.system.db
        assert isinstance(db, Killable)
        before = self.processes(host)
        await db.kill(host)
        left = self.processes(host)
        if left:
            raise StepFailed(f"kill({host}) returned while its processes {left} still ran: kill must return only "
                             "once they are gone")
        return f"kill({host}) returned with its {len(before)} processes gone"

    async def _restart(self, host: Host) -> str:
        db = self.system.db
        assert isinstance(db, Killable)
        await db.start(host)
        if not self.processes(host):
            raise StepFailed(f"start({host}) returned but no process runs in its node_dir")
        await self._serving()
        return f"start({host}) brought it back and the cluster serves"

    async def _pause(self, host: Host) -> str:
        db = self.system.db
        assert isinstance(db, Pausable)
        await db.pause(host)
        running = await self._settle(host, lambda s: s != "T")
        await db.resume(host)
        if running:
            raise StepFailed(f"after pause({host}) these processes were not stopped: {running}")
        stopped = await self._settle(host, lambda s: s == "T")
        if stopped:
            raise StepFailed(f"after resume({host}) these processes were still stopped: {stopped}")
        return f"pause({host}) stopped its processes and resume({host}) continued them"

    async def _settle(self, host: Host, wrong: Callable[[str], bool]) -> dict[int, str]:
        """The host's processes in a wrong state after up to a second (a signal lands asynchronously)."""
        for _ in range(20):
            bad = {p: s for p, s in _states(self.processes(host)).items() if wrong(s)}
            if not bad:
                return {}
            await asyncio.sleep(0.05)
        return bad

    async def _reconfigure(self, db: Reconfigurable) -> None:
        """members; shrink a follower and grow it back; wipe a removed one and re-add it."""
        if not await self.step("Reconfigurable.members", lambda: self._members(db, self.hosts, "on a fresh cluster")):
            return
        if isinstance(db, ShowsMembership):
            await self.step("ShowsMembership.membership", lambda: self._shows(db, db))
        if len(self.hosts) < 3:
            self.note("Reconfigurable.set_members", True, f"not tried: {len(self.hosts)} hosts cannot lose one and "
                      "keep two voters (--nodes 3 or more)")
            return
        victim = await self._follower()
        rest = [h for h in self.hosts if h != victim]
        if not await self.step("Reconfigurable.set_members (shrink)", lambda: self._set(db, rest, f"without {victim}")):
            return
        if not await self.step("Reconfigurable.set_members (grow)", lambda: self._set(db, self.hosts,
                                                                                    f"with {victim} again")):
            return
        await self.step("Reconfigurable.wipe", lambda: self._wipe(db, victim, rest))

    async def _follower(self) -> Host:
        leader = await self._victim()
        return next(h for h in reversed(self.hosts) if h != leader)

    async def _members(self, db: Reconfigurable, expected: list[Host], when: str) -> str:
        members = await db.members()
        if not isinstance(members, list) or sorted(members) != sorted(expected):
            raise StepFailed(f"{when}, members() returned {members!r}, expected the voters {', '.join(sorted(expected))}")
        return f"{when}: {', '.join(sorted(members))}"

    async def _shows(self, db: ShowsMembership, reconfigurable: Reconfigurable) -> str:
        m = await db.membership()
        voters = m.get("voters") if isinstance(m, dict) else None
        members = await reconfigurable.members()
        if not isinstance(voters, list) or sorted(voters) != sorted(members):
            raise StepFailed(f"membership() returned {m!r}: its voters must be what members() says ({members!r})")
        if not all(isinstance(m.get(k, []), list) for k in ("learners", "outgoing")):
            raise StepFailed(f"membership() returned {m!r}: learners and outgoing must be lists of hosts")
        if m.get("leader") not in voters:
            raise StepFailed(f"membership() named leader {m.get('leader')!r}, not one of the voters {voters!r}")
        return f"voters {', '.join(sorted(voters))}, leader {m['leader']}"

    async def _set(self, db: Reconfigurable, hosts: list[Host], what: str) -> str:
        await db.set_members(hosts)
        await self._members(db, hosts, f"after set_members({', '.join(hosts)}) returned")
        await self._serving()
        return f"{what}: members() agreed and the cluster serves"

    async def _wipe(self, db: Reconfigurable, host: Host, rest: list[Host]) -> str:
        await db.set_members(rest)
        await db.wipe(host)
        if not self.processes(host):
            raise StepFailed(f"wipe({host}) returned but no process runs in its node_dir: wipe must restart the "
                             "node (empty, as a member to be added again)")
        await db.set_members(self.hosts)
        await self._members(db, self.hosts, f"after wipe({host}) and set_members with it again")
        await self._serving()
        return f"{host} removed, wiped, restarted and added again: members() has every host and the cluster serves"

    async def _logs(self) -> str:
        db = self.system.db
        assert isinstance(db, HasLogFiles)
        fetched = 0
        with tempfile.TemporaryDirectory(prefix="raftlab-check-") as target:
            for host in self.hosts:
                files = db.log_files(host)
                if not isinstance(files, dict):
                    raise StepFailed(f"log_files({host}) returned {files!r}, not a dict of path -> name")
                for path, name in files.items():
                    try:
                        await self.lab.remote(host).get(path, str(Path(target) / host / name))
                    except Exception as e:
                        raise StepFailed(f"{host}: cannot fetch {path} ({e})") from None
                    fetched += 1
        return f"fetched {fetched} files"

    async def _cluster_teardown(self) -> str:
        db = self.system.db
        assert isinstance(db, ClusterTeardown)
        await db.teardown_cluster(self.hosts)
        return "ran once before the hosts' teardown"

    async def _teardown(self) -> str:
        await self._on_all(self.system.db.teardown)
        left = {h: p for h in self.hosts if (p := self.processes(h))}
        if left:
            raise StepFailed(f"teardown returned but processes still run: {left}")
        return "every node stopped, nothing left running"


async def check_module(spec: str, *, nodes: int = 3, base_port: int = 17000, lab_name: str | None = None,
                       system_opts: dict[str, Any] | None = None, lab_opts: dict[str, Any] | None = None,
                       on_finding: Callable[[Finding], None] | None = None) -> list[Finding]:
    """Check system module ``spec`` on a fresh local lab (removed afterwards); the findings."""
    import os

    from raftlab import systems
    from raftlab.lab import LabError, lab_down, open_lab

    def fail(capability: str, detail: str) -> list[Finding]:
        finding = Finding(capability=capability, ok=False, detail=detail)
        if on_finding is not None:
            on_finding(finding)
        return [finding]

    name = lab_name or f"check-{os.getpid()}"
    try:
        wanted = {**systems.lab_opts(spec, "local"), **(lab_opts or {})}
    except systems.SystemLoadError as e:
        return fail("load", str(e))
    try:
        lab = await open_lab("local", nodes=nodes, name=name, **wanted)
    except LabError as e:
        return fail("lab", str(e))
    try:
        options = SystemOptions(base_port=base_port, extra={**(system_opts or {}), "seed": 0})
        try:
            system = systems.load(spec, cast(HostLab, lab), options)
        except systems.SystemLoadError as e:
            return fail("load", str(e))
        except Exception as e:
            return fail("load", f"system(lab, options) raised {type(e).__name__}: {e}")
        check = SystemCheck(cast(HostLab, lab), system, on_finding=on_finding)
        check.note("load", True, f"{spec}: system {system.name!r}, claims "
                   + (", ".join(c.__name__ for c in (Killable, Pausable, HasPrimaries, Reconfigurable, ShowsMembership,
                                                      HasLogFiles, ClusterSetup, ClusterTeardown)
                                if isinstance(system.db, c)) or "nothing more"))
        return await check.run()
    finally:
        await lab.close()
        await lab_down(name)  # kills whatever a broken module left running in the lab


__all__ = ["Finding", "SystemCheck", "check_module"]
