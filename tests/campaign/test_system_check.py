"""``raftlab system check``: the toy, dtkv and etcd systems pass it; a broken module fails it,
named by the capability it breaks. Real processes on a real local lab."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raftlab.systems.check import check_module
from tests.campaign.needs import need_raft_core

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "raftlab")


def test_the_toy_system_passes_every_check(lab_name: str, base_port: int) -> None:
    r = subprocess.run([CLI, "system", "check", "toysys", "--base-port", str(base_port)], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    for capability in ("Killable.kill", "Killable.start (on a running node)", "Pausable.pause/resume",
                       "HasPrimaries.primaries", "HasLogFiles.log_files", "DB.teardown"):
        assert f"ok   {capability}:" in r.stdout


def test_a_kill_that_leaves_the_process_running_is_named(lab_name: str, base_port: int, tmp_path: Path) -> None:
    from raftlab.lab.local import processes_under

    r = subprocess.run([CLI, "system", "check", "brokensys", "--base-port", str(base_port)], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL Killable.kill: kill(n1) returned while its processes" in r.stdout
    assert "checks failed: Killable.kill" in r.stdout  # the broken capability first
    assert "ok   Pausable.pause/resume" in r.stdout  # the rest is still checked
    assert not processes_under(tmp_path / "labs")  # the check removes what the module left running


def test_a_module_that_cannot_load_is_named(lab_name: str) -> None:
    r = subprocess.run([CLI, "system", "check", "no_such_module_here"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "FAIL load: cannot import system module 'no_such_module_here'" in r.stdout


def test_dtkv_passes_every_check(lab_name: str, base_port: int) -> None:
    need_raft_core()
    findings = asyncio.run(check_module("dtkv", base_port=base_port))
    assert all(f.ok for f in findings), [f.describe() for f in findings if not f.ok]
    assert len(findings) == 17
    said = {f.capability: f.detail for f in findings}
    assert "Reconfigurable" in said["load"] and "ShowsMembership" in said["load"]
    assert said["Reconfigurable.members"] == "on a fresh cluster: n1, n2, n3"
    assert said["ShowsMembership.membership"].startswith("voters n1, n2, n3, leader n")
    for step in ("Reconfigurable.set_members (shrink)", "Reconfigurable.set_members (grow)", "Reconfigurable.wipe"):
        assert step in said, said


def test_a_membership_change_that_does_nothing_is_named(lab_name: str, base_port: int) -> None:
    need_raft_core()
    r = subprocess.run([CLI, "system", "check", "brokenmembers", "--base-port", str(base_port)], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"FAIL Reconfigurable.set_members \(shrink\): after set_members\((n\d), (n\d)\) returned, "
                     r"members\(\) returned \['n1', 'n2', 'n3'\], expected the voters \1, \2\n", r.stdout), r.stdout
    assert "ok   Reconfigurable.members: on a fresh cluster" in r.stdout
    assert "Reconfigurable.set_members (grow)" not in r.stdout  # what depends on the shrink is skipped
    assert "checks failed: Reconfigurable.set_members (shrink)" in r.stdout


@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs the etcd binary (Debian: etcd-server)")
def test_etcd_passes_every_check(lab_name: str, base_port: int) -> None:
    from tests.lab.test_local_addresses import _userns_works

    if _userns_works():
        pytest.skip(_userns_works())
    findings = asyncio.run(check_module("etcd", base_port=base_port))
    assert all(f.ok for f in findings), [f.describe() for f in findings if not f.ok]
    assert len(findings) == 12
