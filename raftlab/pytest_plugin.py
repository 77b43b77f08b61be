"""raftlab as a pytest plugin: run a campaign inside a test and get the verdict as an assertion.

Installed with raftlab (the ``pytest11`` entry point ``raftlab`` in pyproject.toml), so a user's
test suite needs no conftest. Fixtures:

* ``raftlab_lab``: a fresh local lab (name and state directory under the test's tmp dir),
  brought down after the test, with a free block of ports;
* ``raftlab_cluster``: the system ``raftlab_system`` names (a fixture to override; default
  ``dtkv``) set up on that lab's hosts and healthy, torn down after the test; for tests that talk
  to the cluster themselves (``cluster.run(coroutine)`` runs on the cluster's own event loop);
* ``raftlab_campaign``: a function ``campaign(**options)`` that runs a whole campaign on that lab
  (``raftlab.runner.Campaign`` fields; ``nemesis`` may be ``"kill,pause"``) and returns a
  ``CampaignResult``. ``assert result.passed`` fails naming the verdict and the report; a failed
  test that ran campaigns also gets a "raftlab campaigns" section in its failure output with each
  campaign's verdict, reasons, report path and replay command (pytest shortens long assertion
  messages, a section it prints whole); ``result.expect_valid()`` raises that text itself.

Runs are stored under the test's tmp dir, or under ``--raftlab-store DIR`` (keep them as CI
artefacts). Every campaign has a seed: the one given, else a new one, printed and in the result.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the harness is imported only when a fixture is used: pytest starts fast anywhere
    from raftlab.runner import Outcome

_RESULTS = pytest.StashKey[list["CampaignResult"]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran campaigns gets a "raftlab campaigns" section: verdicts, reports, replays."""
    report = yield
    results = item.stash.get(_RESULTS, [])
    if results and report.when == "call" and report.failed:
        report.sections.append(("raftlab campaigns", "\n\n".join(r.describe() for r in results)))
    return report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftlab")
    group.addoption("--raftlab-store", default=None, metavar="DIR",
                    help="Store raftlab campaign runs here (default: each test's tmp dir).")


@dataclass(frozen=True, slots=True, kw_only=True)
class LabSpec:
    """A local lab for one test: its name, where its state lives, and ports nobody uses."""

    name: str
    labs_dir: Path
    base_port: int
    nodes: int = 5


@pytest.fixture
def raftlab_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabSpec]:
    from raftlab.lab import lab_down
    from raftlab.lab.ports import PortBlock

    labs = tmp_path / "labs"
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(labs))
    ports = PortBlock.reserve(40)  # held for the test, so parallel tests and runs never share ports
    spec = LabSpec(name=f"pt{os.getpid()}-{tmp_path.name[-10:]}", labs_dir=labs, base_port=ports.first)
    try:
        yield spec
    finally:
        asyncio.run(lab_down(spec.name))
        ports.release()


@pytest.fixture
def raftlab_system() -> str:
    """The system under test for ``raftlab_cluster``: override this fixture in your conftest."""
    return "dtkv"


@dataclass(slots=True, kw_only=True)
class Cluster:
    """A system set up on a lab; ``run`` executes a coroutine on the cluster's event loop."""

    lab: Any
    hosts: list[str]
    system: Any
    runner: asyncio.Runner = field(repr=False)

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)


@pytest.fixture
def raftlab_cluster(raftlab_lab: LabSpec, raftlab_system: str) -> Iterator[Cluster]:
    from raftlab import systems
    from raftlab.health import probe_health
    from raftlab.lab import open_lab

    runner = asyncio.Runner()
    lab = runner.run(open_lab("local", name=raftlab_lab.name, nodes=raftlab_lab.nodes, seed=0))
    hosts = list(lab.hosts)[: raftlab_lab.nodes]
    system = systems.load(raftlab_system, lab, systems.SystemOptions(base_port=raftlab_lab.base_port))
    cluster = Cluster(lab=lab, hosts=hosts, system=system, runner=runner)
    try:
        for host in hosts:
            runner.run(system.db.setup(host))
        from raftlab.workloads import make

        healthy, _, problem = runner.run(probe_health(system, hosts, make("register").probe, 30.0))
        if not healthy:
            raise RuntimeError(f"{raftlab_system} was not serving within 30s: {problem}")
        yield cluster
    finally:
        for host in hosts:
            try:
                runner.run(system.db.teardown(host))
            except Exception as e:  # keep tearing the others down; say which one failed
                print(f"raftlab_cluster: teardown of {host} failed: {e}")
        runner.run(lab.close())
        runner.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignResult:
    """A finished campaign: ``passed`` is True only for a valid verdict (exit code 0)."""

    outcome: Outcome

    @property
    def verdict(self) -> bool | str | None:
        return self.outcome.verdict

    @property
    def passed(self) -> bool:
        return self.outcome.exit_code == 0 and self.outcome.verdict is True

    @property
    def report(self) -> Path:
        return self.outcome.run.report

    @property
    def replay(self) -> str:
        return f"raftlab replay {self.outcome.run.path}"

    @property
    def seed(self) -> int:
        return int(self.outcome.results.get("seed", -1))

    def describe(self) -> str:
        word = {True: "valid", False: "INVALID", "unknown": "unknown"}.get(self.verdict, "no verdict")  # type: ignore[arg-type]
        reasons = "".join(f"\n  - {r}" for r in self.outcome.reasons)
        return (f"raftlab campaign {word} (exit {self.outcome.exit_code}, seed {self.seed}){reasons}\n"
                f"report: {self.report}\nreplay: {self.replay}")

    def __repr__(self) -> str:
        word = {True: "valid", False: "INVALID", "unknown": "unknown"}.get(self.verdict, "no verdict")  # type: ignore[arg-type]
        return f"<raftlab campaign {word}, seed {self.seed}, report {self.report}>"

    def expect_valid(self) -> None:
        if not self.passed:
            raise AssertionError(self.describe())


@pytest.fixture
def raftlab_campaign(raftlab_lab: LabSpec, tmp_path: Path,
                     request: pytest.FixtureRequest) -> Callable[..., CampaignResult]:
    from raftlab.rng import new_seed
    from raftlab.runner import Campaign, run_campaign

    store = request.config.getoption("--raftlab-store") or str(tmp_path / "store")

    def campaign(**options: Any) -> CampaignResult:
        if isinstance(options.get("nemesis"), str):
            options["nemesis"] = tuple(f for f in options["nemesis"].split(",") if f and f != "none")
        for name in ("nemesis", "node_args"):
            if name in options:
                options[name] = tuple(options[name])
        options = {"seed": new_seed(), "lab_name": raftlab_lab.name, "base_port": raftlab_lab.base_port,
                   "store": store, **options}
        print(f"raftlab campaign seed {options['seed']}")
        result = CampaignResult(outcome=asyncio.run(run_campaign(Campaign(**options))))
        request.node.stash.setdefault(_RESULTS, []).append(result)
        return result

    return campaign
