"""Authentication (impl/net/auth.py) and validated input on real processes (issue 10).

Pure handshake transcripts first (who may connect as what), then a 3-member cluster started with
a cluster key: unauthenticated and wrong-key peers and clients are refused with one log line, a
read-only client cannot write, a member cannot speak for another, and the issue's forged frames,
sent by an authenticated insider, are refused by the validation layer while the cluster serves.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path

import pytest
from raftlab.impl.client import KvClient, Unavailable, ValidationError
from raftlab.impl.cluster import LocalCluster
from raftlab.impl.net.auth import (
    Acceptor,
    AuthError,
    Connector,
    Key,
    new_cluster_key,
    read_key_file,
    write_key_file,
)
from raftlab.impl.net.codec import encode_message
from raftlab.impl.net.framing import FrameDecoder, encode_frame
from raftlab.impl.raft.messages import Entry, Message, MsgType

from tests.impl.test_cluster import converged, leader_of

N = 16


def nonce() -> bytes:
    return os.urandom(N)


def run(acceptor: Acceptor, connector: Connector) -> tuple[str, int]:
    identity, reply = acceptor.check(connector.answer(acceptor.challenge()))
    assert connector.confirm(reply) == acceptor.my_id
    return identity.role, identity.member


def test_handshake_roles_and_refusals() -> None:
    key = new_cluster_key()
    acc = Acceptor(key, 1, nonce(), members=(1, 2, 3))
    assert run(acc, Connector(key, "peer", nonce(), my_id=2, expect=1)) == ("peer", 2)
    assert run(Acceptor(key, 1, nonce()), Connector(key.derive("rw"), "rw", nonce())) == ("rw", 0)
    assert run(Acceptor(key, 1, nonce()), Connector(key.derive("ro"), "ro", nonce())) == ("ro", 0)
    with pytest.raises(AuthError, match="wrong key"):
        run(Acceptor(key, 1, nonce(), members=(1, 2)), Connector(new_cluster_key(), "peer", nonce(), my_id=2))
    with pytest.raises(AuthError, match="cannot authenticate as peer"):  # a client key never makes a member
        run(Acceptor(key, 1, nonce(), members=(1, 2)), Connector(key.derive("rw"), "peer", nonce(), my_id=2))
    with pytest.raises(AuthError, match="wrong key"):  # a read-only key cannot claim read-write
        run(Acceptor(key, 1, nonce()), Connector(Key(kind="rw", secret=key.derive("ro").secret), "rw", nonce()))
    with pytest.raises(AuthError, match="not another member"):
        run(Acceptor(key, 1, nonce(), members=(1, 2)), Connector(key, "peer", nonce(), my_id=9))
    with pytest.raises(AuthError, match="expected 3"):  # mutual: the member reached is the one dialled
        run(Acceptor(key, 2, nonce(), members=(1, 2, 3)), Connector(key, "peer", nonce(), my_id=1, expect=3))
    # an impostor listening on a peer's port, without the key, cannot prove itself
    impostor = Acceptor(new_cluster_key(), 1, nonce(), members=(1, 2))
    conn = Connector(key, "peer", nonce(), my_id=2, expect=1)
    answer = conn.answer(impostor.challenge())
    with pytest.raises(AuthError):
        impostor.check(answer)
    # a recorded answer does not pass a fresh challenge
    first = Acceptor(key, 1, nonce(), members=(1, 2))
    recorded = Connector(key, "peer", nonce(), my_id=2).answer(first.challenge())
    with pytest.raises(AuthError, match="wrong key"):
        Acceptor(key, 1, nonce(), members=(1, 2)).check(recorded)


def test_key_files(tmp_path: Path) -> None:
    key = new_cluster_key()
    write_key_file(tmp_path / "k", key)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert read_key_file(tmp_path / "k") == key
    (tmp_path / "bad").write_text("raftlab-key 1 cluster zz\n")
    with pytest.raises(AuthError, match="not hex"):
        read_key_file(tmp_path / "bad")


# --- real processes -----------------------------------------------------------------------


def recv_frame(s: socket.socket, decoder: FrameDecoder) -> bytes | None:
    while True:
        data = s.recv(65536)
        if not data:
            return None
        frames = decoder.feed(data)
        if frames:
            return frames[0]


def peer_socket(port: int, key: Key, my_id: int) -> socket.socket:
    """A connection to a member's peer port, authenticated as member ``my_id``."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    decoder = FrameDecoder()
    conn = Connector(key, "peer", nonce(), my_id=my_id)
    challenge = recv_frame(s, decoder)
    assert challenge is not None
    s.sendall(encode_frame(conn.answer(challenge)))
    reply = recv_frame(s, decoder)
    assert reply is not None
    conn.confirm(reply)
    return s


def closed_by_node(s: socket.socket) -> bool:
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, TimeoutError):
        return False
    return True


