"""The membership over time, derived from a recorded history alone and drawn in report.html and
the text summary. The records come from the member nemesis itself (driven against an in-memory
configuration, so the test is pure), so a change to what it writes breaks these tests."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from raftlab.nemesis.member import MemberNemesis
from raftlab.nemesis.targets import op

from raftlab import report, store
from raftlab.history import NEMESIS, History, Op, OpType
from raftlab.report_members import ROLE_COLORS, changes, describe, section_html

HOSTS = ["n1", "n2", "n3"]


class ConfigDB:
    """A configuration held in memory: Reconfigurable, ShowsMembership and HasPrimaries."""

    def __init__(self) -> None:
        self.voters = list(HOSTS)
        self.wiped: list[str] = []

    async def members(self) -> list[str]:
        return list(self.voters)

    async def set_members(self, hosts: Sequence[str]) -> None:
        self.voters = sorted(hosts)

    async def wipe(self, host: str) -> None:
        self.wiped.append(host)

    async def primaries(self) -> list[str]:
        return self.voters[:1]

    async def membership(self) -> dict[str, Any]:
        return {"voters": list(self.voters), "learners": [], "outgoing": [], "leader": self.voters[0]}


class Lab:
    hosts = HOSTS


def recorded() -> list[Op]:
    """The nemesis's ops for: start, shrink leader, a refused shrink, grow, shrink wipe, grow, end."""
    nemesis = MemberNemesis(ConfigDB(), random.Random(5))
    script = [("membership", "start"), ("shrink", "leader"), ("shrink", "one"), ("grow", None),
              ("shrink", "wipe"), ("grow", None), ("membership", "end")]
    events: list[Op] = []

    async def main() -> None:
        await nemesis.setup(Lab())  # type: ignore[arg-type]
        for k, (f, value) in enumerate(script):
            asked = replace(op(f, value), time=int((1 + 2 * k) * 1e9))
            done = await nemesis.invoke(asked)
            events.extend([asked, replace(done, time=asked.time + int(0.1e9))])

    asyncio.run(main())
    client = [Op(type=OpType.INVOKE, process=0, f="read", key="a", time=int(0.5e9)),
              Op(type=OpType.OK, process=0, f="read", key="a", time=int(15e9))]
    return [client[0], *events, client[1]]


def test_changes_follow_what_the_member_nemesis_recorded() -> None:
    rows = changes(recorded())
    assert [c.event for c in rows] == ["start", "shrink leader", "shrink one", "grow", "shrink wipe", "grow", "end"]
    assert rows[0].voters == ("n1", "n2", "n3") and rows[0].leader == "n1" and rows[0].time == 1.1
    assert rows[1].voters == ("n2", "n3") and rows[1].note == "removed n1" and rows[1].leader == "n2"
    refused = rows[2]
    assert not refused.applied and "only 2 voters" in refused.note and refused.voters == ("n2", "n3")
    assert rows[3].voters == ("n1", "n2", "n3") and rows[3].note == "added n1"
    wiped = rows[4]
    assert wiped.applied and "wiped" in wiped.note and len(wiped.voters or ()) == 2
    assert wiped.touched and wiped.touched[0] not in (wiped.voters or ())
    assert rows[5].note == f"added {wiped.touched[0]}" and rows[-1].voters == ("n1", "n2", "n3")


def test_the_report_and_the_text_summary_show_the_membership(tmp_path: Path) -> None:
    run = store.new_run(tmp_path, "register", {"seed": 1, "workload": "register", "nemesis": ["member"]})
    History(recorded()).write(run.history)
    run.write_results({"valid": True, "perf": [{"name": "member", "start": ["shrink"], "stop": ["grow"],
                                                "color": "#7CC3A8"}], "checkers": {}})
    html = Path(report.write(run)).read_text()
    assert "Membership over time" in html and "4 membership changes took effect" in html
    lane = re.search(r'<svg class="membership".*?</svg>', html, re.S)
    assert lane is not None
    # n1 led, then was removed with the leader shrink (3.1s) until the grow at 7.1s
    assert f'fill="{ROLE_COLORS["leader"]}"><title>n1: leader (when observed), 1.10-3.10s' in lane.group(0)
    assert f'fill="{ROLE_COLORS["out"]}"><title>n1: not a member, 3.10-7.10s (after shrink leader)' in lane.group(0)
    assert all(f">{h}</text>" in lane.group(0) for h in HOSTS)
    table = re.search(r"<table class=membership>.*?</table>", html, re.S)
    assert table is not None and table.group(0).count("<tr") == 1 + 7 and "removed n1" in table.group(0)
    text = describe(changes(list(History.read(run.history))))
    assert text[0] == "membership: 4 changes took effect"
    assert re.match(r"\s+3\.10s  shrink leader\s+voters n2 n3  leader n2  \(removed n1\)", text[2]), text[2]


def test_a_run_without_the_member_nemesis_has_no_membership_section(tmp_path: Path) -> None:
    history = [Op(type=OpType.INVOKE, process=NEMESIS, f="kill", value="one", time=10),
               Op(type=OpType.INFO, process=NEMESIS, f="kill", value={"done": ["n2"]}, time=20)]
    assert changes(history) == [] and describe([]) == [] and section_html([], 100) == ""
    run = store.new_run(tmp_path, "register", {"seed": 1, "workload": "register"})
    History(history).write(run.history)
    run.write_results({"valid": True, "checkers": {}})
    assert "Membership" not in Path(report.write(run)).read_text()


def test_joint_configurations_and_older_records_are_drawn() -> None:
    """A record caught mid-change shows the leaving voters; a record with only ``members`` (runs
    stored before the nemesis wrote ``membership``) still gives the voters."""
    history = [Op(type=OpType.INVOKE, process=NEMESIS, f="shrink", value="one", time=0),
               Op(type=OpType.INFO, process=NEMESIS, f="shrink", time=10**9,
                  value={"removed": "n4", "members": ["n1", "n2", "n3"],
                         "membership": {"voters": ["n1", "n2", "n3"], "learners": ["n5"], "outgoing": ["n1", "n2", "n3", "n4"],
                                        "leader": "n2"}}),
               Op(type=OpType.INVOKE, process=NEMESIS, f="grow", time=2 * 10**9),
               Op(type=OpType.INFO, process=NEMESIS, f="grow", time=3 * 10**9,
                  value={"added": ["n4"], "members": ["n1", "n2", "n3", "n4"]})]
    joint, grown = changes(history)
    assert joint.joint and joint.role("n4") == "outgoing" and joint.role("n5") == "learner"
    assert joint.role("n2") == "leader" and grown.voters == ("n1", "n2", "n3", "n4") and grown.leader is None
    html = section_html([joint, grown], 4 * 10**9)
    assert "joint, leaving n1 n2 n3 n4" in html and f'fill="{ROLE_COLORS["outgoing"]}"><title>n4' in html
    assert "learners n5" in describe([joint, grown])[1]
