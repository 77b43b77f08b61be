"""The netns lab, as root: hosts with their own sshd, driven over SSH, partitioned with iptables.

Uses the test names of the labs helper: namespaces rlt1..rlt3, bridge rltbr0, 10.78.0.0/24.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from raftlab.lab import LabConflict, LabError, lab_down, open_lab
from raftlab.lab.ssh import SshLab
from tests.conftest import need_binary, need_root

PROBE = ("{python} -c 'import socket,sys; socket.create_connection((sys.argv[1], 22), timeout=0.5)' {address}")


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


async def reaches(lab: SshLab, src: str, dst: str) -> bool:
    cmd = PROBE.format(python=lab.python(src), address=lab.endpoint(src, dst, 22)[0])
    return (await lab.remote(src).run(cmd, check=False)).exit_status == 0


def test_netns_lab_over_ssh_with_iptables_partitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_root()
    need_binary("ip", "iptables", "sshd", "ssh-keygen", "unshare")
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))

    async def main() -> None:
        lab = await open_lab("netns", nodes=3, name="rlt", workdir=tmp_path / "w", prefix="rlt", subnet="10.78.0")
        assert isinstance(lab, SshLab)
        try:
            names = [(await lab.remote(h).run("hostname")).stdout.strip() for h in lab.hosts]
            assert names == ["n1", "n2", "n3"]
            r = await lab.remote("n2").run("ip -4 -o addr show eth0")
            assert "10.78.0.12/24" in r.stdout
            (tmp_path / "up.txt").write_text("over sftp")
            await lab.remote("n3").put(str(tmp_path / "up.txt"), f"{lab.node_dir('n3')}/x.txt")
            await lab.remote("n3").get(f"{lab.node_dir('n3')}/x.txt", str(tmp_path / "down.txt"))
            assert (tmp_path / "down.txt").read_text() == "over sftp"
            with pytest.raises(LabError, match="n1: `false` exited 1"):
                await lab.remote("n1").run("false")
            with pytest.raises(LabError, match=r"did not finish within 0\.3s"):
                await lab.remote("n1").run("sleep 2 &", timeout=0.3)

            # A second lab that would reuse these names is refused, and this one is left intact.
            with pytest.raises(LabConflict, match="rlt1, rlt2, rlt3, bridge rltbr0 already exist"):
                await open_lab("netns", nodes=3, name="rlt-other", workdir=tmp_path / "o", prefix="rlt")
            assert (await lab.remote("n1").run("hostname")).stdout.strip() == "n1"

            # Someone else's rule on n1 must survive our heal (jepsen-io/jepsen#600).
            await lab.remote("n1").run("iptables -w -A INPUT -s 192.0.2.1 -j DROP")
            assert await reaches(lab, "n1", "n2") and await reaches(lab, "n2", "n1")
            await lab.net.partition({"n1": frozenset({"n2"})})
            assert not await reaches(lab, "n1", "n2")  # n2's SYN-ACK is dropped on n1
            assert not await reaches(lab, "n2", "n1")  # n2's SYN is dropped on n1
            assert await reaches(lab, "n1", "n3") and await reaches(lab, "n3", "n2")
            await lab.net.heal()
            assert await reaches(lab, "n1", "n2") and await reaches(lab, "n2", "n1")
            rules = (await lab.remote("n1").run("iptables -w -S")).stdout
            assert "-A INPUT -s 192.0.2.1/32 -j DROP" in rules
            assert "-A RAFTLAB" not in rules
            await lab.net.remove()  # what `lab down` does on hosts that are not ours
            rules = (await lab.remote("n1").run("iptables -w -S")).stdout
            assert "RAFTLAB" not in rules and "-A INPUT -s 192.0.2.1/32 -j DROP" in rules
        finally:
            await lab.close()
        await lab_down("rlt")
        assert not any(line.startswith("rlt") for line in namespaces().splitlines())
        assert subprocess.run(["ip", "link", "show", "rltbr0"], capture_output=True).returncode != 0
        leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "w")], capture_output=True, text=True).stdout
        assert leftovers == ""
        assert not (tmp_path / "w").exists()

    try:
        asyncio.run(main())
    finally:
        asyncio.run(lab_down("rlt"))
