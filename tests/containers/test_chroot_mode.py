"""The containers lab's fallback where systemd-nspawn is missing: chroot hosts with sshd as PID 1.

Two hosts, not provisioned (the nspawn test covers provision.sh): each answers over SSH as
itself in its own PID namespace, whole-host pause and power cut work, and ``down`` leaves no
namespace, mount or cgroup behind.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from raftlab.lab import LabConflict, lab_down, lab_up
from raftlab.lab.containers import attach, hosts
from tests.conftest import need_binary, need_root

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_chroot_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_root()
    need_binary("debootstrap", "ip", "ssh-keygen", "unshare", "chroot")
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))

    async def scenario() -> list[object]:
        try:
            state = await lab_up("containers", name="chroot", nodes=2, workdir=tmp_path / "lab", prefix="rlcx",
                                 bridge="rlcxbr0", subnet="10.79.0", mode="chroot", provision="0")
        except LabConflict as e:  # somebody's own containers lab holds these names: leave it alone
            pytest.skip(f"cannot take the test lab's names: {e}")
        lab = await attach(state)
        seen: list[object] = []
        try:
            for h in lab.hosts:
                seen.append((await lab.remote(h).run("echo $(hostname) $(cat /proc/1/comm)")).stdout.split())
            await lab.pause_host("n2")
            seen.append(lab.machine("n2").frozen())
            await lab.resume_host("n2")
            old = lab.host_pid1("n2")
            seen.append(await lab.power_cut("n2") == old and lab.host_pid1("n2") is None)
            await lab.power_on("n2")
            seen.append((await lab.remote("n2").run("hostname")).stdout.strip())
        finally:
            await lab.close()
            machines = hosts(state)
            await lab_down("chroot")
        seen.append([m.pid1() for m in machines])
        return seen

    names1, names2, frozen, cut, back, pids = asyncio.run(scenario())
    assert names1 == ["n1", "sshd"] and names2 == ["n2", "sshd"]  # sshd is PID 1 of each host
    assert frozen is True
    assert cut is True
    assert back == "n2"
    assert pids == [None, None]
    assert "rlcx" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert str(tmp_path / "lab") not in Path("/proc/self/mounts").read_text()
    assert not list(Path("/sys/fs/cgroup").glob("*/raftlab-rlcx*"))
