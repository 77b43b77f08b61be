"""The reference node as a system under test: real processes, real signals, real campaigns.

The DB lifecycle is checked at the process level (a killed pid is gone, a paused one is
stopped), and whole campaigns show both sides of the claim: the healthy node passes a campaign
with kills, pauses and partitions, and the node started with ``--unsafe-local-reads`` (reads
served from local state, without ReadIndex) is caught by the checker under partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from raftlab.impl.client import KvClient, Unavailable

from raftlab.history import NEMESIS, History, OpType
from raftlab.runner import Campaign, Outcome, run_campaign
from raftlab.systems import SystemOptions
from raftlab.systems.dtkv import DtkvDB
from tests.campaign.needs import need_checker, need_raft_core
from tests.conftest import need_binary, need_root

pytestmark = pytest.mark.slow


def proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


async def set_up_and_elect(db: Any, hosts: Sequence[str]) -> str:
    """Set every host up at once and wait (up to 10 s) until the DB names a leader; that leader."""
    await asyncio.gather(*(db.setup(h) for h in hosts))
    for _ in range(100):
        if leaders := await db.primaries():
            return str(leaders[0])
        await asyncio.sleep(0.1)
    raise AssertionError("no leader within 10 s of setup")


def listen_addresses(pid: int) -> set[str]:
    """The IPv4 addresses the process's listening TCP sockets are bound to (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            out.add(socket.inet_ntoa(bytes.fromhex(fields[1].split(":")[0])[::-1]))
    return out


def test_db_lifecycle_kill_start_pause_resume_teardown(lab_name: str, base_port: int) -> None:
    need_raft_core()
    from raftlab.lab import open_lab

    async def main() -> None:
        lab = await open_lab("local", nodes=3, name=lab_name)
        db = DtkvDB(lab, SystemOptions(base_port=base_port), seed=1)
        try:
            leader = await set_up_and_elect(db, lab.hosts)
            assert leader in lab.hosts
            pid = await db.running("n2")
            assert pid is not None and proc_state(pid) not in (None, "Z")
            # campaign nodes bind loopback on the local lab (never 0.0.0.0) and authenticate
            assert listen_addresses(pid) == {"127.0.0.1"}
            assert Path(db.node_dir("n2"), "cluster.key").stat().st_mode & 0o777 == 0o600
            with pytest.raises(Unavailable, match="requires authentication"):
                await KvClient([db.client_endpoint("n2")], timeout=1.0).get("k")
            await db.kill("n2")
            assert proc_state(pid) in (None, "Z")  # really gone, not just signalled
            assert await db.running("n2") is None
            await db.start("n2")
            new_pid = await db.running("n2")
            assert new_pid is not None and new_pid != pid
            await db.pause("n3")
            paused = await db.running("n3")
            assert paused is not None and proc_state(paused) == "T"
            await db.resume("n3")
            assert proc_state(paused) in ("S", "R")
            assert Path(db.node_dir("n1"), "node.log").exists()
            assert set(db.log_files("n1").values()) == {"node.log", "node.out"}
        finally:
            await asyncio.gather(*(db.teardown(h) for h in lab.hosts))
            await lab.close()
        assert not Path(db.data_dir("n1")).exists()
        assert all(not Path(db.pid_file(h)).exists() for h in db.hosts)

    asyncio.run(main())


def campaign(tmp_path: Path, lab_name: str, base_port: int, **kw: object) -> Outcome:
    need_raft_core()
    need_checker()
    opts: dict[str, object] = dict(seed=5, lab_name=lab_name, base_port=base_port, store=str(tmp_path / "store"),
                                   concurrency=6, time_limit=12.0, interval=1.5, rate=60.0, recovery_timeout=20.0,
                                   final_timeout=10.0)
    opts.update(kw)
    return asyncio.run(run_campaign(Campaign(**opts)))  # type: ignore[arg-type]


