"""Off a terminal, ``raftlab run`` says where it is: a line per stage and a status line every 10 s,
and ``run.log`` in the run directory keeps every stage message (raftlab.progress)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.campaign.needs import need_checker

pytestmark = pytest.mark.slow


def test_a_ci_log_shows_stages_and_status_and_run_log_keeps_them(tmp_path: Path, lab_name: str,
                                                                   base_port: int) -> None:
    need_checker()
    cli = [str(Path(sys.executable).parent / "raftlab"), "run", "--system", "toysys", "--lab-name", lab_name,
           "--base-port", str(base_port), "--store", str(tmp_path / "store"), "--time-limit", "11",
           "--concurrency", "3", "--rate", "40", "--seed", "8", "--nemesis", "pause", "--interval", "2"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=180, cwd=tmp_path)  # stderr is a pipe
    assert done.returncode == 0, done.stdout + done.stderr
    for stage in ("opening the local lab", "running", "checking"):
        assert re.search(rf"^\[\s*[\d.]+s\] {stage}", done.stderr, re.M), done.stderr
    status = re.findall(r"status: running; ops (\d+): (\d+) ok", done.stderr)
    assert status and int(status[0][0]) > 0, done.stderr  # at 10 s, with the ops so far
    log = (tmp_path / "store" / "latest" / "run.log").read_text()
    stages = re.findall(r"^\[\s*[\d.]+s\] (.*)$", log, re.M)
    assert stages[0] == "opening the local lab" and "running" in stages and "checking" in stages
    assert "verdict True, exit code 0" in stages and any(s.startswith("report: ") for s in stages)
    assert any(s.startswith("status: running; ops") for s in stages)
