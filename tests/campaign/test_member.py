"""The membership nemesis in a real campaign: `--nemesis member,kill,partition` against the
reference node (five processes), with shrinks (the leader too), wiped members re-added, and a
final phase that restores the full membership before the final reads; the history records the
membership over time and the run is valid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftlab.history import NEMESIS, History, OpType
from raftlab.lab.ports import port_free
from raftlab.runner import Campaign, run_campaign
from tests.campaign.needs import need_checker, need_raft_core

pytestmark = pytest.mark.slow


@pytest.fixture
def base_port() -> int:
    """A free block of 40 ports in 26600-26999 (apart from the other campaign tests' range)."""
    for start in range(26600, 26960, 40):
        if all(port_free(p) for p in range(start, start + 40)):
            return start
    pytest.skip("no free block of 40 ports in 26600-26999")


def test_member_kill_partition_campaign_is_valid_and_records_the_membership(
        tmp_path: Path, lab_name: str, base_port: int) -> None:
    need_raft_core()
    need_checker()
    out = asyncio.run(run_campaign(Campaign(
        seed=12, lab_name=lab_name, base_port=base_port, store=str(tmp_path / "store"), concurrency=6,
        time_limit=20.0, interval=1.5, rate=40.0, recovery_timeout=25.0, final_timeout=15.0,
        nemesis=("member", "kill", "partition"))))
    assert out.exit_code == 0, out.reasons
    history = History.read(out.run.history)
    member_ops = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f in ("shrink", "grow")]
    shrunk = [o for o in member_ops if o.f == "shrink" and not o.error]
    assert shrunk, f"no shrink took effect: {[(o.f, o.value, o.error) for o in member_ops]}"
    assert all(len(o.value["members"]) < 5 for o in shrunk)
    final = [o for o in member_ops if o.f == "grow" and not o.error][-1]
    assert len(final.value["members"]) == 5, final  # the final phase restored everyone
    replicas = out.results["checkers"]["replicas"]
    assert replicas["valid"] is True, replicas
