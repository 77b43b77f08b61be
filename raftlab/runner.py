"""A campaign, start to finish: lab, system, faults, workload, healing, checking, report.

``run_campaign(campaign)`` does, in order (Jepsen's ``core/run!``):

1. ``store.new_run`` writes ``campaign.json`` (every option and the seed) before anything runs;
2. ``open_lab``; load the system (``--system``); the workload; the nemesis package (seeded);
3. on every host in parallel: DB ``teardown`` then ``setup`` (a host that fails is named);
4. wait until the cluster is healthy (a leader, when the DB can tell, and a successful probe read);
5. the interpreter runs::

       phases(time_limit(T, any_of(on_clients(workload), on_nemesis(faults))),
              on_nemesis(heal everything),
              on_nemesis(wait-healthy),          # recovery time measured and recorded
              on_clients(time_limit(F, final reads)),
              on_nemesis(observe "end"))         # only when a family observes (the membership)

   where ``faults`` begins with the families' ``observe "start"`` ops, when there are any.

6. finally, whatever happened (error, Ctrl-C): heal every fault still in place, tear the nemesis
   down, collect node logs into ``nodes/<host>/``, tear the DB down unless ``leave_running``;
7. check: the workload's checker plus the evidence checks (``raftlab.evidence``) and the replica
   checks (``raftlab.replicas``: digests compared after healing, node logs scanned), merged
   false > unknown > true; ``results.json``; ``report.html``; ``store/latest``.

Exit codes (``Outcome.exit_code``): 0 valid, 1 a violation (or a cluster that never recovered),
3 unknown (with the reasons), 2 the run could not complete (the stage, host and cause are named).
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from raftlab import __version__, evidence, progress, replicas, store
from raftlab import generator as gen
from raftlab.checker import merge_valid
from raftlab.health import HealthGate, probe_health
from raftlab.history import History, HistoryError, HistoryWriter, Op
from raftlab.interpreter import ContractError, Interpreter
from raftlab.lab import LabError
from raftlab.lab.lock import LabLock
from raftlab.lab.ports import PortBlock
from raftlab.lifecycle import (
    Deferred,
    Incomplete,
    leaves,
    on_all,
)
from raftlab.protocols import (
    ClusterSetup,
    ClusterTeardown,
    HasLogFiles,
    Host,
    HostLab,
    Killable,
    Lab,
    StopsLeftovers,
)
from raftlab.rng import RunRandom
from raftlab.systems import System, SystemOptions

EXIT = {True: 0, False: 1, "unknown": 3}
EXIT_INCOMPLETE = 2


class CampaignError(ValueError):
    """Campaign options that cannot work; names the option."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    """Everything a run depends on; stored as campaign.json and replayed from it."""

    seed: int
    workload: str = "register"
    nemesis: tuple[str, ...] = ()
    time_limit: float = 60.0
    concurrency: int = 10
    lab: str = "local"
    lab_name: str | None = None
    nodes: int = 5
    nodes_file: str | None = None
    interval: float = 5.0
    rate: float = 50.0
    store: str = store.DEFAULT_STORE
    leave_running: bool = False
    system: str = "dtkv"
    node_args: tuple[str, ...] = ()
    base_port: int | None = None  # None: a free block reserved for the run (raftlab/lab/ports.py)
    op_timeout: float = 1.0
    recovery_timeout: float = 30.0
    final_timeout: float = 20.0
    min_ok: int = 10
    check_time_limit: float = 60.0
    restart_check: bool = False  # every node SIGKILLed and restarted before the final reads
    workload_opts: dict[str, Any] = field(default_factory=dict)
    system_opts: dict[str, Any] = field(default_factory=dict)
    lab_opts: dict[str, Any] = field(default_factory=dict)
    nemesis_opts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = ("time_limit", "interval", "op_timeout", "recovery_timeout", "final_timeout", "check_time_limit")
        for name in positive:
            if not getattr(self, name) > 0:
                raise CampaignError(f"{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if self.concurrency < 1:
            raise CampaignError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.nodes < 1:
            raise CampaignError(f"nodes must be at least 1, not {self.nodes}")
        if self.rate < 0:
            raise CampaignError(f"rate must be >= 0 (0: unlimited), not {self.rate}")
        if self.seed < 0:
            raise CampaignError(f"seed must be non-negative, not {self.seed}")
        if self.base_port is not None and not 1024 <= self.base_port <= 65535 - 2 * self.nodes:
            raise CampaignError(f"base-port {self.base_port} leaves no room for {self.nodes} nodes")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nemesis"] = list(self.nemesis)
        d["node_args"] = list(self.node_args)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Campaign:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CampaignError(f"campaign has unknown options {', '.join(unknown)}")
        if "seed" not in d:
            raise CampaignError("campaign has no seed")
        values = dict(d)
        for name in ("nemesis", "node_args"):
            if name in values:
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as e:
            raise CampaignError(f"bad campaign: {e}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    run: store.RunDir
    verdict: bool | str | None
    exit_code: int
    reasons: tuple[str, ...]
    results: dict[str, Any]


Progress = Callable[[Op], None]


# --- the run --------------------------------------------------------------------------------


async def _collect_logs(db: object, lab: Lab, hosts: Sequence[Host], run: store.RunDir) -> None:
    if not isinstance(db, HasLogFiles):
        return
    for host in hosts:
        target = run.node_dir(host)
        target.mkdir(parents=True, exist_ok=True)
        for remote_path, name in db.log_files(host).items():
            with contextlib.suppress(Exception):  # a node that never started has no log
                await lab.remote(host).get(remote_path, str(target / name))


def _open_lab_kwargs(c: Campaign) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**c.lab_opts, "nodes": c.nodes, "seed": c.seed, "name": c.lab_name}
    if c.nodes_file:
        kwargs["nodes_file"] = c.nodes_file
    return kwargs


class Runner:
    """One campaign's run; ``run_campaign`` is the whole public interface."""

    def __init__(self, campaign: Campaign, run: store.RunDir, workload: Any, on_event: Progress | None,
                 on_stage: Callable[[str], None]) -> None:
        self.c = campaign
        self.workload = workload
        self.run_dir = run
        self.on_event = on_event
        self.stage = on_stage
        self.rr = RunRandom(campaign.seed)
        self.perf: tuple[dict[str, Any], ...] = ()
        self.healed = False
        self.timings: dict[str, float] = {}
        self.cleanup: list[str] = []  # what the cleanup really did, said as it is

    async def execute(self) -> None:
        c = self.c
        lock = LabLock(c.lab_name or c.lab, f"campaign {self.run_dir.path}")
        await lock.acquire(self.stage)
        ports: PortBlock | None = None
        try:
            if c.base_port is None:
                try:
                    ports = PortBlock.reserve(2 * c.nodes)
                except LabError as e:
                    raise Incomplete("lab", str(e)) from None
                self.c = replace(c, base_port=ports.first)
                self.stage(f"reserved ports {ports.first}-{ports.first + ports.size - 1}")
            await self._execute(lock)
        finally:
            if ports is not None:
                ports.release()
            lock.release()

    async def _execute(self, lock: LabLock) -> None:
        from raftlab import nemesis as nemesis_pkg
        from raftlab import systems
        from raftlab.lab import open_lab

        c = self.c
        self.stage(f"opening the {c.lab} lab")
        try:
            wanted = systems.lab_opts(c.system, c.lab)
        except systems.SystemLoadError as e:
            raise Incomplete("system", str(e)) from None
        try:
            lab = await open_lab(c.lab, **{**wanted, **_open_lab_kwargs(c)})
        except LabError as e:
            raise Incomplete("lab", str(e)) from None
        try:
            hosts = list(lab.hosts)[: c.nodes]
            assert c.base_port is not None  # reserved in execute()
            options = SystemOptions(node_args=c.node_args, base_port=c.base_port, op_timeout=c.op_timeout,
                                    extra={**c.system_opts, "seed": c.seed})
            try:
                system = systems.load(c.system, cast(HostLab, lab), options)
            except systems.SystemLoadError as e:
                raise Incomplete("system", str(e)) from None
            pkg = nemesis_pkg.package(list(c.nemesis), db=system.db, rng=self.rr.stream("nemesis"),
                                      interval=c.interval, opts=c.nemesis_opts)
            self.perf = pkg.perf
            with HistoryWriter(self.run_dir.history) as writer:
                await self._run(lab, hosts, system, pkg, writer)
        finally:
            await lab.close()

    async def _run(self, lab: Lab, hosts: list[Host], system: System, pkg: Any, writer: HistoryWriter) -> None:
        c = self.c
        db = system.db
        if c.restart_check and not isinstance(db, Killable):
            raise Incomplete("system", f"--restart-check kills and starts every node, and {system.name}'s DB is not "
                                       "Killable (kill/start)")
        interp: Interpreter | None = None
        set_up = False
        try:
            self.stage(f"setting up {system.name} on {len(hosts)} hosts")
            await on_all(hosts, "teardown", db.teardown)
            set_up = True
            await on_all(hosts, "setup", db.setup)
            if isinstance(db, ClusterSetup):
                self.stage("cluster setup")
                await on_all(hosts[:1], "cluster setup", lambda _: db.setup_cluster(hosts))
            self.stage("waiting for a leader")
            healthy, seconds, problem = await probe_health(system, hosts, self.workload.probe, c.recovery_timeout)
            self.timings["initial_leader_seconds"] = round(seconds, 3)
            if not healthy:
                raise Incomplete("startup", f"the cluster was not serving within {c.recovery_timeout}s: {problem}")
            await pkg.nemesis.setup(lab)
            gate = HealthGate(pkg.nemesis, lambda: probe_health(system, hosts, self.workload.probe,
                                                                c.recovery_timeout), c.recovery_timeout,
                              restart=(db, hosts) if c.restart_check else None)
            interp = Interpreter(client=system.client, nemesis=gate, hosts=hosts, concurrency=c.concurrency,
                                 writer=writer, rng=self.rr.stream("workload"), op_timeout=c.op_timeout + 2.0,
                                 on_event=self.on_event)
            self.stage("running")
            try:
                await interp.run(self._generator(pkg))
            except ExceptionGroup as eg:
                contract = eg.subgroup(ContractError)
                if contract is not None:
                    raise Incomplete("run", str(leaves(contract)[0])) from None
                raise
            self.healed = True
        finally:
            await self._cleanup(lab, hosts, db, pkg, writer, interp, set_up)

    def _generator(self, pkg: Any) -> gen.Generator:
        c = self.c
        clients: gen.GenLike = self.workload.generator
        if c.rate > 0:
            clients = gen.rate(c.rate, clients)
        final = self.workload.final_generator
        faults: gen.GenLike = gen.phases(pkg.observer("start"), pkg.generator) if pkg.observe_fs else pkg.generator
        return gen.phases(
            gen.time_limit(c.time_limit, gen.any_of(gen.on_clients(clients), gen.on_nemesis(faults))),
            gen.on_nemesis(pkg.healer()),
            gen.on_nemesis(gen.once({"f": evidence.WAIT_HEALTHY})),
            *([gen.on_nemesis(gen.once({"f": evidence.RESTART_ALL}))] if c.restart_check else []),
            gen.on_clients(gen.time_limit(c.final_timeout, final) if final is not None else None),
            *([gen.on_nemesis(pkg.observer("end"))] if pkg.observe_fs else []),
        )

    async def _cleanup(self, lab: Lab, hosts: list[Host], db: Any, pkg: Any, writer: HistoryWriter,
                       interp: Interpreter | None, set_up: bool) -> None:
        """Heal whatever is still broken, collect logs, tear down: runs after success, errors and Ctrl-C.

        A Ctrl-C that arrives during cleanup does not cut it short (that left every node running):
        each step finishes, and the cancellation is raised again at the end. A second Ctrl-C
        abandons cleanup (asyncio's own rule); ``raftlab lab down`` removes what is left then.
        """
        deferred = Deferred()
        if self.healed:
            self.cleanup.append("the run had healed every fault")
        elif interp is not None:
            await deferred.finish(lambda: self._heal(lab, hosts, db, pkg, writer, interp))

        async def heal_network() -> None:
            with contextlib.suppress(Exception):
                await pkg.nemesis.teardown()
            try:
                await lab.net.heal()
                self.cleanup.append("healed the network")
            except Exception as e:
                self.cleanup.append(f"healing the network failed ({e})")

        async def teardown() -> None:
            try:
                if isinstance(db, ClusterTeardown):
                    await on_all(hosts[:1], "cluster teardown", lambda _: db.teardown_cluster(hosts))
                await on_all(hosts, "teardown", db.teardown)
                self.cleanup.append(f"tore down {len(hosts)} hosts")
            except Exception as e:
                self.cleanup.append(f"teardown failed ({e})")

        async def leftovers() -> None:
            assert isinstance(lab, StopsLeftovers)
            left = await lab.stop_leftovers()
            self.cleanup.append(f"killed {len(left)} processes teardown left running: {'; '.join(left)}"
                                if left else "nothing left running")

        await deferred.finish(heal_network)
        if set_up and self.healed:  # every fault healed: replicas must agree (raftlab/replicas.py)
            self.stage("comparing replicas")
            with contextlib.suppress(Exception):
                await deferred.finish(lambda: replicas.collect(db, hosts, self.run_dir.path))
        if set_up:
            self.stage("collecting node logs")
            await deferred.finish(lambda: _collect_logs(db, lab, hosts, self.run_dir))
            if not self.c.leave_running:
                self.stage("tearing down")
                await deferred.finish(teardown)
        if not self.c.leave_running and isinstance(lab, StopsLeftovers):
            await deferred.finish(leftovers)
        if deferred.cancelled:
            raise asyncio.CancelledError()

    async def _heal(self, lab: Lab, hosts: list[Host], db: Any, pkg: Any, writer: HistoryWriter,
                    interp: Interpreter) -> None:
        self.stage("healing every fault")
        heal = Interpreter(client=_NoClient(), nemesis=pkg.nemesis, hosts=hosts, concurrency=1, writer=writer,
                           rng=random.Random(0), origin=interp.origin, on_event=self.on_event)
        try:
            await heal.run(gen.on_nemesis(pkg.healer()))
            self.cleanup.append("ran every healer")
        except Exception as e:
            self.cleanup.append(f"healing failed ({type(e).__name__}: {e})")


