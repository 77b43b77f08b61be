"""KvClient's failure classification against scripted servers on ephemeral ports.

A write whose connection dies after it was sent, or that gets no answer in time, is
IndeterminateError (never retried); one that could not be sent anywhere is Unavailable
(definite); a not-leader reply is followed to the hinted member; typed errors map to their
DefiniteError subclasses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from raftlab.impl.client import CasMismatch, IndeterminateError, KvClient, Unavailable
from raftlab.impl.net.codec import Request, decode_request, encode_reply
from raftlab.impl.net.framing import FrameDecoder, encode_frame

Behaviour = Callable[[Request], tuple[str | None, dict[str, Any]] | None]  # None: hang up


async def scripted(node_id: int, leader: int, behaviour: Behaviour, seen: list[str]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for frame in decoder.feed(data):
                req = decode_request(frame)
                if req.op == "hello":
                    answer: tuple[str | None, dict[str, Any]] | None = (None, {"id": node_id, "leader": leader})
                else:
                    seen.append(f"{node_id}:{req.op}")
                    answer = behaviour(req)
                if answer is None:
                    writer.close()
                    return
                writer.write(encode_frame(encode_reply(req.id, *answer)))
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def port(server: asyncio.Server) -> tuple[str, int]:
    return ("127.0.0.1", server.sockets[0].getsockname()[1])


def test_failures_are_classified() -> None:
    async def scenario() -> None:
        seen: list[str] = []
        follower = await scripted(1, 2, lambda r: ("not-leader", {"leader": 2}), seen)
        leader = await scripted(2, 2, lambda r: (None, {"index": 7}) if r.op == "put" else
                                ("cas-mismatch", {"value": b"now", "message": "no"}), seen)
        client = KvClient([port(follower), port(leader)], timeout=2.0)
        assert await client.put("k", b"v") == 7
        with pytest.raises(CasMismatch) as e:
            await client.cas("k", b"old", b"new")
        assert e.value.current == b"now"
        assert seen[-2:] == ["2:put", "2:cas"]  # redirected by the hint, and then stuck to the leader
        await client.close()

        hangs_up = await scripted(3, 3, lambda r: None, seen)
        client = KvClient([port(hangs_up)], timeout=2.0)
        with pytest.raises(IndeterminateError, match="may or may not"):
            await client.put("k", b"v")
        assert seen.count("3:put") == 1  # never retried
        await client.close()

        closed = await scripted(4, 4, lambda r: (None, {}), seen)
        closed_port = port(closed)
        closed.close()
        await closed.wait_closed()
        client = KvClient([closed_port], timeout=0.3)
        with pytest.raises(Unavailable, match="no answer"):
            await client.put("k", b"v")  # connection refused: nothing was sent
        await client.close()

        blackhole = await asyncio.start_server(lambda r, w: asyncio.sleep(10), "127.0.0.1", 0)
        client = KvClient([port(blackhole)], timeout=0.3)
        with pytest.raises(Unavailable):
            await client.put("k", b"v")  # hello never answered, so the put was never sent
        await client.close()
        assert "4:put" not in seen
        for server in (follower, leader, hangs_up, blackhole):
            server.close()

    asyncio.run(scenario())
