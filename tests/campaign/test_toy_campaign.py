"""Whole campaigns against a small user system (tests/campaign/toysys.py) on the local lab.

These check the runner's promises without the Raft node: faults really happen and are recorded,
the history, results and report are stored, an empty run is unknown, a broken system is caught,
a node that cannot start is named, and the CLI's exit codes, JUnit and replay work.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from raftlab.history import NEMESIS, History, OpType
from raftlab.runner import Campaign, Outcome, run_campaign
from tests.campaign.needs import need_checker
from tests.conftest import ctrl_c_reaches

pytestmark = pytest.mark.slow


def campaign(tmp_path: Path, lab_name: str, base_port: int, **kw: object) -> Campaign:
    opts: dict[str, object] = dict(seed=11, system="toysys", lab_name=lab_name, base_port=base_port,
                                   store=str(tmp_path / "store"), concurrency=4, time_limit=4.0, interval=0.6,
                                   rate=80.0, recovery_timeout=10.0, final_timeout=5.0, op_timeout=0.5)
    opts.update(kw)
    return Campaign(**opts)  # type: ignore[arg-type]


def run(c: Campaign) -> Outcome:
    return asyncio.run(run_campaign(c))


def test_a_durable_single_copy_passes_and_every_fault_is_recorded(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_checker()
    out = run(campaign(tmp_path, lab_name, base_port, nemesis=("kill", "pause")))
    assert out.exit_code == 0, out.reasons
    assert out.verdict is True
    history = History.read(out.run.history)
    faults = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO]
    started = [o for o in faults if o.f in ("kill", "pause") and not o.error]
    assert started and all(o.value["done"] for o in started)  # a host was really hit
    assert faults[-2].f == "wait-healthy" or faults[-1].f == "wait-healthy"
    results = json.loads(out.run.results.read_text())
    assert results["seed"] == 11 and results["checkers"]["faults"]["valid"] is True
    assert results["checkers"]["recovery"]["healthy"] is True
    assert (out.run.path / "nodes" / "n1" / "toy.out").exists()
    report = out.run.report.read_text()
    assert "<svg" in report and "valid" in report and "kill" in report
    assert (tmp_path / "store" / "latest").resolve() == out.run.path


def test_independent_copies_are_caught_as_a_violation(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_checker()
    out = run(campaign(tmp_path, lab_name, base_port, system_opts={"mode": "split"}, workload_opts={"keys": 1}))
    assert out.exit_code == 1 and out.verdict is False
    assert any(r.startswith("workload:") for r in out.reasons)
    assert "INVALID" in out.run.report.read_text()


def test_a_run_whose_fault_never_happened_is_unknown(tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = run(campaign(tmp_path, lab_name, base_port, nemesis=("kill",), interval=60.0, time_limit=2.0))
    assert out.exit_code == 3 and out.verdict == "unknown"
    assert any("none was injected" in r for r in out.reasons)


def test_a_node_that_cannot_start_is_named(tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = run(campaign(tmp_path, lab_name, base_port, system="dtkv", node_args=("--no-such-flag",)))
    assert out.exit_code == 2
    error = out.results["error"]
    assert error["stage"] == "setup" and error["host"] == "n1"
    assert "No such option" in error["message"]


def faults_of(run_dir: Path) -> list[tuple[str, object]]:
    return [(o.f, o.value.get("targets")) for o in History.read(run_dir / "history.jsonl")
            if o.process == NEMESIS and o.type is OpType.INFO and o.f != "wait-healthy"]


def test_cli_exit_code_junit_report_and_replay(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_checker()
    cli = [str(Path(sys.executable).parent / "raftlab")]
    junit = tmp_path / "junit.xml"
    args = ["run", "--system", "toysys", "--system-opt", "mode=split", "--lab-name", lab_name, "--base-port",
            str(base_port), "--store", str(tmp_path / "store"), "--time-limit", "2", "--concurrency", "3",
            "--seed", "42", "--workload-opt", "keys=1", "--junit", str(junit), "--quiet",
            "--nemesis", "kill,pause", "--interval", "0.4"]
    first = subprocess.run(cli + args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "seed 42" in first.stdout and "verdict: INVALID" in first.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "1" and suite.find("testcase[@name='workload']/failure") is not None
    latest = tmp_path / "store" / "latest"
    run_dir = latest.resolve()
    run_dir.joinpath("report.html").unlink()
    rebuilt = subprocess.run([*cli, "report", str(latest)], capture_output=True, text=True, timeout=60)
    assert rebuilt.returncode == 0 and run_dir.joinpath("report.html").exists()
    again = subprocess.run([*cli, "replay", str(run_dir), "--quiet"], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
    assert again.returncode == 1 and "seed 42" in again.stdout
    replayed = latest.resolve()
    assert replayed != run_dir
    assert json.loads((replayed / "campaign.json").read_text()) == json.loads((run_dir / "campaign.json").read_text())
    first_faults, replayed_faults = faults_of(run_dir), faults_of(replayed)
    n = min(len(first_faults), len(replayed_faults))
    assert n >= 2 and first_faults[:n] == replayed_faults[:n]  # same fault choices from the same seed
    bad = subprocess.run([*cli, "run", "--workload", "bank", "--quiet"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert bad.returncode == 2 and "unknown workload 'bank'" in bad.stderr


def test_ctrl_c_heals_tears_down_and_writes_results(tmp_path: Path, lab_name: str, base_port: int) -> None:
    cli = [str(Path(sys.executable).parent / "raftlab"), "run", "--system", "toysys", "--nemesis", "kill,pause",
           "--interval", "0.3", "--time-limit", "60", "--lab-name", lab_name, "--base-port", str(base_port),
           "--store", str(tmp_path / "store"), "--quiet"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            preexec_fn=ctrl_c_reaches)
    for _ in range(200):  # wait until the workload runs
        history = list((tmp_path / "store").glob("register/*/history.jsonl"))
        if history and history[0].stat().st_size > 2000:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    run_dir = (tmp_path / "store" / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] == "unknown" and results["reasons"][0].startswith("interrupted")
    for pid_file in (tmp_path / "labs").rglob("toy.pid"):
        pytest.fail(f"{pid_file} left behind: teardown did not run")
    assert "report.html" in {p.name for p in run_dir.iterdir()}
