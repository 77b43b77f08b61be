"""labfs over a real FUSE mount: disk-pause blocks writes until resume; lose-unfsynced keeps only fsynced data."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from raftlab.nemesis.disk import FuseDisk

from raftlab.lab.local import LocalRemote, sweep
from tests.conftest import need_binary, need_root

WRITER = "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT|os.O_APPEND, 0o644); os.write(fd, b'late')"


def need_fuse() -> None:
    need_root()
    need_binary("fusermount3")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")


def test_disk_pause_blocks_writes_and_resume_releases_them(tmp_path: Path) -> None:
    need_fuse()
    data = tmp_path / "data"

    async def main() -> None:
        disk = FuseDisk(LocalRemote("n1", tmp_path), sys.executable, str(data))
        assert await disk.unavailable() is None
        await disk.mount(lazy=False)
        try:
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
        finally:
            await disk.unmount()
        assert (data / "wal").read_bytes() == b"earlylate" and not (tmp_path / "data.labfs").exists()

    try:
        asyncio.run(main())
    finally:
        sweep(tmp_path)


def test_lose_unfsynced_drops_only_what_was_not_fsynced(tmp_path: Path) -> None:
    need_fuse()
    data = tmp_path / "data"

    async def main() -> None:
        disk = FuseDisk(LocalRemote("n1", tmp_path), sys.executable, str(data))
        await disk.mount(lazy=True)
        try:
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
        finally:
            await disk.unmount()

    try:
        asyncio.run(main())
    finally:
        sweep(tmp_path)
