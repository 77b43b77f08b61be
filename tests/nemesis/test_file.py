"""File faults on real dtkv nodes: a damaged WAL makes a node recover or refuse, and says which.

A 3-node cluster writes some keys (so each WAL holds many records), then the file nemesis kills
one node, damages its WAL and starts it. Each time the node must either refuse with its own
clear error (the file and the offset), reported as refused, or recover and say what it cut
(``torn tail``); flipping bits in the log is refused within a few tries. ``file-heal`` restores
what a refusing node had, and it serves again.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from raftlab.impl.client import KvClient
from raftlab.nemesis import package
from raftlab.nemesis.targets import op

from raftlab.lab import lab_down, open_lab
from raftlab.systems import SystemOptions
from raftlab.systems.dtkv import DtkvDB
from tests.campaign.needs import need_raft_core


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))


async def leader_of(db: DtkvDB) -> str:
    for _ in range(100):
        if leaders := await db.primaries():
            return str(leaders[0])
        await asyncio.sleep(0.1)
    raise AssertionError("no leader within 10 s")


def test_a_damaged_wal_is_refused_or_recovered_and_said(tmp_path: Path) -> None:
    need_raft_core()

    async def main() -> None:
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="files")
        db = DtkvDB(lab, SystemOptions(base_port=24200), seed=1)
        try:
            await asyncio.gather(*(db.setup(h) for h in lab.hosts))
            leader = await leader_of(db)
            kv = KvClient([db.client_endpoint(h) for h in lab.hosts], timeout=2.0, key=db.client_key)
            for i in range(60):
                await kv.put(f"k{i % 7}", str(i).encode())
            follower = next(h for h in lab.hosts if h != leader)
            nem = package("bitflip-wal,truncate-wal", db=db, rng=random.Random(3), interval=1,
                          opts={"file_bits": 16}).nemesis
            await nem.setup(lab)

            answers = []
            for _ in range(8):  # until a flip lands where the node must refuse (most do)
                done = await nem.invoke(op("file-corrupt", {"kind": "bitflip-wal", "target": [follower]}))
                assert done.error is None, done
                v = done.value
                assert "/wal/" in v["damage"][follower]["file"] and len(v["damage"][follower]["flipped"]) == 16
                assert set(v["recovered"]) | set(v["refused"]) == {follower}  # exactly one answer, said
                answers.append("refused" if v["refused"] else "recovered")
                if v["refused"]:
                    break
                log = Path(db.node_dir(follower), "node.log").read_text()
                assert "torn tail" in log  # a node that recovered said what it cut away
                await nem.invoke(op("file-heal"))
            assert answers[-1] == "refused", answers
            reason = v["refused"][follower]
            assert ".seg" in reason and "refusing to start" in reason, reason  # the node's own error names the file
            assert await db.running(follower) is None
            assert await kv.get("k1") is not None  # the other two still serve

            healed = await nem.invoke(op("file-heal"))
            assert healed.error is None and healed.value["done"] == [follower]
            assert await db.running(follower) is not None  # restored and serving again

            cut = await nem.invoke(op("file-corrupt", {"kind": "truncate-wal", "target": [follower]}))
            assert cut.error is None, cut
            d = cut.value["damage"][follower]
            assert d["truncated_to"] < d["size"]
            assert set(cut.value["recovered"]) | set(cut.value["refused"]) == {follower}  # exactly one answer
            if cut.value["recovered"]:
                assert await db.running(follower) is not None
            await nem.invoke(op("file-heal"))
            await nem.teardown()
            assert not Path(db.data_dir(follower) + ".file-fault-backup").exists()
            await kv.close()
        finally:
            await asyncio.gather(*(db.teardown(h) for h in lab.hosts))
            await lab.close()
            await lab_down("files")

    asyncio.run(main())


def test_snapshot_faults_say_when_there_is_no_snapshot(tmp_path: Path) -> None:
    need_raft_core()

    async def main() -> None:
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="files2")
        db = DtkvDB(lab, SystemOptions(base_port=24220), seed=1)
        try:
            await asyncio.gather(*(db.setup(h) for h in lab.hosts))
            nem = package("bitflip-snap", db=db, rng=random.Random(3), interval=1).nemesis
            await nem.setup(lab)
            done = await nem.invoke(op("file-corrupt", {"kind": "bitflip-snap", "target": ["n1"]}))
            assert done.error is not None and "no file matches" in done.error  # never assumed to have worked
            assert await db.running("n1") is not None
            await nem.teardown()
        finally:
            await asyncio.gather(*(db.teardown(h) for h in lab.hosts))
            await lab.close()
            await lab_down("files2")

    asyncio.run(main())


@pytest.mark.slow
def test_a_campaign_reports_refusing_nodes_as_refusals_not_as_log_errors(tmp_path: Path) -> None:
    """A node that refuses a damaged WAL is named under faults.refused_to_start, and its refusal in
    the node log is expected (the logs check stays valid); file-heal brings it back for the replicas."""
    need_raft_core()
    from tests.campaign.needs import need_checker

    need_checker()
    from raftlab.runner import Campaign, run_campaign

    out = asyncio.run(run_campaign(Campaign(
        seed=5, lab_name="files3", base_port=24240, store=str(tmp_path / "store"), nodes=5, concurrency=8,
        time_limit=20.0, interval=2.0, nemesis=("bitflip-wal", "partition"), nemesis_opts={"file_bits": 8},
        recovery_timeout=20.0, final_timeout=10.0)))
    asyncio.run(lab_down("files3"))
    assert not out.results.get("error"), out.reasons
    faults = out.results["checkers"]["faults"]
    assert faults["by_fault"]["bitflip-wal"]["took_effect"] >= 1, faults
    assert faults.get("refused_to_start"), faults  # with 8 flipped bits a node refuses (seeded)
    assert all("refusing to start" in r or "cannot start" in r for r in faults["refused_to_start"])
    logs = out.results["checkers"]["logs"]
    assert logs["valid"] is True and logs["expected"] >= 1, logs
    assert out.exit_code == 0, out.reasons
