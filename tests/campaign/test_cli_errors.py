"""Bad flags give one clear error and exit 2 before anything is created; never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    (["--workload", "bank"], "unknown workload 'bank'"),
    (["--lab", "moon"], "unknown lab 'moon'"),
    (["--nemesis", "meteor"], "unknown fault 'meteor'"),
    (["--seed", "-1"], "non-negative"),
    (["--time-limit", "0"], "--time-limit"),
    (["--nodes-file", "x.txt"], "only for --lab ssh"),
    (["--workload-opt", "keys"], "is not KEY=VALUE"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_flags(tmp_path: Path, args: list[str], message: str) -> None:
    cli = [str(Path(sys.executable).parent / "raftlab"), "run", "--quiet", "--store", str(tmp_path / "store")]
    done = subprocess.run(cli + args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()


def test_replay_of_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    cli = [str(Path(sys.executable).parent / "raftlab"), "replay", str(tmp_path)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no campaign.json" in done.stderr
