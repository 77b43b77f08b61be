"""etcd, a system raftlab did not write, as a built-in system: lifecycle at the process level, and
campaigns on the default lab showing both sides of the claim.

Linearizable etcd passes kills, pauses and partitions; etcd with serializable reads (served from a
member's local state) is caught under partitions and pauses. Needs the ``etcd`` binary (Debian:
``etcd-server``; ./dev installs it when run as root) and unprivileged user namespaces (the local
lab's address mode, which gives each member the one address etcd requires).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from raftlab.runner import Campaign, Outcome, run_campaign
from raftlab.systems import SystemOptions, load
from raftlab.systems.etcd import EtcdDB
from tests.campaign.needs import need_checker
from tests.campaign.test_dtkv import proc_state, set_up_and_elect
from tests.lab.test_local_addresses import needs_userns

pytestmark = [pytest.mark.slow, needs_userns,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="needs the etcd binary on PATH (Debian: apt-get install etcd-server)")]


def test_members_kill_start_pause_resume_and_name_their_leader(lab_name: str, base_port: int) -> None:
    from raftlab.lab import open_lab

    async def main() -> None:
        lab = await open_lab("local", nodes=3, name=lab_name, net="ns")
        system = load("etcd", lab, SystemOptions(base_port=base_port))  # type: ignore[arg-type]
        db = system.db
        assert isinstance(db, EtcdDB)
        try:
            leader = await set_up_and_elect(db, lab.hosts)
            assert leader in lab.hosts
            pid = await db.running(leader)
            assert pid is not None
            await db.kill(leader)
            assert proc_state(pid) in (None, "Z")  # gone when kill returns
            for _ in range(100):  # the others elect a new leader
                now = await db.primaries()
                if now and now[0] != leader:
                    break
                await asyncio.sleep(0.1)
            assert now and now[0] != leader
            await db.start(leader)
            await db.start(leader)  # idempotent on a running member
            assert await db.running(leader) not in (None, pid)
            await db.pause("n2")
            paused = await db.running("n2")
            assert paused is not None and proc_state(paused) == "T"
            await db.resume("n2")
            assert proc_state(paused) in ("S", "R")
            assert Path(lab.node_dir("n1"), "etcd.log").stat().st_size > 0
        finally:
            await asyncio.gather(*(db.teardown(h) for h in lab.hosts))
            await lab.close()

    asyncio.run(main())


def campaign(tmp_path: Path, lab_name: str, base_port: int, **kw: object) -> Outcome:
    need_checker()
    opts: dict[str, object] = dict(system="etcd", seed=3, lab_name=lab_name, base_port=base_port,
                                   store=str(tmp_path / "store"), concurrency=8, time_limit=20.0, interval=2.0,
                                   rate=60.0, nemesis=("kill", "pause", "partition"))
    opts.update(kw)
    return asyncio.run(run_campaign(Campaign(**opts)))  # type: ignore[arg-type]


def test_linearizable_etcd_is_valid_under_kills_pauses_and_partitions(tmp_path: Path, lab_name: str,
                                                                      base_port: int) -> None:
    out = campaign(tmp_path, lab_name, base_port)
    assert out.verdict is True, out.reasons
    faults = out.results["checkers"]["faults"]["by_fault"]
    assert all(faults[f]["took_effect"] for f in ("kill", "pause", "partition")), faults


def test_serializable_reads_are_caught_as_stale(tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = campaign(tmp_path, lab_name, base_port, system_opts={"serializable": "1"}, nemesis=("partition", "pause"))
    assert out.verdict is False and out.exit_code == 1, out.reasons
    assert "not linearizable" in out.results["checkers"]["workload"]["explanation"]
