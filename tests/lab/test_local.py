"""The local lab: hosts are directories, commands are subprocesses, state is recorded and removed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from raftlab.lab import LabError, LabState, RemoteError, lab_down, lab_status, open_lab


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))
    return tmp_path / "labs"


def test_open_runs_commands_and_moves_files(tmp_path: Path) -> None:
    async def main() -> None:
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="t1")
        try:
            assert list(lab.hosts) == ["n1", "n2", "n3"]
            r = lab.remote("n2")
            out = await r.run("pwd; echo $((6*7)) >&2; cat", stdin="hello")
            assert out.stdout.splitlines() == [lab.node_dir("n2"), "hello"] and out.stderr.strip() == "42"
            with pytest.raises(RemoteError, match="n2: `exit 3` exited 3"):
                await r.run("exit 3")
            assert (await r.run("exit 3", check=False)).exit_status == 3
            with pytest.raises(LabError, match=r"did not finish within 0\.3s"):
                await r.run("sleep 2 &", timeout=0.3)  # the background sleep holds stdout open
            (tmp_path / "f.txt").write_text("payload")
            await r.put(str(tmp_path / "f.txt"), "sub/f.txt")
            assert Path(lab.node_dir("n2"), "sub/f.txt").read_text() == "payload"
            await r.get("sub/f.txt", str(tmp_path / "back.txt"))
            assert (tmp_path / "back.txt").read_text() == "payload"
            assert lab.endpoint(None, "n1", 19001) == ("127.0.0.1", 19001)
            assert lab.endpoint("n1", "n1", 19001) == ("127.0.0.1", 19001)
            assert lab.endpoint("n1", "n2", 19002)[1] != 19002
            with pytest.raises(LabError, match="unknown host 'n9'"):
                lab.remote("n9")
        finally:
            await lab.close()

    asyncio.run(main())


def test_state_is_reused_and_down_removes_processes_and_dirs(tmp_path: Path) -> None:
    async def main() -> None:
        lab = await open_lab("local", nodes=2, workdir=tmp_path / "w", name="t2")
        node_dir = lab.node_dir("n1")
        # A stand-in node: a background process with a pid file, its command line naming its dir.
        await lab.remote("n1").run(
            "nohup sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > node.pid", check=True)
        pid = int(Path(node_dir, "node.pid").read_text())
        assert Path(f"/proc/{pid}/stat").read_text().split()[2] in "SR"
        await lab.close()
        assert LabState.load("t2") is not None
        again = await open_lab("local", nodes=2, name="t2")
        assert again.node_dir("n1") == node_dir  # reused, not recreated elsewhere
        await again.close()
        with pytest.raises(LabError, match="is a local lab, not netns"):
            await open_lab("netns", name="t2")
        status = await lab_status("t2")
        assert status is not None and status["hosts"]["n1"]["running"] == [pid]
        await lab_down("t2")
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
                break
            time.sleep(0.02)
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        assert not Path(node_dir).exists() and LabState.load("t2") is None
        assert await lab_down("t2") is None

    asyncio.run(main())


def test_bad_state_file_is_named(labs_dir: Path) -> None:
    labs_dir.mkdir(parents=True)
    (labs_dir / "broken.json").write_text("{not json")
    with pytest.raises(LabError, match=r"broken\.json is unreadable"):
        LabState.load("broken")
    with pytest.raises(LabError, match="unknown lab kind 'moon'"):
        asyncio.run(open_lab("moon", name="x"))
    assert os.environ["RAFTLAB_LABS_DIR"] == str(labs_dir)
