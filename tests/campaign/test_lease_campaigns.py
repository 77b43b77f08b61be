"""The lock, watch and ttl workloads as whole campaigns on the reference node.

Both sides of each claim: the healthy node passes each workload under kills, pauses and
partitions, and a node started with the matching deliberately broken flag is caught by that
workload's checker (``--unsafe-expiry``: lease timers that ignore refreshes, caught by the lock
checker's mutex model and guarded list and by the ttl checker's premature expiry;
``--unsafe-watch-skip``: a resumed watch loses the event at its resume index, caught as a gap).
The report's explanation speaks the workload's own terms (holds, lag, expiry delays).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.campaign.test_dtkv import campaign

pytestmark = pytest.mark.slow
FAULTS = ("kill", "pause", "partition")


@pytest.mark.parametrize(("workload", "words"), [("lock", "acknowledged holds"), ("watch", "watcher lag"),
                                                 ("ttl", "expiry delay")])
def test_the_healthy_node_passes_each_lease_workload_under_faults(tmp_path: Path, lab_name: str, base_port: int,
                                                                  workload: str, words: str) -> None:
    out = campaign(tmp_path, lab_name, base_port, workload=workload, nemesis=FAULTS, concurrency=4, time_limit=15.0)
    assert out.exit_code == 0, out.reasons
    result = out.results["checkers"]["workload"]
    assert result["valid"] is True and words in result["explanation"], result
    report = (out.run.path / "report.html").read_text()
    assert "Workload result" in report and words in report


@pytest.mark.parametrize(("workload", "flag", "opts", "words"), [
    ("lock", "--unsafe-expiry", {"lease_ms": 400, "hold_ms": 600}, "lock-guarded list lost"),
    ("ttl", "--unsafe-expiry", {}, "premature expiry"),
    ("watch", "--unsafe-watch-skip", {}, "missing"),
])
def test_each_broken_mode_is_caught(tmp_path: Path, lab_name: str, base_port: int, workload: str, flag: str,
                                    opts: dict[str, object], words: str) -> None:
    out = campaign(tmp_path, lab_name, base_port, workload=workload, nemesis=(), concurrency=4, time_limit=8.0,
                   node_args=(flag,), workload_opts=opts)
    result = out.results["checkers"]["workload"]
    assert result["valid"] is False and words in result["explanation"], result


@pytest.mark.parametrize("fenced", [False, True])
def test_a_holder_paused_past_its_lease_breaks_the_lock_and_fencing_saves_the_data(
        tmp_path: Path, lab_name: str, base_port: int, fenced: bool) -> None:
    """The correct node, no fault: holders stall 600 ms (a GC pause) on a 300 ms lease and write
    anyway. The lease lock cannot keep holds exclusive then, so the guarded list loses writes;
    with fencing (the write refused when a newer token was written, else a cas of the list as
    read) no acknowledged write is lost, though the holds may still overlap in time."""
    out = campaign(tmp_path, lab_name, base_port, workload="lock", nemesis=(), concurrency=4, time_limit=8.0,
                   workload_opts={"lease_ms": 300, "pause_ms": 600, "fenced": fenced})
    result = out.results["checkers"]["workload"]
    if fenced:
        assert "lost" not in result["explanation"] and "tokens increasing" in result["explanation"], result
    else:
        assert result["valid"] is False and "lock-guarded list lost" in result["explanation"], result
