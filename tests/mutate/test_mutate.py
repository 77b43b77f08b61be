"""raftlab mutate: the catalogue still applies, isolation holds, and known mutants are caught.

The catalogue is exact-text patches, so a refactor of impl/ could silently turn a mutant into the
original program; the first test makes that loud. The isolation tests show that the patched copy,
not the working tree, is what a subprocess and a campaign's node processes import, and that the
working tree is never written. The last tests run the real command on mutants the simulator is
known to catch within seconds (a minority election win, a commit one acknowledgement short).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from raftlab import mutate as mut
from raftlab.mutants import CATALOGUE, LAYERS, Mutant, PatchError, by_id, patch

ROOT = Path(__file__).resolve().parents[2]


def source_of(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).read_text(encoding="utf-8")


@pytest.mark.parametrize("mutant", CATALOGUE, ids=lambda m: m.id)
def test_every_mutant_applies_to_the_current_source_and_compiles(mutant: Mutant) -> None:
    patched = patch(source_of(mutant.module), mutant)
    assert patched != source_of(mutant.module)
    compile(patched, mutant.module, "exec")


def test_the_catalogue_spans_every_layer_with_unique_ids() -> None:
    assert len(CATALOGUE) >= 25
    assert len({m.id for m in CATALOGUE}) == len(CATALOGUE)
    assert {m.layer for m in CATALOGUE} == set(LAYERS)
    assert all(m.description and m.rule for m in CATALOGUE)


def test_a_patch_that_no_longer_matches_is_refused_by_name() -> None:
    m = Mutant(id="gone", layer="raft", module="x", find="not in the source", replace="x",
               description="d", rule="r")
    with pytest.raises(PatchError, match="gone"):
        patch("some source", m)
    with pytest.raises(ValueError, match="unknown mutant nope"):
        by_id(["nope"])


def tree_digest() -> str:
    h = hashlib.sha256()
    for folder in ("impl", "raftlab", "checker", "nemesis", "workloads"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()


def test_a_subprocess_imports_the_mutant_and_the_working_tree_is_untouched() -> None:
    mutant = by_id(["commit-quorum-short"])[0]
    before = tree_digest()
    with mut.patched_tree(mutant) as root:
        mut.check_isolation(root)
        probe = ("from raftlab.impl.raft.quorum import MajorityConfig; "
                 "print(MajorityConfig((1, 2, 3, 4, 5)).committed_index({1: 9, 2: 9, 3: 0, 4: 0, 5: 0}))")
        out = subprocess.run([sys.executable, "-c", probe], cwd=root, env=mut.tree_env(root),
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "9"  # two of five acknowledgements "commit": the mutant is live
    assert not root.exists()
    assert tree_digest() == before
    from raftlab.impl.raft.quorum import MajorityConfig  # and this process still runs the original

    assert MajorityConfig((1, 2, 3, 4, 5)).committed_index({1: 9, 2: 9, 3: 0, 4: 0, 5: 0}) == 0


def test_mutate_catches_known_core_mutants_with_the_simulator_in_seconds(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "raftlab.cli", "mutate", "--method", "sim", "--sim-budget", "20",
                           "--only", "vote-quorum-minority", "--only", "commit-quorum-short",
                           "--store", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert results["score"]["sim"] == {"caught": 2, "of": 2}, proc.stdout
    for row in results["mutants"]:
        attempt = row["attempts"]["sim"]
        assert attempt["outcome"] == "caught" and "raftlab sim --seed" in attempt["replay"]
        assert attempt["seed"] == 1
    assert "mutation score: sim 2/2" in proc.stdout


def _free_block(start: int, size: int) -> int:
    for base in range(start, start + 400, size):
        ok = True
        for p in range(base, base + size):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    pytest.skip(f"no free block of {size} ports from {start}")


@pytest.mark.slow
def test_the_campaigns_node_processes_run_the_patched_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutant that makes every node refuse to start: the campaign cannot even begin, and says so."""
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))
    broken = Mutant(id="wal-refuses", layer="storage", module="raftlab.impl.storage.wal",
                    find="        self._recover(node_id)\n",
                    replace="        raise StorageError('MUTANT-MARKER: refusing to recover')\n",
                    description="every node fails at start", rule="nodes start")
    plan = mut.Plan(methods=("campaign",), campaign_args="--workload register --time-limit 2 --nodes 3",
                    base_port=_free_block(19600, 10), store=str(tmp_path / "store"), labs_dir=str(tmp_path / "labs"))
    (attempt,) = mut.mutate_one(broken, plan)
    assert attempt.outcome == "error", attempt
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "store").rglob("*.log"))
    assert "MUTANT-MARKER" in logs or "MUTANT-MARKER" in attempt.detail


def test_list_prints_the_catalogue_and_an_unknown_id_is_bad_usage() -> None:
    cli = [sys.executable, "-m", "raftlab.cli", "mutate"]
    listed = subprocess.run([*cli, "--list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and f"{len(CATALOGUE)} mutants" in listed.stdout
    assert all(m.id in listed.stdout for m in CATALOGUE)
    raft = subprocess.run([*cli, "--list", "--layer", "raft"], capture_output=True, text=True, timeout=60)
    assert f"{sum(m.layer == 'raft' for m in CATALOGUE)} mutants" in raft.stdout and "wal-" not in raft.stdout
    bad = subprocess.run([*cli, "--only", "no-such-bug"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown mutant no-such-bug" in bad.stderr


@pytest.mark.slow
def test_a_sigterm_to_mutate_stops_its_campaign_as_ctrl_c_would(tmp_path: Path) -> None:
    """``kill`` of ``raftlab mutate`` mid-campaign: the SIGTERM is passed on to the campaign,
    which heals and tears its cluster down (it was left running: a SIGTERM reaches only the
    driver, whose death then broke the campaign's stderr pipe). Passed on as SIGTERM, not
    SIGINT: under CI, started in the background, every process inherits SIGINT ignored."""
    from raftlab.lab.local import processes_under

    labs = tmp_path / "labs"
    trees = set(Path(tempfile.gettempdir()).glob("raftlab-mutant-read-one-ack-*"))
    cli = [sys.executable, "-m", "raftlab.cli", "mutate", "--only", "read-one-ack", "--method", "campaign",
           "--campaign", "--workload register --time-limit 60 --nodes 3", "--base-port", str(_free_block(19620, 10)),
           "--store", str(tmp_path / "store")]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAFTLAB_LABS_DIR": str(labs)})
    deadline = time.monotonic() + 90
    while len(processes_under(labs)) < 3 if labs.exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    time.sleep(2)  # into the run
    proc.terminate()
    out = proc.communicate(timeout=150)[0]
    assert proc.returncode != 0, out
    assert not processes_under(labs), out
    assert set(Path(tempfile.gettempdir()).glob("raftlab-mutant-read-one-ack-*")) <= trees  # the patched copy went too
    runs = list((tmp_path / "store").rglob("results.json"))
    assert runs and json.loads(runs[0].read_text())["reasons"][0].startswith("interrupted"), out
