"""kill really removes the pid, pause really stops the process (state T), and failures are recorded."""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path

import pytest
from raftlab.nemesis import package
from raftlab.nemesis.package import NemesisContractError
from raftlab.nemesis.process import pid_file_process, process_state, signal_pid_file
from raftlab.nemesis.targets import op

from raftlab.history import NEMESIS, OpType
from raftlab.lab import lab_down, open_lab
from raftlab.systems import SystemOptions
from raftlab.systems.dtkv import DBError, DtkvDB
from tests.nemesis.standin import SleepDB


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))


def pid(lab: object, host: str) -> int:
    return int(Path(lab.node_dir(host), "node.pid").read_text())  # type: ignore[attr-defined]


def test_kill_pause_and_heal_on_the_local_lab(tmp_path: Path, seed: int) -> None:
    async def main() -> None:
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="pt")
        db = SleepDB(lab, leader="n2")
        try:
            for h in lab.hosts:
                await db.start(h)
            pkg = package("kill-leader,pause", db=db, rng=random.Random(seed), interval=1)
            nem = pkg.nemesis
            await nem.setup(lab)
            old = pid(lab, "n2")
            done = await nem.invoke(op("kill", "leader"))
            assert done.type == OpType.INFO and done.process == NEMESIS and done.error is None
            assert done.value == {"targets": ["n2"], "done": ["n2"]}
            assert await process_state(lab.remote("n2"), old) in (None, "Z")
            done = await nem.invoke(op("start"))
            assert done.value["done"] == ["n2"] and pid(lab, "n2") != old
            assert await process_state(lab.remote("n2"), pid(lab, "n2")) in ("S", "R")

            done = await nem.invoke(op("pause", ["n1", "n3"]))
            assert done.value["done"] == ["n1", "n3"]
            assert await process_state(lab.remote("n1"), pid(lab, "n1")) == "T"
            assert await process_state(lab.remote("n3"), pid(lab, "n3")) == "T"
            assert await process_state(lab.remote("n2"), pid(lab, "n2")) in ("S", "R")
            done = await nem.invoke(op("resume"))
            assert done.value["done"] == ["n1", "n3"]
            assert await process_state(lab.remote("n1"), pid(lab, "n1")) in ("S", "R")

            # pause-majority (a value the pause fault draws): two of three stopped, then resumed together
            done = await nem.invoke(op("pause", "majority"))
            stopped = done.value["done"]
            assert len(stopped) == 2 and done.value["targets"] == stopped
            assert [await process_state(lab.remote(h), pid(lab, h)) for h in stopped] == ["T", "T"]
            done = await nem.invoke(op("resume"))
            assert done.value["done"] == stopped
            assert {await process_state(lab.remote(h), pid(lab, h)) for h in stopped} <= {"S", "R"}

            # A fault that cannot apply is recorded as failed, never assumed.
            db.leader = None
            done = await nem.invoke(op("kill", "leader"))
            assert done.type == OpType.INFO and done.error == "no leader known"
            with pytest.raises(NemesisContractError):
                await nem.invoke(op("disk-pause", "one"))
            await nem.teardown()
        finally:
            await lab.close()
            await lab_down("pt")

    asyncio.run(main())


def test_a_pid_file_naming_another_process_is_never_taken_for_the_node(tmp_path: Path) -> None:
    """A pid file outlives its process: after a power cut the host's new boot hands the same pids
    out again (the containers lab gave a node pid 66 on every boot), so the stale file names a
    stranger. Neither signalled nor taken for a running node: the DB starts its own."""
    async def main() -> None:
        lab = await open_lab("local", nodes=1, workdir=tmp_path / "w", name="stale")
        db = DtkvDB(lab, SystemOptions(base_port=24280), seed=1)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        stranger = subprocess.Popen(["sleep", "600"], cwd=elsewhere)
        remote = lab.remote("n1")
        try:
            await db.setup("n1")
            ours = await db.running("n1")
            assert ours is not None and ours == await pid_file_process(remote, db.pid_file("n1"))
            await db.kill("n1")
            Path(db.pid_file("n1")).write_text(f"{stranger.pid}\n")  # what the power cut leaves behind
            assert await pid_file_process(remote, db.pid_file("n1")) is None
            assert await db.running("n1") is None
            for sig in ("STOP", "KILL"):
                assert await signal_pid_file(remote, db.pid_file("n1"), sig) is None
            with pytest.raises(DBError, match="no running node"):
                await db.pause("n1")
            assert await process_state(remote, stranger.pid) in ("S", "R")  # untouched
            await db.start("n1")  # not skipped as "already running"
            again = await db.running("n1")
            assert again is not None and again not in (ours, stranger.pid)
            assert await process_state(remote, again) in ("S", "R")
        finally:
            stranger.kill()
            stranger.wait()
            await db.teardown("n1")
            await lab.close()
            await lab_down("stale")

    asyncio.run(main())
