"""host-pause's freezer: a task held in a kernel wait (a paused FUSE disk) counts as paused.

The reproduction of a CI failure: a containers campaign with ``disk-pause`` and ``host-pause``
froze a host whose node was blocked writing to its paused labfs disk; the cgroup stayed FREEZING,
the freeze was refused after 2 s and the fault was recorded as an error. The pure rule is tested
on thread states; the real one on a real cgroup with a writer blocked on a paused labfs mount.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from raftlab.lab import LabError
from raftlab.lab.containers_host import hierarchies
from raftlab.lab.freezer import Freezer, Thread, still_running
from raftlab.lab.local import sweep
from tests.conftest import labfs, need_root

WRITER = "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT|os.O_APPEND, 0o644); os.write(fd, b'late')"


def t(state: str, wchan: str = "", tid: int = 1) -> Thread:
    return Thread(tid=tid, comm="raftlab", state=state, wchan=wchan)


def test_a_pause_is_in_effect_when_no_task_can_run_user_code() -> None:
    frozen_v1 = t("D", "hrtimer_nanosleep")  # v1: a frozen task shows D where it slept
    in_fuse = t("D", "request_wait_answer")  # freezes when labfs answers
    frozen_v2 = t("S", "do_freezer_trap")
    stopped = t("T", "do_signal_stop")
    assert still_running([frozen_v1, in_fuse, frozen_v2, stopped, t("Z")]) == []
    awake = t("S", "ep_poll", tid=7)
    busy = t("R", tid=8)
    assert still_running([frozen_v1, awake, in_fuse, busy]) == [awake, busy]


def _cgroup(name: str) -> Path:
    """A fresh cgroup holding a freezer: the v1 freezer hierarchy where mounted, else cgroup2."""
    points = hierarchies()
    v1 = [p for p, fstype, opts in points if fstype == "cgroup" and "freezer" in opts.split(",")]
    v2 = [p for p, fstype, _ in points if fstype == "cgroup2"]
    if not v1 and not v2:
        pytest.skip("no cgroup freezer mounted (neither v1 freezer nor cgroup2)")
    d = Path((v1 or v2)[0]) / name
    d.mkdir()
    return d


def _join(group: Path, pid: int) -> None:
    (group / "cgroup.procs").write_text(str(pid))


def test_freezing_a_task_blocked_on_a_paused_disk_holds_it_and_thaw_releases_it(tmp_path: Path) -> None:
    need_root()
    group = _cgroup(f"raftlab-test-freezer-{os.getpid()}")
    freezer = Freezer((group,), "test host")
    data = tmp_path / "data"

    async def main() -> None:
        async with labfs(tmp_path, data, lazy=False) as disk:
            (data / "wal").write_bytes(b"early")
            await disk.ctl("pause")
            writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(data / "wal"))
            try:
                await asyncio.sleep(0.3)
                assert Path(f"/proc/{writer.pid}/wchan").read_text() == "request_wait_answer"
                _join(group, writer.pid)
                note = await freezer.freeze()  # raised LabError ("did not freeze") before the fix
                assert "held in a kernel wait" in note and freezer.frozen()
                await disk.ctl("resume")  # its request ends (done or interrupted): it freezes on the way out
                for _ in range(500):
                    if freezer.complete():
                        break
                    await asyncio.sleep(0.01)
                else:
                    pytest.fail(f"the cgroup did not reach frozen after the disk resumed: {freezer.threads()}")
                with pytest.raises(TimeoutError):  # frozen, so it cannot exit
                    await asyncio.wait_for(asyncio.shield(writer.wait()), 0.3)
                await freezer.thaw()
                assert not freezer.frozen()
                assert await asyncio.wait_for(writer.wait(), 10) == 0
                assert (tmp_path / "data.labfs" / "wal").read_bytes() == b"earlylate"  # nothing lost
            finally:
                await freezer.thaw()
                if writer.returncode is None:
                    writer.kill()
                    await writer.wait()

    try:
        asyncio.run(main())
    finally:
        sweep(tmp_path)
        group.rmdir()


def test_a_freeze_that_leaves_a_task_running_is_undone_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that keeps running user code (here: one the freeze never reaches, because the grace
    period is zero and the kernel is asked after it) makes the freeze fail, thawed again."""
    need_root()
    group = _cgroup(f"raftlab-test-freezer-run-{os.getpid()}")
    freezer = Freezer((group,), "test host")
    monkeypatch.setattr("raftlab.lab.freezer.GRACE_S", 0.0)
    monkeypatch.setattr("raftlab.lab.freezer.still_running", lambda threads: list(threads))

    async def main() -> None:
        sleeper = await asyncio.create_subprocess_exec("sleep", "30")
        try:
            _join(group, sleeper.pid)
            with pytest.raises(LabError, match=rf"test host: did not freeze within 0 s; still running: sleep\[{sleeper.pid}\]"):
                await freezer.freeze()
            assert not freezer.frozen()
        finally:
            sleeper.kill()
            await sleeper.wait()

    try:
        asyncio.run(main())
    finally:
        group.rmdir()
