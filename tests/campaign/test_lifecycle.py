"""A campaign's lifecycle against real processes: Ctrl-C at any stage leaves nothing running and
says what it stopped, and two campaigns on one lab never corrupt each other.

Every check looks at the machine itself: the processes whose working directory is in the lab
(``raftlab.lab.local.processes_under``), not what the runner says it did.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftlab.lab.local import processes_under
from tests.campaign.needs import need_checker
from tests.conftest import ctrl_c_reaches

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "raftlab")


def toy_run(tmp_path: Path, lab_name: str, base_port: int, *extra: str) -> list[str]:
    return [CLI, "run", "--system", "toysys", "--lab-name", lab_name, "--base-port", str(base_port),
            "--store", str(tmp_path / "store"), "--concurrency", "3", "--seed", "7", *extra]


def _history_has(tmp_path: Path, text: str) -> bool:
    return any(text in h.read_text() for h in (tmp_path / "store").glob("register/*/history.jsonl"))


def _wait(proc: subprocess.Popen[str], until: object, what: str) -> None:
    deadline = time.monotonic() + 60
    while not until():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            proc.kill()
            pytest.fail(f"the run never reached {what}: {out}")
        time.sleep(0.02)


@pytest.mark.parametrize("stage", ["setup", "run", "heal"])
def test_ctrl_c_at_any_stage_leaves_nothing_running(stage: str, tmp_path: Path, lab_name: str, base_port: int) -> None:
    args = toy_run(tmp_path, lab_name, base_port, "--nemesis", "kill,pause", "--interval", "0.3",
                   "--time-limit", "2" if stage == "heal" else "60", "--system-opt", "start-delay=3")
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                preexec_fn=ctrl_c_reaches)
        if stage == "setup":  # the servers are being started (each sleeps 3 s first)
            _wait(proc, lambda: any((tmp_path / "labs").rglob("toy.pid")), "setup")
        elif stage == "run":
            _wait(proc, lambda: _history_has(tmp_path, '"f":"pause"'), "a fault")
        else:  # the final phase: the healers run, then the cluster must prove it recovered
            _wait(proc, lambda: _history_has(tmp_path, '"f":"wait-healthy"'), "healing")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    text = log.read_text()
    assert proc.returncode == 130, text
    left = processes_under(tmp_path / "labs")
    assert not left, f"Ctrl-C during {stage} left {left}"
    said = next(line for line in text.splitlines() if "interrupted:" in line)
    assert "tore down 5 hosts" in said and ("nothing left running" in said or "killed" in said), said
    results = json.loads(next((tmp_path / "store").glob("register/*/results.json")).read_text())
    assert results["reasons"][0].startswith("interrupted") and results["cleanup"]


def test_two_campaigns_on_one_lab_both_get_their_true_verdicts(tmp_path: Path, lab_name: str, base_port: int) -> None:
    """The second waits for the first (it says so) instead of tearing its nodes down."""
    need_checker()
    common = ("--nemesis", "kill", "--interval", "0.5", "--time-limit", "3", "--quiet")
    valid = subprocess.Popen(toy_run(tmp_path, lab_name, base_port, *common), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    invalid = subprocess.Popen(toy_run(tmp_path, lab_name, base_port + 20, *common, "--system-opt", "mode=split",
                                       "--workload-opt", "keys=1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    out_valid, out_invalid = valid.communicate(timeout=180)[0], invalid.communicate(timeout=180)[0]
    assert valid.returncode == 0 and "verdict: valid" in out_valid, out_valid
    assert invalid.returncode == 1 and "verdict: INVALID" in out_invalid, out_invalid
    assert "is in use" in out_valid + out_invalid  # one of them waited, and said why
    assert not processes_under(tmp_path / "labs")


def test_two_campaigns_on_two_labs_reserve_different_ports(tmp_path: Path, lab_name: str) -> None:
    """Without --base-port each run reserves its own block (raftlab/lab/ports.py): both are valid."""
    import asyncio

    from raftlab.lab import lab_down

    need_checker()
    other = lab_name + "b"
    common = ("--system", "toysys", "--store", str(tmp_path / "store"), "--concurrency", "3", "--seed", "7",
              "--nemesis", "kill", "--interval", "0.5", "--time-limit", "3", "--quiet")
    try:
        runs = [subprocess.Popen([CLI, "run", "--lab-name", name, *common], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, cwd=tmp_path) for name in (lab_name, other)]
        outs = [r.communicate(timeout=180)[0] for r in runs]
    finally:
        asyncio.run(lab_down(other))
    for r, out in zip(runs, outs, strict=True):
        assert r.returncode == 0 and "verdict: valid" in out, out
    logs = [p.read_text() for p in (tmp_path / "store").glob("register/*/run.log")]
    blocks = {line.split("reserved ports ")[1].split()[0] for log in logs for line in log.splitlines()
              if "reserved ports " in line}
    assert len(logs) == 2 and len(blocks) == 2, logs  # two different blocks
    assert not processes_under(tmp_path / "labs")


def test_ctrl_c_while_checking_stores_an_interrupted_run_and_leaves_nothing_running(
        tmp_path: Path, lab_name: str, base_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fourth stage: the cluster is torn down before the check, so a Ctrl-C there only stops
    the verdict, which is stored as unknown, saying so (the check is held until cancelled)."""
    import asyncio
    import dataclasses
    import threading

    from raftlab import workloads
    from raftlab.runner import Campaign, run_campaign

    checking, release = threading.Event(), threading.Event()

    class HeldChecker:
        def check(self, history: object, opts: object) -> object:
            checking.set()
            release.wait(60)
            raise RuntimeError("released")

    def held(**opts: object) -> workloads.Workload:
        return dataclasses.replace(workloads.WORKLOADS["register"](**opts), checker=HeldChecker())

    monkeypatch.setitem(workloads.WORKLOADS, "held", held)
    c = Campaign(seed=3, system="toysys", workload="held", lab_name=lab_name, base_port=base_port,
                 store=str(tmp_path / "store"), concurrency=3, time_limit=2.0, nemesis=("kill",), interval=0.5,
                 recovery_timeout=10.0, final_timeout=5.0, op_timeout=0.5)

    async def interrupt_while_checking() -> None:
        task = asyncio.ensure_future(run_campaign(c))
        while not checking.is_set():
            assert not task.done(), task
            await asyncio.sleep(0.02)
        task.cancel()  # what Ctrl-C does to the running campaign
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()  # asyncio.run waits for the checker's thread before it returns

    try:
        asyncio.run(interrupt_while_checking())
    finally:
        release.set()
    results = json.loads(next((tmp_path / "store").glob("held/*/results.json")).read_text())
    assert results["valid"] == "unknown" and "the check was interrupted" in results["reasons"], results["reasons"]
    assert "tore down 5 hosts" in results["cleanup"], results["cleanup"]
    assert "interrupted while checking" in next((tmp_path / "store").glob("held/*/run.log")).read_text()
    assert not processes_under(tmp_path / "labs")