def test_cluster_with_a_key_refuses_strangers_and_forgeries(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=22600, auth=True) as cluster:
        cluster.start_all()
        key = cluster.client_key()
        cluster_key = read_key_file(cluster.secret_file)

        async def serving() -> int:
            client = KvClient(cluster.endpoints(), timeout=5.0, key=key)
            leader = await leader_of(client)
            await client.put("k", b"v1")
            assert await client.get("k") == b"v1"
            await client.close()
            return leader

        leader = asyncio.run(serving())
        term = asyncio.run(status_of(cluster, key))[0]["term"]

        async def strangers() -> None:
            with pytest.raises(Unavailable, match="requires authentication"):
                await KvClient(cluster.endpoints(), timeout=1.0).get("k")
            wrong = KvClient(cluster.endpoints(), timeout=1.0, key=new_cluster_key().derive("rw"))
            with pytest.raises(Unavailable, match="authentication failed"):
                await wrong.get("k")
            await wrong.close()
            ro = KvClient(cluster.endpoints(), timeout=5.0, key=cluster_key.derive("ro"))
            assert await ro.get("k") == b"v1"
            with pytest.raises(ValidationError, match="read-only"):
                await ro.put("k", b"evil")
            await ro.close()

        asyncio.run(strangers())
        # an unauthenticated peer: the killer frame (term 2^64-1) never gets in
        forged = encode_frame(encode_message(Message(type=MsgType.APP_RESP, to=2, from_=1, term=(1 << 64) - 1)))
        with socket.create_connection(("127.0.0.1", cluster.peer_port(2)), timeout=5) as s:
            s.sendall(forged)
            assert closed_by_node(s)
        # an authenticated member cannot speak for another
        with peer_socket(cluster.peer_port(2), cluster_key, 1) as s:
            s.sendall(encode_frame(encode_message(Message(type=MsgType.HEARTBEAT, to=2, from_=3, term=term))))
            assert closed_by_node(s)
        # an insider (the key, a member's id) sends the attacks: validation refuses each
        follower = next(i for i in cluster.ids if i != leader)
        with peer_socket(cluster.peer_port(leader), cluster_key, follower) as s:
            for m in (Message(type=MsgType.APP_RESP, to=leader, from_=follower, term=(1 << 64) - 1, index=1),
                      Message(type=MsgType.APP_RESP, to=leader, from_=follower, term=term, index=1 << 40),
                      Message(type=MsgType.HEARTBEAT_RESP, to=leader, from_=follower, term=term, index=1 << 40)):
                s.sendall(encode_frame(encode_message(m)))
        other = next(i for i in cluster.ids if i not in (leader, follower))
        with peer_socket(cluster.peer_port(other), cluster_key, follower) as s:
            for _ in range(20):  # TIMEOUT_NOW flood and appends from a non-leader at the current term
                s.sendall(encode_frame(encode_message(Message(type=MsgType.TIMEOUT_NOW, to=other, from_=follower,
                                                              term=term))))
            s.sendall(encode_frame(encode_message(Message(
                type=MsgType.APP, to=other, from_=follower, term=term, index=0, log_term=0,
                entries=(Entry(term=term, index=1, data=b"evil"),), commit=1))))

        async def after() -> None:
            client = KvClient(cluster.endpoints(), timeout=5.0, key=key)
            await client.put("k", b"v2")
            assert await client.get("k") == b"v2"
            rows = await converged(client)
            assert {r["term"] for r in rows} == {term}, rows  # no term inflation, no crash
            refused = {k: v for r in rows for k, v in r["refused"].items()}
            assert {"range", "never-sent", "not-leader"} <= set(refused), rows
            await client.close()

        asyncio.run(after())
        assert all(cluster.running(i) for i in cluster.ids)
        logs = "".join(cluster.log_file(i).read_text() for i in cluster.ids)
        assert "authentication failed" in logs and "claiming to be from 3" in logs


async def status_of(cluster: LocalCluster, key: Key | None) -> list[dict[str, object]]:
    client = KvClient(cluster.endpoints(), timeout=5.0, key=key)
    try:
        return await converged(client)
    finally:
        await client.close()


def test_unauthenticated_connection_buffers_at_most_a_handshake(tmp_path: Path) -> None:
    """Before the handshake a frame above 512 bytes closes the connection: an unauthenticated
    stranger cannot make the node buffer up to the 16 MiB frame limit."""
    with LocalCluster(1, tmp_path, base_port=22700, auth=True) as cluster:
        cluster.start_all()
        for port in (cluster.peer_port(1), cluster.client_port(1)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.recv(100)  # the challenge
                s.sendall(struct.pack(">I", 1 << 20) + b"x" * 1000)
                assert closed_by_node(s)
        assert "exceeds the maximum of 512" in cluster.log_file(1).read_text()
