"""Link faults in the proxy mesh really happen: measured delay, measured rate, one direction lost, resets.

Real sockets on 127.0.0.1; a sink server records when each byte arrives and can answer. The
timings are lower bounds the fault must impose (a shaped link is never faster than its shape);
nothing asserts how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from raftlab.nemesis.link import both_ways, pick

from raftlab.lab.linkshape import drop_commands, reset_command, split, tc_commands
from raftlab.lab.proxy import ProxyMesh
from raftlab.protocols import LinkShape
from tests.lab.test_proxy import echo_server, read_exactly

NOTHING = 0.4


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int = 16) -> float:
    started = time.monotonic()
    writer.write(b"x" * size)
    await writer.drain()
    await read_exactly(reader, size)
    return time.monotonic() - started


def test_delay_and_jitter_slow_every_round_trip_and_heal_restores() -> None:
    async def main() -> None:
        server, port, _ = await echo_server()
        mesh = ProxyMesh()
        try:
            reader, writer = await asyncio.open_connection(*mesh.endpoint("n1", "n2", port))
            await round_trip(reader, writer)
            await mesh.shape({("n1", "n2"): LinkShape(delay=0.1, jitter=0.05, seed=1),
                              ("n2", "n1"): LinkShape(delay=0.1)})
            slow = [await round_trip(reader, writer) for _ in range(5)]
            assert min(slow) >= 0.2, slow  # 0.1 s each way, at least
            assert max(slow) <= 0.25 + 1.0  # and the jitter stays bounded (generous: a loaded machine)
            await mesh.unshape()
            assert await round_trip(reader, writer) < 0.2  # every shaped round trip took 0.2 s or more
            writer.close()
        finally:
            mesh.close()
            server.close()

    asyncio.run(main())


def test_a_rate_limit_caps_throughput_in_order() -> None:
    async def main() -> None:
        server, port, _ = await echo_server()
        mesh = ProxyMesh()
        try:
            await mesh.shape({("n1", "n2"): LinkShape(rate=50_000)})
            reader, writer = await asyncio.open_connection(*mesh.endpoint("n1", "n2", port))
            payload = bytes(range(256)) * 600  # 153600 bytes: 3 s at 50 kB/s
            started = time.monotonic()
            writer.write(payload)
            await writer.drain()
            assert await read_exactly(reader, len(payload), timeout=20) == payload  # nothing lost or reordered
            assert time.monotonic() - started >= 2.5
            writer.close()
        finally:
            mesh.close()
            server.close()

    asyncio.run(main())


def test_a_one_way_blackhole_loses_one_direction_only_until_healed() -> None:
    async def main() -> None:
        got: list[bytes] = []

        async def talker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"from-n2")  # the server side (n2) speaks first, and records what it hears
            await writer.drain()
            while data := await reader.read(100):
                got.append(data)

        server = await asyncio.start_server(talker, "127.0.0.1", 0)
        mesh = ProxyMesh()
        try:
            await mesh.shape({("n1", "n2"): LinkShape(drop=True)})  # n2 does not hear n1
            reader, writer = await asyncio.open_connection(*mesh.endpoint("n1", "n2", server.sockets[0].getsockname()[1]))
            assert await read_exactly(reader, 7) == b"from-n2"  # n1 hears n2
            writer.write(b"from-n1")
            await writer.drain()
            await asyncio.sleep(NOTHING)
            assert got == []  # n2 heard nothing
            await mesh.unshape()
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.05)
            assert b"".join(got) == b"from-n1"  # held, not lost: delivered once healed
            writer.close()
        finally:
            mesh.close()
            server.close()

    asyncio.run(main())


def test_reset_breaks_the_connections_of_a_link_with_an_rst() -> None:
    async def main() -> None:
        server, port, _ = await echo_server()
        mesh = ProxyMesh()
        try:
            reader, writer = await asyncio.open_connection(*mesh.endpoint("n1", "n2", port))
            other_r, other_w = await asyncio.open_connection(*mesh.endpoint("n1", "n3", port))
            await round_trip(reader, writer)
            await mesh.reset([("n2", "n1")])
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(10), 5)
            assert await round_trip(other_r, other_w) >= 0  # another link is untouched
            reader, writer = await asyncio.open_connection(*mesh.endpoint("n1", "n2", port))
            assert await round_trip(reader, writer) >= 0  # and the link works again
            writer.close()
            other_w.close()
        finally:
            mesh.close()
            server.close()

    asyncio.run(main())


def test_link_targets_are_pure_and_directed() -> None:
    import random

    hosts = ["n1", "n2", "n3"]
    assert pick("slow", "one", hosts, random.Random(1), None) == pick("slow", "one", hosts, random.Random(1), None)
    assert pick("oneway", "leader-deaf", hosts, random.Random(1), "n2") == [("n1", "n2"), ("n3", "n2")]
    assert pick("oneway", "leader-mute", hosts, random.Random(1), "n2") == [("n2", "n1"), ("n2", "n3")]
    assert len(pick("oneway", "link", hosts, random.Random(1), None)) == 1
    assert len(pick("slow", "all", hosts, random.Random(1), None)) == 6
    assert both_ways([("a", "b")]) == [("a", "b"), ("b", "a")]


def test_tc_and_iptables_commands_shape_by_destination() -> None:
    addresses = {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3"}
    sends, deaf = split({("n1", "n2"): LinkShape(delay=0.05, rate=1000), ("n1", "n3"): LinkShape(rate=1000),
                         ("n3", "n2"): LinkShape(drop=True)})
    tc = tc_commands(sends["n1"], addresses)
    assert "match ip dst 10.0.0.2/32 flowid 1:" in tc and "match ip dst 10.0.0.3/32" in tc
    assert "netem delay 50.000ms" in tc and "htb rate 8000bit" in tc
    assert deaf == {"n2": ["n3"]}
    assert "-s 10.0.0.3 -j DROP" in drop_commands(deaf["n2"], addresses, "iptables -w")
    assert "REJECT --reject-with tcp-reset" in reset_command(["n2"], addresses, "iptables -w")
    assert "tc qdisc add" not in tc_commands({}, addresses)
