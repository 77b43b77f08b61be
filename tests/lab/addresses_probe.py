"""The partition probe of tests/lab/test_local_addresses.py, importable without pytest (it also runs as nobody).

Real processes in real namespaces: a TCP server on n2, clients on n1 and n3 and on the control
machine; a partition must really stop n1's traffic (a connect times out) while n3 and the control
machine still get through, and healing must bring n1 back.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from raftlab.lab import open_lab
from raftlab.lab.local import LocalLab

SERVER = "import socket,sys; s=socket.create_server((sys.argv[1], int(sys.argv[2]))); print('up', flush=True)\n" \
         "while True:\n c,_=s.accept(); c.sendall(b'hello'); c.close()\n"
CLIENT = "import socket,sys\ntry:\n print(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).recv(5).decode())\n" \
         "except OSError as e:\n print('cut', type(e).__name__)\n"


async def partition_cuts(workdir: Path) -> None:
    lab = await open_lab("local", nodes=3, name="addr", workdir=workdir, net="ns")
    assert isinstance(lab, LocalLab)
    try:
        a2 = lab.address("n2")
        assert {lab.address(h) for h in lab.hosts} == {"10.81.0.1", a2, "10.81.0.3"}
        assert lab.endpoint("n1", "n2", 24500) == (a2, 24500)  # every peer uses the one address
        (workdir / "server.py").write_text(SERVER)
        (workdir / "client.py").write_text(CLIENT)
        py = lab.python("n2")
        await lab.remote("n2").run(f"nohup {py} {workdir}/server.py {a2} 24500 > {lab.node_dir('n2')}/out 2>&1 & "
                                   f"echo $! > {lab.node_dir('n2')}/server.pid")
        for _ in range(100):
            if "up" in Path(lab.node_dir("n2"), "out").read_text():
                break
            await asyncio.sleep(0.05)

        async def from_host(host: str) -> str:
            return (await lab.remote(host).run(f"{py} {workdir}/client.py {a2} 24500")).stdout.strip()

        async def from_control() -> str:
            address, port = lab.endpoint(None, "n2", 24500)
            reader, writer = await asyncio.open_connection(address, port)
            data = await asyncio.wait_for(reader.read(5), 2)
            writer.close()
            return data.decode()

        assert await from_host("n1") == "hello" and await from_host("n3") == "hello"
        await lab.net.partition({"n2": frozenset({"n1"}), "n1": frozenset({"n2"})})
        assert (await from_host("n1")).startswith("cut")  # the partition really drops n1's packets
        assert await from_host("n3") == "hello"  # only the named link is cut
        assert await from_control() == "hello"  # the control machine is never partitioned
        await lab.net.heal()
        assert await from_host("n1") == "hello"
    finally:
        await lab.close()
        subprocess.run(["sh", "-c", f"kill -9 $(cat {workdir}/hosts/n2/server.pid) 2>/dev/null"], check=False)
    assert not (workdir / "userns.pids").exists()  # the namespaces' holders are gone with the lab
