"""`raftlab lab up|status|down` on the local lab, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftlab.cli import cli


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))
    return tmp_path / "labs"


def test_up_status_down(tmp_path: Path) -> None:
    run = CliRunner().invoke
    r = run(cli, ["lab", "up", "--nodes", "2", "--name", "c1", "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert "lab 'c1' (local) is up: n1, n2" in r.output
    assert run(cli, ["lab", "up", "--name", "c1"]).output.startswith("lab 'c1' (local) is already up")
    r = run(cli, ["lab", "status", "--name", "c1", "--json"])
    info = json.loads(r.output)
    assert info["kind"] == "local" and set(info["hosts"]) == {"n1", "n2"} and info["hosts"]["n1"]["exists"]
    r = run(cli, ["lab", "down", "--name", "c1"])
    assert r.exit_code == 0 and not (tmp_path / "w").exists()
    r = run(cli, ["lab", "status", "--name", "c1"])
    assert r.exit_code == 3 and "no lab named 'c1'" in r.output


def test_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["lab", "up", "--lab", "ssh", "--name", "s", "--nodes-file", str(tmp_path / "none")])
    assert r.exit_code == 2 and "cannot read nodes file" in r.output
    r = CliRunner().invoke(cli, ["lab", "up", "--opt", "novalue"])
    assert r.exit_code == 2 and "--opt takes KEY=VALUE" in r.output