class _NoClient:
    """The healing pass runs nemesis ops only; a client op there is a bug."""

    async def open(self, host: Host) -> _NoClient:
        return self

    async def invoke(self, op: Op) -> Op:
        raise ContractError(f"the healing pass was asked to run a client op: {op.describe()}")

    async def close(self) -> None:
        return None


# --- checking -------------------------------------------------------------------------------


def judge(run: store.RunDir, campaign: Campaign, workload: Any, perf: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Check the stored history; the ``checkers`` part of results.json and the merged verdict."""
    try:
        history = History.read(run.history)
    except HistoryError as e:
        return {"valid": "unknown", "reasons": [f"the history cannot be read: {e}"], "checkers": {}}
    checkers: dict[str, dict[str, Any]] = {}
    result = None
    started = time.monotonic()
    try:
        result = workload.checker.check(history, {"time_limit": campaign.check_time_limit})
        checkers["workload"] = {**result.to_dict(), "valid": result.valid, "explanation": result.explanation}
    except Exception as e:  # a checker crash is unknown, never a pass (Jepsen's check-safe)
        checkers["workload"] = {"valid": "unknown", "explanation": f"the checker crashed: {type(e).__name__}: {e}"}
    checkers["workload"]["seconds"] = round(time.monotonic() - started, 3)
    for name, (valid, explanation, data) in {
        "stats": evidence.stats(history, min_ok=campaign.min_ok),
        "faults": evidence.faults(history, perf),
        "final": evidence.final(history, workload.final_fs),
        "recovery": evidence.recovery(history),
        "restart": evidence.restart(history),
        **replicas.checks(run.path, evidence.refused_to_start(history)),
    }.items():
        checkers[name] = {"valid": valid, "explanation": explanation, **data}
    valid = merge_valid(v["valid"] for v in checkers.values())
    reasons = [f"{name}: {v['explanation']}" for name, v in checkers.items() if v["valid"] is not True]
    if result is not None:  # a timeline for every run, not only violations
        with contextlib.suppress(Exception):
            from raftlab import report

            report.write_timeline(run, history, result, perf, f"{campaign.workload} timeline")
    from raftlab.coverage import campaign as campaign_coverage

    return {"valid": valid, "reasons": reasons, "checkers": checkers, "counts": evidence.counts(history),
            "events": len(history), "coverage": campaign_coverage(history, run.path / "nodes")}


async def run_campaign(campaign: Campaign, *, on_event: Progress | None = None,
                       on_stage: Callable[[str], None] | None = None) -> Outcome:
    """Run ``campaign`` and store everything; never raises for a failed run (see Outcome.exit_code).

    Raises CampaignError for options that cannot work (before anything is created) and re-raises
    cancellation (Ctrl-C) after healing, tearing down and writing results.
    """
    from raftlab import nemesis, workloads
    from raftlab.lab import KINDS
    from raftlab.nemesis import clock_host

    if campaign.lab not in KINDS:
        raise CampaignError(f"unknown lab {campaign.lab!r} (known: {', '.join(KINDS)})")
    if campaign.lab != "ssh" and campaign.nodes_file:
        raise CampaignError("--nodes-file is only for --lab ssh")
    try:
        workload = workloads.make(campaign.workload, **campaign.workload_opts,
                                  check_time_limit=campaign.check_time_limit)
        nemesis.package(list(campaign.nemesis), db=None, rng=random.Random(0), interval=campaign.interval,
                        opts=campaign.nemesis_opts)  # unknown faults and bad options, before anything runs
        if any(f.startswith("clock") for f in campaign.nemesis):  # the lab's kind alone can refuse the host clock
            clock_host.choose(campaign.lab, clock_host.wanted(campaign.nemesis_opts))
    except (ValueError, TypeError) as e:
        raise CampaignError(str(e)) from None
    run = store.new_run(campaign.store, campaign.workload, campaign.to_dict())
    run_log = progress.RunLog(run.path / "run.log")  # every stage message, and a status line now and then
    stage, on_event = run_log.wrap(on_stage, on_event)
    runner = Runner(campaign, run, workload, on_event, stage)
    started_wall, started = time.time(), time.monotonic()
    error: Incomplete | None = None
    interrupted = False
    try:
        await runner.execute()
    except Incomplete as e:
        error = e
        if e.detail:
            (run.path / "error.txt").write_text(e.detail, encoding="utf-8")
            error = Incomplete(e.stage, f"{e.message} (traceback in {run.path / 'error.txt'})", e.host)
    except asyncio.CancelledError:
        interrupted = True
        stage("interrupted: " + ("; ".join(runner.cleanup) or "nothing had started"))
    except Exception as e:  # a bug or an unforeseen failure: named, with the traceback kept in the run
        import traceback

        (run.path / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        leaf = leaves(e)[0] if isinstance(e, BaseExceptionGroup) else e
        error = Incomplete("run", f"{type(leaf).__name__}: {leaf} (traceback in {run.path / 'error.txt'})")
    finished = time.monotonic()
    stage("checking")
    try:
        judged = await asyncio.to_thread(judge, run, campaign, runner.workload, runner.perf)
    except asyncio.CancelledError:  # Ctrl-C while checking: the cluster is already gone
        interrupted = True
        stage("interrupted while checking: " + "; ".join(runner.cleanup))
        judged = {"valid": "unknown", "reasons": ["the check was interrupted"], "checkers": {}}
    results: dict[str, Any] = {
        "seed": campaign.seed,
        "campaign": campaign.to_dict(),
        "versions": {"raftlab": __version__, "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_wall)),
        "duration_seconds": round(finished - started, 3),
        "perf": list(runner.perf),
        "timings": runner.timings,
        "cleanup": runner.cleanup,
        **judged,
    }
    if interrupted:
        results["valid"] = merge_valid(results["valid"], "unknown")
        results["reasons"] = ["interrupted before the campaign finished", *results["reasons"]]
    if error is not None:  # the checks of a run that never ran are noise: the error is the reason
        results["error"] = {"stage": error.stage, "host": error.host, "message": str(error)}
        results["reasons"] = [f"could not complete: {error}"]
    exit_code = EXIT_INCOMPLETE if error is not None else EXIT[results["valid"]]
    results["exit_code"] = exit_code
    run.write_results(results)
    run_log.note(f"verdict {results['valid']}, exit code {exit_code}" + "".join(f"\n  {r}" for r in results["reasons"]))
    from raftlab import report

    stage("writing the report")
    try:
        run_log.note(f"report: {report.write(run)}")
    except Exception as e:  # the results are stored; a report that cannot be drawn is said, not fatal
        run_log.note(f"the report could not be written: {type(e).__name__}: {e}")
    run_log.close()
    store.set_latest(campaign.store, run)
    if interrupted:
        raise asyncio.CancelledError()
    return Outcome(run=run, verdict=results["valid"], exit_code=exit_code, reasons=tuple(results["reasons"]),
                   results=results)


def load_campaign(run_dir: str | Path) -> Campaign:
    """The campaign stored in a run directory (for replay)."""
    return Campaign.from_dict(store.open_run(run_dir).read_campaign())


__all__ = ["EXIT", "Campaign", "CampaignError", "Incomplete", "Outcome", "load_campaign", "run_campaign"]
