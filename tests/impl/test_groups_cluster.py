"""Two Raft groups in one 3-process cluster (`raftlab node --groups 2`), on real processes, real
sockets, real files and SIGKILL, with authentication on: the groups keep independent leaders
(`raftlab admin --group 1 transfer` moves one group's leader only, and `admin show` shows it) and
independent data (the same keys hold different values per group) while clients write to both;
killing a process costs both groups a member but neither loses an acknowledged write; the
restarted process recovers both groups from its data directory (group 1 from data/groups/1).
On the peer port, a member's frame for an unknown group is dropped with its link kept, and a
forged sender is refused in group 1 as in group 0; an unauthenticated client is refused in group 1."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from raftlab.impl.client import IndeterminateError, KvClient, KvError, Unavailable
from raftlab.impl.cluster import LocalCluster, raftlab_command
from raftlab.impl.net.auth import read_key_file
from raftlab.impl.net.codec import encode_message
from raftlab.impl.net.framing import encode_frame
from raftlab.impl.raft import MsgType
from raftlab.impl.raft.messages import Message

from tests.impl.test_auth import closed_by_node, peer_socket

pytestmark = pytest.mark.slow

GROUPS = (0, 1)


async def cli(cluster: LocalCluster, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *raftlab_command(), *args[:1], "--endpoints", cluster.endpoints_arg(), "--timeout", "10",
        "--key-file", str(cluster.client_key_file), *args[1:],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def leaders(cluster: LocalCluster, timeout: float = 30.0) -> dict[int, int]:
    """Group -> the id every live member of that group names as leader (`admin show --json`)."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, _ = await cli(cluster, "admin", "show", "--json")
        rows = json.loads(out) if out else []
        found: dict[int, int] = {}
        for g in GROUPS:
            live = [r for r in rows if r["group"] == g and "error" not in r]
            named = {r["leader"] for r in live}
            if live and len(named) == 1 and named != {0} and any(r["role"] == "leader" for r in live):
                found[g] = named.pop()
        if len(found) == len(GROUPS):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no settled leader in every group: {rows} (exit {code})")
        await asyncio.sleep(0.2)


def test_two_groups_independent_leaders_and_data_through_a_kill(tmp_path: Any) -> None:
    with LocalCluster(3, tmp_path, base_port=26400, node_args=("--groups", "2"), auth=True) as cluster:
        cluster.start_all()

        async def scenario() -> int:
            key = cluster.client_key()
            clients = {g: KvClient(cluster.endpoints(), timeout=5.0, key=key, group=g) for g in GROUPS}
            acked: dict[int, dict[str, bytes]] = {g: {} for g in GROUPS}
            ok_after: dict[int, int] = {g: 0 for g in GROUPS}  # writes acknowledged since the kill
            killed = asyncio.Event()
            stop = asyncio.Event()

            async def writer(g: int) -> None:
                i = 0
                while not stop.is_set():
                    k, value = f"k{i % 40}", f"group{g}-{i}".encode()
                    try:
                        await clients[g].put(k, value)
                        acked[g][k] = value
                        ok_after[g] += killed.is_set()
                    except IndeterminateError:
                        acked[g].pop(k, None)  # unknown outcome: not checked
                    except KvError:
                        await asyncio.sleep(0.05)
                    i += 1

            try:
                first = await leaders(cluster)
                # group 1's leader moves to a node that does not lead group 0; group 0's stays
                target = next(i for i in cluster.ids if i != first[0])
                code, out, err = await cli(cluster, "admin", "--group", "1", "transfer", "--to", str(target))
                assert code == 0, out + err
                now = await leaders(cluster)
                assert now == {0: first[0], 1: target} and now[0] != now[1], now
                code, out, _ = await cli(cluster, "admin", "show")
                assert code == 0 and f"group=1 id={target} leader " in out and f"group=0 id={first[0]} leader " in out
                # an unauthenticated client is refused in group 1 as in group 0
                with pytest.raises(Unavailable, match="authentication"):
                    anonymous = KvClient(cluster.endpoints(), timeout=1.0, group=1)
                    try:
                        await anonymous.put("x", b"1")
                    finally:
                        await anonymous.close()

                # an authenticated member's frame for a group nobody serves is dropped and logged, and
                # its connection stays up; a forged sender in group 1 closes it, as in group 0
                cluster_key = read_key_file(cluster.secret_file)
                with peer_socket(cluster.peer_port(target), cluster_key, first[0]) as s:
                    heartbeat = Message(type=MsgType.HEARTBEAT, to=target, from_=first[0], term=1)
                    s.sendall(encode_frame(encode_message(heartbeat, 9)))
                    s.settimeout(1.5)
                    assert not closed_by_node(s)
                    s.settimeout(5)
                    forged = Message(type=MsgType.HEARTBEAT, to=target, from_=now[1], term=1)
                    s.sendall(encode_frame(encode_message(forged, 1)))
                    assert closed_by_node(s)
                assert f"refused a message from {first[0]}: unknown group 9" in cluster.log_file(target).read_text()

                tasks = [asyncio.create_task(writer(g)) for g in GROUPS]
                await asyncio.sleep(2.0)
                assert all(acked[g] for g in GROUPS)
                victim = now[0]  # leads group 0, follows in group 1: both groups lose a member
                cluster.kill(victim)
                killed.set()
                deadline = time.monotonic() + 30
                while min(ok_after.values()) < 20:  # both groups serve again (group 0 after an election)
                    assert time.monotonic() < deadline, f"writes after the kill: {ok_after}"
                    await asyncio.sleep(0.2)
                after_kill = await leaders(cluster)
                assert after_kill[0] != victim and after_kill[1] == target
                cluster.start(victim)
                await asyncio.sleep(2.0)
                stop.set()
                await asyncio.gather(*tasks)

                # nothing acknowledged is lost, and the groups' data never mixed
                for g in GROUPS:
                    for k, value in acked[g].items():
                        assert await clients[g].get(k) == value, (g, k)
                        assert value.startswith(f"group{g}-".encode())
                # the restarted process recovered both groups and caught up: equal digests per group
                deadline = time.monotonic() + 30
                while True:
                    rows = {g: await clients[g].status() for g in GROUPS}
                    digests = {g: {json.dumps(r.get("digest"), sort_keys=True) for r in rows[g]} for g in GROUPS}
                    if all(len(d) == 1 and "error" not in str(rows[g]) for g, d in digests.items()):
                        break
                    assert time.monotonic() < deadline, rows
                    await asyncio.sleep(0.3)
                assert digests[0] != digests[1]  # different trees
                assert all(r["group"] == g for g in GROUPS for r in rows[g])
                return victim
            finally:
                stop.set()
                for c in clients.values():
                    await c.close()

        victim = asyncio.run(scenario())
        # the restart recovered each group from its own directory (group 1: data/groups/1)
        lines = cluster.log_file(victim).read_text().splitlines()
        for prefix in (f"node {victim}: recovered", f"group 1: node {victim}: recovered"):
            starts = [line for line in lines if line.split(" ", 2)[2].startswith(prefix)]
            assert len(starts) == 2 and "log entries 1..0" not in starts[1], starts
        assert any((cluster.node_dir(victim) / "data" / "groups" / "1" / "wal").glob("*.seg"))
