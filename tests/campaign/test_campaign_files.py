"""Campaign files: TOML resolved into campaigns, matrices and repeats, and runs that replay them.

The pure part (parsing, the matrix, seeds, the summary) is checked as values; the examples under
examples/ are run for real through the CLI (with a shorter time limit given on the command line,
which overrides the file), and the resolved campaign stored with the run is what ``replay`` runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raftlab import campaignfile
from raftlab.runner import Campaign, CampaignError, load_campaign
from tests.campaign.needs import need_checker, need_raft_core

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLI = str(Path(sys.executable).parent / "raftlab")


def test_every_example_resolves_and_the_matrix_expands() -> None:
    lease = campaignfile.load(EXAMPLES / "lease-clock.toml")
    assert lease.until_fail and lease.repeat == 3
    runs = campaignfile.expand(lease, seed=3)
    assert [c.seed for c in runs] == [3, 4, 5]
    assert runs[0].nemesis == ("clock-slow-leader", "partition-leader")
    assert runs[0].node_args == ("--read-mode=lease",) and runs[0].nemesis_opts == {"clock_slow": 0.05}
    matrix = campaignfile.expand(campaignfile.load(EXAMPLES / "matrix.toml"), seed=7)
    assert [(c.workload, c.nemesis) for c in matrix] == [
        ("register", ("link-slow", "link-oneway")), ("register", ("clock", "partition")),
        ("set", ("link-slow", "link-oneway")), ("set", ("clock", "partition"))]
    assert {c.time_limit for c in matrix} == {10} and {c.seed for c in matrix} == {7}


def test_every_flag_is_a_key_and_a_wrong_key_is_named(tmp_path: Path) -> None:
    from raftlab.commands.run import run

    flags = {p.name for p in run.params} - {"seed", "campaign_file", "repeat", "until_fail", "swarm", "quiet", "junit"}
    plural = {"store_dir": "store", "workload_opt": "workload_opts", "system_opt": "system_opts",
              "lab_opt": "lab_opts", "nemesis_opt": "nemesis_opts"}
    fields = {f for f in Campaign.__dataclass_fields__}
    assert {plural.get(f, f) for f in flags} <= fields  # every flag has a campaign field
    bad = tmp_path / "bad.toml"
    for text, message in [('workload = "register"\ntime-limt = 3\n', "unknown key 'time-limt'"),
                          ("nemesis = 3\n", "nemesis must be a list"),
                          ("[matrix]\nnodes = [3, 5]\n", "only workload"),
                          ("time-limit = [\n", "not valid TOML"),
                          ("time-limit = -1\n", "time-limit must be positive")]:
        bad.write_text(text)
        with pytest.raises(CampaignError, match=message):
            campaignfile.expand(campaignfile.load(bad), seed=1)


def test_the_summary_names_failing_seeds_and_takes_the_worst_exit() -> None:
    c = Campaign(seed=1)
    records = [campaignfile.RunRecord(campaign=c, verdict=True, exit_code=0, run_dir="a"),
               campaignfile.RunRecord(campaign=Campaign(seed=2), verdict=False, exit_code=1, run_dir="b"),
               campaignfile.RunRecord(campaign=Campaign(seed=3), verdict="unknown", exit_code=3, run_dir="c")]
    summary = campaignfile.summarize(records)
    assert summary["exit_code"] == 1 and summary["valid"] is False and summary["failing_seeds"] == [2]
    entry = summary["combinations"]["register x none"]
    assert (entry["valid"], entry["invalid"], entry["unknown"], entry["runs"]) == (1, 1, 1, 3)
    assert "failing seeds 2" in campaignfile.describe(summary)
    assert campaignfile.summarize(records[:1] + records[2:])["exit_code"] == 3


def cli(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.mark.slow
def test_a_campaign_file_runs_and_replays_its_resolved_form(tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_raft_core()
    need_checker()
    store = tmp_path / "store"
    done = cli("run", "--campaign", str(EXAMPLES / "matrix.toml"), "--quiet", "--lab-name", lab_name,
               "--base-port", str(base_port), "--store", str(store), "--time-limit", "4", "--nemesis-opt",
               "link-latency=0.02", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary: 4 runs" in done.stdout and "register x link-slow,link-oneway: 1 valid" in done.stdout
    summary = json.loads(next((store / "summaries").glob("*.json")).read_text())
    assert summary["runs"] == 4 and summary["valid"] is True and summary["failing_seeds"] == []
    first = Path(summary["combinations"]["register x link-slow,link-oneway"]["run_dirs"][0])
    stored = load_campaign(first)
    assert stored.time_limit == 4 and stored.interval == 2 and stored.nodes == 3  # CLI over file over defaults
    assert stored.nemesis_opts == {"link_latency": 0.02, "clock_offset": 2}
    assert (first / "campaign-file.toml").read_text() == (EXAMPLES / "matrix.toml").read_text()
    again = cli("replay", str(first), "--quiet", "--store", str(tmp_path / "again"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    replayed = load_campaign(next((tmp_path / "again" / "register").iterdir()))
    assert replayed.to_dict() == {**stored.to_dict(), "store": str(tmp_path / "again")}


@pytest.mark.slow
def test_until_fail_stops_at_the_first_violation_and_names_its_seed(tmp_path: Path, lab_name: str,
                                                                    base_port: int) -> None:
    need_raft_core()
    need_checker()
    done = cli("run", "--quiet", "--lab-name", lab_name, "--base-port", str(base_port), "--store",
               str(tmp_path / "store"), "--nemesis", "partition", "--interval", "1", "--time-limit", "8",
               "--nodes", "3", "--node-arg=--unsafe-local-reads", "--workload-opt", "keys=1",
               "--workload-opt", "ops-per-key=60", "--seed", "11", "--until-fail", "--repeat", "4", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "found a violation; stopping" in done.stdout
    summary = json.loads(next((tmp_path / "store" / "summaries").glob("*.json")).read_text())
    assert summary["failing_seeds"] and summary["runs"] == summary["failing_seeds"][0] - 11 + 1
