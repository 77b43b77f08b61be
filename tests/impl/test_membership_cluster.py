"""Membership changes on real `raftlab node` processes, driven by the real `raftlab admin` CLI
while a client keeps writing: add a learner, let it catch up, promote it; grow 3 -> 5; remove
the leader; shrink back to 3 in one joint step; transfer leadership; refused requests exit 2.
At the end every acknowledged write is read back from the final members."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from raftlab.impl.client import IndeterminateError, KvClient, KvError
from raftlab.impl.cluster import LocalCluster, raftlab_command

pytestmark = pytest.mark.slow


async def admin(cluster: LocalCluster, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *raftlab_command(), "admin", "--endpoints", cluster.endpoints_arg(), "--timeout", "15", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def ok(cluster: LocalCluster, *args: str) -> str:
    code, out, err = await admin(cluster, *args)
    assert code == 0, f"admin {' '.join(args)} exited {code}: {out}{err}"
    return out


async def show(cluster: LocalCluster) -> list[dict[str, Any]]:
    return json.loads(await ok(cluster, "show", "--json"))


async def wait_for(cluster: LocalCluster, pred: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await show(cluster)
        if pred(rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached: {rows}")
        await asyncio.sleep(0.2)


def leader_of(rows: list[dict[str, Any]]) -> int:
    return next(r["id"] for r in rows if r.get("role") == "leader")


def test_grow_promote_remove_the_leader_and_shrink_under_writes(tmp_path: Any) -> None:
    with LocalCluster(5, tmp_path, base_port=26100, node_args=("--voters", "1,2,3")) as cluster:
        cluster.start_all()

        async def scenario() -> None:
            client = KvClient(cluster.endpoints(), timeout=5.0)
            acked: dict[str, bytes] = {}
            stop = asyncio.Event()

            async def writer() -> None:
                i = 0
                while not stop.is_set():
                    key, value = f"k{i % 50}", f"v{i}".encode()
                    try:
                        await client.put(key, value)
                        acked[key] = value
                    except IndeterminateError:
                        acked.pop(key, None)  # unknown outcome: not checked
                    except KvError:
                        await asyncio.sleep(0.05)
                    i += 1

            task = asyncio.create_task(writer())
            try:
                rows = await wait_for(cluster, lambda rs: any(r.get("role") == "leader" for r in rs))
                assert all(r["membership"]["voters"] == [1, 2, 3] for r in rows if "error" not in r)
                # refused requests name the problem and exit 2
                code, _, err = await admin(cluster, "remove", "9")
                assert code == 2 and "unknown member" in err, err
                code, _, err = await admin(cluster, "promote", "1")
                assert code == 2 and "not a learner" in err, err
                # a learner catches up, then is promoted
                await ok(cluster, "add-learner", "4")
                rows = await wait_for(cluster, lambda rs: rs[3].get("applied", 0) > 50 and
                                      rs[3]["membership"]["learners"] == [4])
                await ok(cluster, "promote", "4")
                out = await ok(cluster, "add", "5")
                assert "voters=[1, 2, 3, 4, 5]" in out, out
                await asyncio.sleep(1.0)
                # remove the leader: it hands over and the cluster keeps writing
                old = leader_of(await wait_for(cluster, lambda rs: any(r.get("role") == "leader" for r in rs)))
                await ok(cluster, "remove", str(old))
                rows = await wait_for(cluster, lambda rs: any(r.get("role") == "leader" and r["id"] != old
                                                              for r in rs))
                assert old not in rows[0]["membership"]["voters"] + rows[0]["membership"]["learners"]
                written = len(acked)
                await asyncio.sleep(1.0)
                assert len(acked) >= written
                # shrink back to three in one joint step, then move the leader
                final = [i for i in (1, 2, 3, 4, 5) if i != old][:3]
                await ok(cluster, "change-peers", "--voters", ",".join(map(str, final)))
                target = final[-1]
                await ok(cluster, "transfer", "--to", str(target))
                rows = await show(cluster)
                assert leader_of(rows) == target
                assert all(r["membership"]["voters"] == final for r in rows if r["id"] in final)
            finally:
                stop.set()
                await task
            # every acknowledged write is there, read linearizably through the final members
            reader = KvClient([cluster.endpoints()[i - 1] for i in final], timeout=5.0)
            try:
                for key, value in acked.items():
                    assert await reader.get(key) == value, key
            finally:
                await reader.close()
                await client.close()
            assert len(acked) > 20

        asyncio.run(scenario())
