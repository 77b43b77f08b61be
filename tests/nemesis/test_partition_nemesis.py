"""The partition nemesis cuts real links through lab.net and heals them; leader shapes ask the DB."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from raftlab.nemesis import package
from raftlab.nemesis.targets import op

from raftlab.history import OpType
from raftlab.lab import lab_down, open_lab
from tests.nemesis.standin import SleepDB


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))


async def carries(addr: tuple[str, int]) -> bool:
    """Whether a fresh connection through ``addr`` gets an echo back within a short wait."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(b"ping")
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(4), 0.3) == b"ping"
    except TimeoutError:
        return False
    finally:
        writer.close()


def test_isolate_the_leader_then_heal(tmp_path: Path, seed: int) -> None:
    async def main() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(data)
            writer.close()

        servers = {h: await asyncio.start_server(echo, "127.0.0.1", 19100 + i) for i, h in enumerate(("n1", "n2", "n3"))}
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="pn")
        try:
            ports = {h: s.sockets[0].getsockname()[1] for h, s in servers.items()}
            links = {(a, b): lab.endpoint(a, b, ports[b]) for a in lab.hosts for b in lab.hosts if a != b}
            nem = package("partition-leader", db=SleepDB(lab, leader="n3"), rng=random.Random(seed),
                          interval=1).nemesis
            await nem.setup(lab)
            done = await nem.invoke(op("start-partition", "leader"))
            assert done.type == OpType.INFO and done.error is None
            assert done.value["leader"] == "n3" and done.value["description"] == "n1 n2 | n3"
            for (a, b), addr in links.items():
                assert await carries(addr) == ("n3" not in (a, b)), (a, b)
            assert await carries(lab.endpoint(None, "n3", ports["n3"]))  # clients are never cut
            done = await nem.invoke(op("stop-partition"))
            assert done.error is None
            for addr in links.values():
                assert await carries(addr)
            await nem.teardown()
        finally:
            await lab.close()
            await lab_down("pn")
            for s in servers.values():
                s.close()

    asyncio.run(main())
