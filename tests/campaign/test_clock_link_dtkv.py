"""Clock and link faults against the reference node: the claims the issue makes, run for real.

* Lease reads (``--read-mode lease``) assume no clock runs more than 1.29x faster than the
  leader's (docs/node.md). A leader clock at 5% of real speed, isolated by partitions, keeps
  serving reads past the majority's new election: the checker catches it (examples/lease-clock.toml,
  run until it fails, a few seeds at most). At 90% speed (within the bound) the same campaign is
  valid, and ReadIndex reads (the default) are valid under every clock fault.
* Link faults (slow, throttled, one-way, flapping, reset links) are survived by a correct node,
  took effect, and are shaded in the report.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from raftlab.nemesis.clock import LIBRARY_PATHS

from raftlab.history import NEMESIS, History, OpType
from raftlab.runner import Campaign, Outcome, run_campaign
from tests.campaign.needs import need_checker, need_raft_core

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def need_faketime() -> None:
    if not any(Path(p).exists() for p in LIBRARY_PATHS):
        pytest.skip("libfaketime is not installed (Debian: apt-get install libfaketime)")


def campaign(tmp_path: Path, lab_name: str, base_port: int, **kw: object) -> Outcome:
    need_raft_core()
    need_checker()
    opts: dict[str, object] = dict(seed=5, lab_name=lab_name, base_port=base_port, store=str(tmp_path / "store"),
                                   concurrency=8, time_limit=15.0, interval=2.0, rate=60.0, recovery_timeout=20.0,
                                   final_timeout=10.0, nodes=5)
    opts.update(kw)
    return asyncio.run(run_campaign(Campaign(**opts)))  # type: ignore[arg-type]


def applied(out: Outcome, f: str) -> list[object]:
    return [o for o in History.read(out.run.history)
            if o.process == NEMESIS and o.type is OpType.INFO and o.f == f and not o.error]


def test_lease_reads_beyond_the_drift_bound_are_caught(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_faketime()
    need_raft_core()
    need_checker()
    cli = [str(Path(sys.executable).parent / "raftlab"), "run", "--campaign", str(EXAMPLES / "lease-clock.toml"),
           "--quiet", "--lab-name", lab_name, "--base-port", str(base_port), "--store", str(tmp_path / "store")]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "not linearizable" in done.stdout and "found a violation; stopping" in done.stdout


def test_lease_reads_within_the_drift_bound_are_valid(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_faketime()
    out = campaign(tmp_path, lab_name, base_port, nemesis=("clock-slow-leader", "partition-leader"),
                   node_args=("--read-mode=lease",), nemesis_opts={"clock_slow": 0.9}, time_limit=25.0, interval=3.0)
    assert out.exit_code == 0, out.reasons
    assert applied(out, "clock-skew"), "no clock fault took effect"


def test_index_reads_are_valid_under_every_clock_fault(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_faketime()
    out = campaign(tmp_path, lab_name, base_port, nemesis=("clock", "partition"), time_limit=20.0,
                   nemesis_opts={"clock_slow": 0.05, "clock_fast": 5.0, "clock_offset": 30.0})
    assert out.exit_code == 0, out.reasons
    modes = {o.value["mode"] for o in applied(out, "clock-skew")}  # type: ignore[attr-defined]
    assert len(modes) >= 2, modes


def test_link_faults_are_survived_took_effect_and_are_shaded(tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = campaign(tmp_path, lab_name, base_port, nemesis=("link", "partition"), time_limit=25.0, interval=1.5)
    assert out.exit_code == 0, out.reasons
    kinds = {o.value["kind"] for o in applied(out, "link-shape")}  # type: ignore[attr-defined]
    assert len(kinds) >= 2, kinds
    assert out.results["checkers"]["faults"]["by_fault"]["link"]["took_effect"] >= 2
    report = out.run.report.read_text()
    assert "&nbsp;link&nbsp;" in report and "#E9C8A0" in report  # the legend and the shaded intervals