def test_the_healthy_node_passes_kills_pauses_and_partitions(tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = campaign(tmp_path, lab_name, base_port, nemesis=("kill", "pause", "partition"))
    assert out.exit_code == 0, out.reasons
    history = History.read(out.run.history)
    applied = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO
               and o.f in ("kill", "pause", "start-partition") and not o.error]
    assert applied, "no fault took effect"
    assert out.results["checkers"]["recovery"]["healthy"] is True
    assert (out.run.path / "nodes" / "n1" / "node.log").stat().st_size > 0
    # the replicas were judged too: all five answered at one applied index with equal digests
    replicas = out.results["checkers"]["replicas"]
    assert replicas["valid"] is True and len(set(replicas["applied"].values())) == 1, replicas
    assert len(replicas["applied"]) == 5 and replicas["silent"] == []
    assert out.results["checkers"]["logs"]["valid"] is True and out.results["checkers"]["logs"]["files"] >= 5
    # and their elections: leaders and durable votes were read from the node logs, none broken
    elections = out.results["checkers"]["elections"]
    assert elections["valid"] is True and elections["leaders"] >= 1 and elections["votes"] >= 3, elections


def test_unsafe_local_reads_are_caught_under_partitions(tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = campaign(tmp_path, lab_name, base_port, nemesis=("partition",), interval=1.0,
                   node_args=("--unsafe-local-reads",), workload_opts={"keys": 1, "ops_per_key": 60})
    assert out.exit_code == 1 and out.verdict is False, out.reasons
    assert out.results["checkers"]["workload"]["valid"] is False


def test_the_set_workload_keeps_every_acknowledged_add_through_kills_and_a_whole_cluster_restart(
        tmp_path: Path, lab_name: str, base_port: int) -> None:
    out = campaign(tmp_path, lab_name, base_port, workload="set", nemesis=("kill",), time_limit=8.0,
                   restart_check=True)
    assert out.exit_code == 0, out.reasons
    assert out.results["checkers"]["final"]["final_ok"] >= 1
    history = History.read(out.run.history)
    restart = [o for o in history if o.process == NEMESIS and o.f == "restart-all" and o.type is OpType.INFO]
    assert len(restart) == 1 and restart[0].error is None and restart[0].value["healthy"] is True
    healthy = next(o for o in history if o.process == NEMESIS and o.f == "wait-healthy" and o.type is OpType.INFO)
    finals = [o for o in history if o.is_client and o.f == "read" and o.type is OpType.OK]
    assert healthy.index < restart[0].index < finals[-1].index  # healed, restarted, then the final read
    # every node really went down and came back: one boot at setup, one per nemesis kill, one more
    kills = {h: 0 for h in ("n1", "n2", "n3", "n4", "n5")}
    for o in history:
        if o.process == NEMESIS and o.f == "kill" and o.type is OpType.INFO and isinstance(o.value, dict):
            for h in o.value["done"]:
                kills[h] += 1
    for h, n in kills.items():
        boots = (out.run.path / "nodes" / h / "node.log").read_text().count(": recovered ")
        assert boots == n + 2, (h, boots, n)
    assert out.results["checkers"]["restart"]["valid"] is True


def test_a_campaign_over_ssh_in_network_namespaces(tmp_path: Path, lab_name: str, base_port: int) -> None:
    """The netns lab: hosts reached over SSH (paramiko), partitions by iptables in each namespace."""
    need_root()
    need_binary("ip", "iptables", "sshd", "ssh-keygen", "unshare")
    out = campaign(tmp_path, lab_name, base_port, lab="netns", nemesis=("partition", "kill"), time_limit=8.0,
                   lab_opts={"prefix": "rhc", "subnet": "10.79.0"})
    assert out.exit_code == 0, out.reasons
    history = History.read(out.run.history)
    cuts = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f == "start-partition"
            and not o.error]
    assert cuts and all(o.value["grudge"] for o in cuts)
    assert (out.run.path / "nodes" / "n3" / "node.log").stat().st_size > 0


