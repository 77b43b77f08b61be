"""labfs over a real FUSE mount: disk-pause blocks writes until resume; lose-unfsynced keeps only fsynced data."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

import pytest
from raftlab.nemesis import package
from raftlab.nemesis.disk import FuseDisk
from raftlab.nemesis.process import process_state
from raftlab.nemesis.targets import op

from raftlab.lab import lab_down, open_lab
from raftlab.lab.local import LocalRemote, sweep
from tests.conftest import labfs, need_fuse
from tests.nemesis.standin import SleepDB

WRITER = "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT|os.O_APPEND, 0o644); os.write(fd, b'late')"


def test_disk_pause_blocks_writes_and_resume_releases_them(tmp_path: Path) -> None:
    need_fuse()
    data = tmp_path / "data"

    async def main() -> None:
        assert await FuseDisk(LocalRemote("n1", tmp_path), sys.executable, str(data)).unavailable() is None
        async with labfs(tmp_path, data, lazy=False) as disk:
            (data / "wal").write_bytes(b"early")
            await disk.ctl("pause")
            writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(data / "wal"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer.wait()), 0.5)
            # waiting in the kernel for the paused filesystem (request_wait_answer, FUSE)
            assert Path(f"/proc/{writer.pid}/wchan").read_text() == "request_wait_answer"
            assert (tmp_path / "data.labfs" / "wal").read_bytes() == b"early"
            assert "paused" in await disk.ctl("status")
            await disk.ctl("resume")
            assert await asyncio.wait_for(writer.wait(), 10) == 0
            assert (tmp_path / "data.labfs" / "wal").read_bytes() == b"earlylate"
        assert (data / "wal").read_bytes() == b"earlylate" and not (tmp_path / "data.labfs").exists()

    try:
        asyncio.run(main())
    finally:
        sweep(tmp_path)


def test_lose_unfsynced_drops_only_what_was_not_fsynced(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def main() -> None:
        async with labfs(tmp_path, data, lazy=True) as disk:
            fd = os.open(data / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(fd, b"a" * 5001)
            os.fsync(fd)
            os.write(fd, b"b" * 3001)
            os.close(fd)
            (data / "meta").write_bytes(b"old")
            with open(data / "meta", "r+b") as f:
                f.write(b"x")
                f.flush()
                os.fsync(f.fileno())
            with open(data / "meta", "r+b") as f:
                f.truncate(0)
                f.write(b"unsynced overwrite")
            (data / "config").write_bytes(b"durable")
            with open(data / "config", "rb+") as f:
                os.fsync(f.fileno())
            (data / "config").write_bytes(b"rewritten, never fsynced")  # open(O_TRUNC) + write
            assert (data / "log").stat().st_size == 8002  # visible through the mount before the crash
            assert "dropped" in await disk.ctl("crash")
            assert (data / "log").read_bytes() == b"a" * 5001
            assert (data / "meta").read_bytes() == b"xld"
            assert (data / "config").read_bytes() == b"durable"

    try:
        asyncio.run(main())
    finally:
        sweep(tmp_path)


def test_lose_unfsynced_nemesis_kills_drops_and_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_fuse()
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))

    async def main() -> None:
        lab = await open_lab("local", nodes=2, workdir=tmp_path / "w", name="lu")
        try:
            db = SleepDB(lab)
            for h in lab.hosts:
                await db.start(h)
            nem = package("lose-unfsynced", db=db, rng=random.Random(0), interval=1).nemesis
            await nem.setup(lab)  # restarts each node around its new mount
            data = Path(lab.node_dir("n1")) / "data"
            with open(data / "wal", "wb") as f:
                f.write(b"synced")
                f.flush()
                os.fsync(f.fileno())
            with open(data / "wal", "ab") as f:
                f.write(b"+lost")
            old = int(Path(db.pid_file("n1")).read_text())
            done = await nem.invoke(op("crash", ["n1"]))
            assert done.error is None and done.value["done"] == ["n1"]
            assert await process_state(lab.remote("n1"), old) in (None, "Z")
            assert (data / "wal").read_bytes() == b"synced"
            done = await nem.invoke(op("restart"))
            assert done.value["done"] == ["n1"]
            assert await process_state(lab.remote("n1"), int(Path(db.pid_file("n1")).read_text())) in ("S", "R")
            await nem.teardown()
            assert (data / "wal").read_bytes() == b"synced" and not data.with_suffix(".labfs").exists()
        finally:
            await lab.close()
            await lab_down("lu")

    asyncio.run(main())


def test_missing_fuse_support_is_reported_not_assumed(tmp_path: Path) -> None:
    system_python = "/usr/bin/python3"
    if not os.path.exists(system_python) or os.system(f"{system_python} -c 'import mfusepy' 2>/dev/null") == 0:
        pytest.skip("needs a python without mfusepy to stand for a host lacking it")
    disk = FuseDisk(LocalRemote("n1", tmp_path), system_python, str(tmp_path / "data"))
    reason = asyncio.run(disk.unavailable())
    assert reason is not None and ("mfusepy" in reason or "fuse" in reason)
