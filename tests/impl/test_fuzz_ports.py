"""A bounded, seeded fuzz of both ports of a live cluster with authentication on (issue 10), in
the spirit of h11's fuzzing: strangers send random bytes and mangled handshakes; an insider
(holding the cluster key, authenticated as a member) sends mutated and random Raft messages,
so the validation layer, not only the codec, meets the junk. Every member must stay up and keep
serving; the seed is printed and replays the same frames."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import msgpack
import pytest
from raftlab.impl.client import KvClient
from raftlab.impl.cluster import LocalCluster
from raftlab.impl.net.auth import read_key_file
from raftlab.impl.net.codec import encode_message, encode_request
from raftlab.impl.net.framing import encode_frame
from raftlab.impl.raft.messages import Entry, EntryType, Message, MsgType

from tests.impl.test_auth import peer_socket
from tests.impl.test_cluster import converged, leader_of

pytestmark = pytest.mark.slow
FRAMES = 400


def junk(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 64))
    if kind == 1:
        return encode_frame(rng.randbytes(rng.randrange(0, 300)))
    if kind == 2:
        return (rng.randrange(1 << 32)).to_bytes(4, "big") + rng.randbytes(rng.randrange(16))
    value = [rng.choice([b"raftlab-auth", "peer", "rw", 1, -1, 2**63, None, rng.randbytes(16)])
             for _ in range(rng.randrange(6))]
    return encode_frame(msgpack.packb(value, use_bin_type=True))


def number(rng: random.Random, near: int) -> int:
    return rng.choice([0, 1, near, near + 1, max(0, near - 1), rng.randrange(1 << 20), (1 << 62) + 1,
                       (1 << 64) - 1, rng.randrange(1 << 64)])


def random_message(rng: random.Random, to: int, frm: int, term: int) -> Message:
    entries = tuple(Entry(term=number(rng, term), index=number(rng, 5), type=rng.choice(list(EntryType)),
                          data=rng.randbytes(rng.randrange(20))) for _ in range(rng.randrange(3)))
    return Message(type=rng.choice(list(MsgType)), to=rng.choice([to, to, 99]), from_=frm, term=number(rng, term),
                   log_term=number(rng, term), index=number(rng, 5), entries=entries, commit=number(rng, 5),
                   reject=rng.random() < 0.3, reject_hint=number(rng, 3), hint_term=number(rng, term),
                   context=rng.randbytes(rng.randrange(24)))


def mutate(rng: random.Random, frame: bytes) -> bytes:
    raw = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        raw[rng.randrange(4, len(raw))] ^= 1 << rng.randrange(8)
    return bytes(raw)


def send_all(port: int, chunks: list[bytes], sock: socket.socket | None = None) -> None:
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        for c in chunks:
            s.sendall(c)
    except OSError:
        pass  # the node closed it: that is the point
    finally:
        s.close()


def test_fuzzed_ports_leave_every_member_serving(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    with LocalCluster(3, tmp_path, base_port=22300, auth=True) as cluster:
        cluster.start_all()
        key = cluster.client_key()
        cluster_key = read_key_file(cluster.secret_file)

        async def rows() -> list[dict[str, object]]:
            client = KvClient(cluster.endpoints(), timeout=5.0, key=key)
            await leader_of(client)
            await client.put("before", b"1")
            out = await converged(client)
            await client.close()
            return out

        term = int(rows_before[0]["term"]) if (rows_before := asyncio.run(rows())) else 1
        for target in cluster.ids:
            for port in (cluster.peer_port(target), cluster.client_port(target)):
                for _ in range(8):  # strangers: several connections of junk each
                    send_all(port, [junk(rng) for _ in range(FRAMES // 40)])
            frm = rng.choice([i for i in cluster.ids if i != target])
            frames = []
            for _ in range(FRAMES):
                frame = encode_frame(encode_message(random_message(rng, target, frm, term)))
                frames.append(mutate(rng, frame) if rng.random() < 0.2 else frame)
            send_all(0, frames, peer_socket(cluster.peer_port(target), cluster_key, frm))
            requests = [encode_frame(encode_request(i, rng.choice(["status", "hello", "get", "put", "nope"])))
                        for i in range(FRAMES // 4)]
            send_all(cluster.client_port(target), [mutate(rng, r) for r in requests])

        async def serving() -> None:
            client = KvClient(cluster.endpoints(), timeout=10.0, key=key)
            await leader_of(client, timeout=30)
            for i in range(10):
                await client.put(f"after-{i}", b"ok")
            assert await client.get("after-9") == b"ok"
            await converged(client, timeout=30)
            await client.close()

        asyncio.run(serving())
        assert all(cluster.running(i) for i in cluster.ids), "a member died under fuzzing"
        for i in cluster.ids:
            assert "Traceback" not in (cluster.node_dir(i) / "node.out").read_text()
