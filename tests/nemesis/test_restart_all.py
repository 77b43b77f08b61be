"""The harness's final restart (``--restart-check``): every node really killed and started again,
and a node that cannot start is a finding that names it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from raftlab.nemesis import noop
from raftlab.nemesis.process import process_state

from raftlab import evidence
from raftlab.health import HealthGate
from raftlab.history import NEMESIS, History, Op, OpType
from raftlab.lab import lab_down, open_lab
from raftlab.protocols import Host
from tests.nemesis.standin import SleepDB


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))


class BrokenAfterRestart(SleepDB):
    """n3 starts once, then refuses, as a node whose files it cannot read back."""

    def __init__(self, lab: object) -> None:
        super().__init__(lab)
        self.starts: dict[Host, int] = {}

    async def start(self, host: Host) -> None:
        self.starts[host] = self.starts.get(host, 0) + 1
        if host == "n3" and self.starts[host] > 1:
            raise RuntimeError("n3: cannot start: wal: entry has index 7, expected 9")
        await super().start(host)


def pid(lab: object, host: str) -> int:
    return int(Path(lab.node_dir(host), "node.pid").read_text())  # type: ignore[attr-defined]


def test_restart_all_kills_and_starts_every_node_and_names_one_that_cannot_start(tmp_path: Path) -> None:
    async def healthy() -> tuple[bool, float, str]:
        return True, 0.01, ""

    async def main() -> None:
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="ra")
        try:
            db = SleepDB(lab)
            for h in lab.hosts:
                await db.start(h)
            before = {h: pid(lab, h) for h in lab.hosts}
            gate = HealthGate(noop(), healthy, 5.0, restart=(db, list(lab.hosts)))
            assert evidence.RESTART_ALL in gate.fs()
            done = await gate.invoke(Op(type=OpType.INVOKE, process=NEMESIS, f=evidence.RESTART_ALL, time=0))
            assert done.type is OpType.INFO and done.error is None and done.value["restarted"] == ["n1", "n2", "n3"]
            for h in lab.hosts:
                assert pid(lab, h) != before[h]
                assert await process_state(lab.remote(h), before[h]) in (None, "Z")
                assert await process_state(lab.remote(h), pid(lab, h)) in ("S", "R")
            ok = History([Op(type=OpType.INVOKE, process=NEMESIS, f=evidence.RESTART_ALL, time=0), done])
            assert evidence.restart(ok)[0] is True

            broken = BrokenAfterRestart(lab)
            for h in lab.hosts:
                await broken.start(h)
            gate = HealthGate(noop(), healthy, 5.0, restart=(broken, list(lab.hosts)))
            done = await gate.invoke(Op(type=OpType.INVOKE, process=NEMESIS, f=evidence.RESTART_ALL, time=0))
            assert done.value["restarted"] == ["n1", "n2"] and "n3" in done.value["failed"]
            bad = History([Op(type=OpType.INVOKE, process=NEMESIS, f=evidence.RESTART_ALL, time=0), done])
            valid, why, _ = evidence.restart(bad)
            assert valid is False and "n3 did not come back" in why and "expected 9" in why
            assert "n3 did not start" in done.error
            assert evidence.restart(History([]))[0] is True  # not asked for: nothing to judge
            refused = Op(type=OpType.INFO, process=NEMESIS, f="file-corrupt", time=0,
                         value={"refused": {"n3": "wal: corrupt entry (bitflip-wal)"}})
            excused = History([Op(type=OpType.INVOKE, process=NEMESIS, f="file-corrupt", time=0), refused,
                               Op(type=OpType.INVOKE, process=NEMESIS, f=evidence.RESTART_ALL, time=0), done])
            assert evidence.restart(excused)[0] is True  # a file fault's refusal is said as such, not a loss
            assert evidence.RESTART_ALL not in HealthGate(noop(), healthy, 5.0).fs()
            for h in lab.hosts:
                await db.kill(h)
        finally:
            await lab.close()
            await lab_down("ra")

    asyncio.run(main())
