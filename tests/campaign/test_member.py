"""The membership nemesis in a real campaign: `--nemesis member,kill,partition` against the
reference node (five processes), with shrinks (the leader too), wiped members re-added, and a
final phase that restores the full membership before the final reads; the history records the
membership over time (start, every change, end), the run is valid, and its report, rebuilt from
the stored run, draws the changes."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest

from raftlab import report
from raftlab.commands.run import _membership_lines
from raftlab.history import NEMESIS, History, OpType
from raftlab.lab.ports import port_free
from raftlab.runner import Campaign, run_campaign
from raftlab.store import open_run
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
    final = member_ops[-1]  # the final phase restored everyone, whatever the last fault did
    assert final.f == "grow" and not final.error and len(final.value["members"]) == 5, final
    replicas = out.results["checkers"]["replicas"]
    assert replicas["valid"] is True, replicas
    observed = [o for o in history if o.process == NEMESIS and o.type is OpType.INFO and o.f == "membership"]
    assert [o.value["when"] for o in observed] == ["start", "end"], observed
    assert all(len(o.value["membership"]["voters"]) == 5 and o.value["membership"]["leader"] for o in observed)
    assert all(sorted(o.value["membership"]["voters"]) == sorted(o.value["members"]) for o in shrunk), shrunk
    # the report, rebuilt from the stored run alone, draws each change
    html = Path(report.write(open_run(out.run.path))).read_text()
    took = sum(1 for o in member_ops if not o.error and (o.value.get("removed") or o.value.get("added")))
    assert f"{took} membership changes took effect" in html
    first = shrunk[0]
    removed, at = first.value["removed"], f"{first.time / 1e9:.2f}"
    assert re.search(rf"<title>{removed}: not a member, {re.escape(at)}-[\d.]+s \(after shrink", html), (removed, at)
    rows = re.search(r"<table class=membership>.*?</table>", html, re.S)
    assert rows is not None and rows.group(0).count("<tr") == 1 + len(member_ops) + 2  # + start and end
    assert f"removed {removed}" in rows.group(0)
    text = _membership_lines(out.run.history)
    assert text[0] == f"membership: {took} changes took effect" and "start" in text[1] and "end" in text[-1]


def test_member_nemesis_shrinks_the_leader_wipes_and_grows_back(lab_name: str, base_port: int) -> None:
    """Each shrink value against real nodes: the leader is removed and hands over; a wiped member
    restarts empty (rejoining) and is brought back by grow, catching up with every write."""
    need_raft_core()
    from raftlab.impl.client import KvClient
    from raftlab.nemesis.member import MemberNemesis
    from raftlab.nemesis.targets import op

    from raftlab.lab import open_lab
    from raftlab.systems import SystemOptions
    from raftlab.systems.dtkv import DtkvDB

    async def main() -> None:
        lab = await open_lab("local", nodes=3, name=lab_name)
        db = DtkvDB(lab, SystemOptions(base_port=base_port), seed=3)
        nemesis = MemberNemesis(db, random.Random(4))
        await nemesis.setup(lab)
        kv = KvClient([db.client_endpoint(h) for h in lab.hosts], timeout=5.0, key=db.client_key)
        try:
            await asyncio.gather(*(db.setup(h) for h in lab.hosts))
            for _ in range(100):
                if await db.primaries():
                    break
                await asyncio.sleep(0.1)
            leader = (await db.primaries())[0]
            await kv.put("a", b"1")
            done = await nemesis.invoke(op("shrink", "leader"))
            assert done.error is None and done.value["removed"] == leader, done
            assert sorted(await db.members()) == sorted(h for h in lab.hosts if h != leader)
            for _ in range(100):  # it hands leadership over to a remaining voter
                if (await db.primaries())[:1] not in ([], [leader]):
                    break
                await asyncio.sleep(0.1)
            assert (await db.primaries())[0] != leader
            refused = await nemesis.invoke(op("shrink", "one"))  # two voters left: not applied
            assert refused.error and "only 2 voters" in refused.error, refused
            grown = await nemesis.invoke(op("grow"))
            assert grown.error is None and grown.value["added"] == [leader], grown
            wiped = await nemesis.invoke(op("shrink", "wipe"))
            assert wiped.error is None and wiped.value["wiped"] == wiped.value["removed"], wiped
            victim = wiped.value["removed"]
            await kv.put("b", b"2")
            assert (await nemesis.invoke(op("grow"))).error is None
            assert sorted(await db.members()) == sorted(lab.hosts)
            solo = KvClient([db.client_endpoint(victim)], timeout=5.0, key=db.client_key)
            try:  # the wiped member caught up: its own status shows everything applied
                for _ in range(150):
                    status = (await solo.status())[0]
                    others = [s.get("applied", 0) for h, s in (await db.status()).items() if h != victim]
                    if status.get("applied", 0) >= max(others) - 2:
                        break
                    await asyncio.sleep(0.1)
                assert status["applied"] >= max(others) - 2 and status["applied"] > 3, (status, others)
            finally:
                await solo.close()
            assert await kv.get("a") == b"1" and await kv.get("b") == b"2"
        finally:
            await kv.close()
            await asyncio.gather(*(db.teardown(h) for h in lab.hosts))
            await lab.close()

    asyncio.run(main())
