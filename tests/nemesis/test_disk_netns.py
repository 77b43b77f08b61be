"""As root: the disk nemesis over SSH on the netns lab (mount under a running node, pause, resume, teardown)."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from raftlab.nemesis import package
from raftlab.nemesis.targets import op

from raftlab.lab import lab_down, open_lab
from tests.conftest import need_binary, need_root
from tests.nemesis.standin import SleepDB

WRITE = "nohup {py} -c \"open('{path}', 'a').write('x')\" >/dev/null 2>&1 </dev/null & echo $!"


def test_disk_pause_over_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    need_root()
    need_binary("ip", "sshd", "fusermount3")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))

    async def main() -> None:
        lab = await open_lab("netns", nodes=2, name="rltd", workdir=tmp_path / "w", prefix="rltd", subnet="10.78.1")
        try:
            db = SleepDB(lab, leader="n2")
            for h in lab.hosts:
                await db.start(h)
            pkg = package("disk-pause", db=db, rng=random.Random(seed), interval=1)
            await pkg.nemesis.setup(lab)
            r = lab.remote("n2")
            data = f"{lab.node_dir('n2')}/data"
            assert (await r.run(f"grep ' {data} fuse' /proc/mounts")).stdout  # mounted inside n2's session
            done = await pkg.nemesis.invoke(op("disk-pause", "leader"))
            assert done.error is None and done.value["done"] == ["n2"]
            pid = int((await r.run(WRITE.format(py=lab.python("n2"), path=f"{data}/f"))).stdout)
            await asyncio.sleep(0.5)
            assert (await r.run(f"test -d /proc/{pid}", check=False)).exit_status == 0  # still blocked
            assert not Path(f"{data}.labfs/f").exists()
            done = await pkg.nemesis.invoke(op("disk-resume"))
            assert done.error is None
            for _ in range(100):
                if Path(f"{data}.labfs/f").exists():
                    break
                await asyncio.sleep(0.05)
            assert Path(f"{data}.labfs/f").read_text() == "x"
            await pkg.nemesis.teardown()
            assert (await r.run(f"grep ' {data} fuse' /proc/mounts", check=False)).exit_status != 0
            assert Path(f"{data}/f").read_text() == "x"  # the data moved back in place
        finally:
            await lab.close()
            await lab_down("rltd")

    asyncio.run(main())