def test_state_timed_faults_hit_the_leader_inside_their_window(tmp_path: Path, lab_name: str, base_port: int) -> None:
    """A timed kill fires only once the status shows the window, and kills the leader it named; a
    timed partition cuts off the leader alone or with one follower (``leader-minority``)."""
    out = campaign(tmp_path, lab_name, base_port, nemesis=("kill-leader-uncommitted", "kill-leader-elected",
                                                           "partition-leader-uncommitted"),
                   interval=1.0, rate=150.0)
    assert out.exit_code == 0, out.reasons
    history = History.read(out.run.history)
    timed = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f == "timed-kill"]
    assert timed, "no timed fault completed"
    hit = [o for o in timed if not o.error]
    assert hit, [o.error for o in timed]
    for o in hit:
        assert o.value["when"] in ("uncommitted", "just-elected") and o.value["polls"] >= 1
        assert o.value["done"] == o.value["targets"] and len(o.value["targets"]) == 1
    assert any(o.value["when"] == "uncommitted" for o in hit)
    cuts = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f == "timed-partition"
            and not o.error]
    assert cuts, "no timed partition took effect"
    for o in cuts:
        sides = [side.split() for side in o.value["description"].split("|")]
        assert o.value["shape"] in ("leader", "leader-minority") and o.value["when"] == "uncommitted"
        assert sorted(len(side) for side in sides) == ([1, 4] if o.value["shape"] == "leader" else [2, 3]), o.value


def test_a_stale_candidate_is_made_and_its_leader_killed_as_it_rejoins(tmp_path: Path, lab_name: str,
                                                                       base_port: int) -> None:
    """stale-candidate really happens: one follower cut off until it missed committed entries,
    then the leader SIGKILLed and the cut healed; the healthy node never elects the stale
    candidate next (the up-to-date check, Raft §5.4.1: the vote-stale-log mutant does), stays
    valid, and every node agrees at the end."""
    out = campaign(tmp_path, lab_name, base_port, nemesis=("stale-candidate",), interval=2.0, rate=150.0,
                   time_limit=14.0)
    assert out.exit_code == 0, out.reasons
    history = History.read(out.run.history)
    stale = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f == "timed-stale"]
    hit = [o for o in stale if not o.error]
    assert hit, [o.error for o in stale]
    for o in hit:
        v = o.value
        assert v["lag"] >= 1 and v["candidate"] != v["leader"], v
        assert v["done"] == [v["leader"]] and v["healed"] is True, v  # the leader it named was killed
        assert v["elected"] not in (None, v["leader"], v["candidate"]), v
    starts = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f == "start" and not o.error]
    assert {h for o in hit for h in o.value["done"]} <= {h for o in starts for h in o.value["done"]}  # and restarted
    assert out.results["checkers"]["replicas"]["valid"] is True


def test_campaign_nodes_snapshot_often_and_a_bad_snapshot_option_is_refused() -> None:
    """The dtkv system passes small snapshot intervals to every node, --system-opt changes them,
    and a value that is not a whole number stops the campaign (before any lab is touched) with
    one line naming it."""
    from typing import cast

    from raftlab.protocols import HostLab
    from raftlab.systems import SystemLoadError
    from raftlab.systems.dtkv import snapshot_args, system

    assert snapshot_args({}) == ("--snapshot-entries", "100", "--snapshot-margin", "20",
                                 "--wal-segment-bytes", "16384")
    assert snapshot_args({"snapshot-entries": "7"})[:2] == ("--snapshot-entries", "7")
    no_lab = cast(HostLab, None)  # refused before the lab is used
    with pytest.raises(SystemLoadError, match="snapshot-entries='x'"):
        system(no_lab, SystemOptions(extra={"snapshot-entries": "x"}))
    with pytest.raises(SystemLoadError, match="wal-segment-bytes=10"):
        system(no_lab, SystemOptions(extra={"wal-segment-bytes": "10"}))


def test_a_campaign_tests_group_1_of_nodes_running_two_groups(tmp_path: Path, lab_name: str, base_port: int) -> None:
    """`--system-opt groups=2 group=1`: every node runs two Raft groups on the same ports; the
    workload, status, digests and final reads are group 1's, through kills, with group 0 running
    beside it in the same processes; bad group options are refused naming them."""
    out = campaign(tmp_path, lab_name, base_port, nemesis=("kill",), time_limit=8.0,
                   system_opts={"groups": 2, "group": 1})
    assert out.exit_code == 0, out.reasons
    replicas = out.results["checkers"]["replicas"]
    assert replicas["valid"] is True and min(replicas["applied"].values()) > 10, replicas
    log = (out.run.path / "nodes" / "n1" / "node.log").read_text()
    assert "groups 0..1" in log and "group 1: node 1: recovered" in log
    from raftlab.systems.dtkv import group_args

    assert group_args({"groups": "2", "group": "1"}) == (("--groups", "2"), 1)
    with pytest.raises(ValueError, match="group=2"):
        group_args({"groups": 2, "group": 2})