def test_a_bug_in_the_client_stops_the_run_at_once_naming_it(tmp_path: Path, lab_name: str, base_port: int) -> None:
    started = time.monotonic()
    r = subprocess.run([CLI, "run", "--system", "badopen", "--lab-name", lab_name, "--base-port", str(base_port),
                        "--store", str(tmp_path / "store"), "--time-limit", "5", "--recovery-timeout", "60",
                        "--quiet"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "startup: the client's open('n" in r.stdout and "raised AttributeError" in r.stdout, r.stdout
    assert time.monotonic() - started < 30  # not after the 60 s recovery timeout
    error_txt = next((tmp_path / "store").glob("register/*/error.txt")).read_text()
    assert "no_such_attribute" in error_txt and "Traceback" in error_txt
    assert not processes_under(tmp_path / "labs")


def test_a_failed_lab_up_leaves_no_record_and_lab_down_refuses_a_lab_in_use(lab_name: str) -> None:
    import asyncio

    from raftlab.lab import LabError, LabState, lab_down, lab_up
    from raftlab.lab.lock import LabBusy, LabLock

    with pytest.raises(LabError, match="net must be one of"):
        asyncio.run(lab_up("local", name=lab_name, net="bogus"))
    assert LabState.load(lab_name) is None  # cleaned up: `lab up` will not say "already up"
    asyncio.run(lab_up("local", name=lab_name))
    lock = LabLock(lab_name, "a test campaign")
    assert lock.try_acquire()
    try:
        with pytest.raises(LabBusy, match=r"in use .*a test campaign"):
            asyncio.run(lab_down(lab_name))
        assert not LabLock(lab_name, "a second campaign").try_acquire()
    finally:
        lock.release()
    assert asyncio.run(lab_down(lab_name)) is not None


def test_a_reader_gone_from_stderr_never_stops_the_heal_or_the_teardown(tmp_path: Path, lab_name: str,
                                                                        base_port: int) -> None:
    """The parent of a ``raftlab mutate`` campaign killed: the campaign's stderr is a closed pipe.
    Its progress lines raised BrokenPipeError in the healing stage and left five nodes running;
    now they are muted and the run heals, tears down, checks and gives its verdict."""
    need_checker()
    args = toy_run(tmp_path, lab_name, base_port, "--nemesis", "kill,pause", "--interval", "0.3",
                   "--time-limit", "2")
    with (tmp_path / "out.txt").open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        assert proc.stderr is not None
        proc.stderr.close()  # nobody reads the progress lines any more
        proc.wait(timeout=120)
    text = (tmp_path / "out.txt").read_text()
    assert "verdict: valid" in text, text
    assert not processes_under(tmp_path / "labs")
    results = json.loads(next((tmp_path / "store").glob("register/*/results.json")).read_text())
    assert results["valid"] is True and results["checkers"]["recovery"]["healthy"] is True
