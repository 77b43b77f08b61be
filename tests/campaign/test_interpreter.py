"""The interpreter journals every invoke and completion live and applies Jepsen's process rule.

The system here is an in-process register with random latency (a real asyncio client whose
outcomes the test controls), so the interpreter's guarantees are checked without a cluster.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import pytest

from raftlab import generator as gen
from raftlab.history import NEMESIS, History, HistoryWriter, Op, OpType
from raftlab.interpreter import ContractError, Interpreter


class Register:
    """Shared state of the pretend system; ``crash`` makes the next writes end in info."""

    def __init__(self, rng: random.Random) -> None:
        self.value: object = None
        self.rng = rng
        self.opened: list[str] = []
        self.closed = 0
        self.crash_every = 0
        self.count = 0


class RegisterClient:
    def __init__(self, reg: Register) -> None:
        self.reg = reg

    async def open(self, host: str) -> RegisterClient:
        self.reg.opened.append(host)
        return RegisterClient(self.reg)

    async def invoke(self, op: Op) -> Op:
        await asyncio.sleep(self.reg.rng.uniform(0, 0.002))
        self.reg.count += 1
        if self.reg.crash_every and self.reg.count % self.reg.crash_every == 0:
            raise ConnectionResetError("lost after sending")
        if op.f == "write":
            self.reg.value = op.value
            return replace(op, type=OpType.OK)
        if op.f == "hang":
            await asyncio.sleep(60)
        if op.f == "liar":
            return replace(op, type=OpType.OK, process=op.process + 1)
        if op.f == "forwarded":  # answered by another node, which the client names
            return replace(op, type=OpType.OK, extra={**(op.extra or {}), "node": "n9"})
        return replace(op, type=OpType.OK, value=self.reg.value)

    async def close(self) -> None:
        self.reg.closed += 1


class RecordingNemesis:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def fs(self) -> frozenset[str]:
        return frozenset({"break", "fix"})

    async def setup(self, lab: object) -> None:
        return None

    async def invoke(self, op: Op) -> Op:
        self.seen.append(op.f)
        await asyncio.sleep(0.001)
        if op.f == "fix":
            raise OSError("host unreachable")
        return replace(op, type=OpType.INFO, value={"done": True})

    async def teardown(self) -> None:
        return None


def run(tmp_path: Path, g: object, *, seed: int, concurrency: int = 4, reg: Register | None = None,
        op_timeout: float = 5.0) -> tuple[History, Interpreter, Register, RecordingNemesis]:
    reg = reg or Register(random.Random(seed))
    nem = RecordingNemesis()
    path = tmp_path / "history.jsonl"
    events: list[Op] = []

    async def main() -> Interpreter:
        with HistoryWriter(path) as writer:
            interp = Interpreter(client=RegisterClient(reg), nemesis=nem, hosts=["n1", "n2", "n3"],
                                 concurrency=concurrency, writer=writer, rng=random.Random(seed),
                                 op_timeout=op_timeout, on_event=events.append)
            await interp.run(g)
            return interp

    interp = asyncio.run(main())
    history = History.read(path)
    assert [o.to_dict() for o in history] == [o.to_dict() for o in events]  # the file is the journal
    return history, interp, reg, nem


def workload(n: int) -> gen.Generator:
    return gen.limit(n, gen.mix(gen.repeat({"f": "read"}), lambda ctx: {"f": "write", "value": ctx.rng.randrange(9)}))


def test_every_op_is_invoked_then_completed_and_the_history_validates(tmp_path: Path, seed: int) -> None:
    history, interp, reg, _ = run(tmp_path, gen.on_clients(workload(200)), seed=seed)
    invokes = [o for o in history if o.type is OpType.INVOKE]
    assert len(invokes) == 200 and len(history) == 400
    assert interp.stats.ok == 200 and interp.stats.invokes == 200
    assert sorted(set(reg.opened)) == ["n1", "n2", "n3"]  # threads spread over the hosts
    assert all(a.time <= b.time for a, b in zip(history, list(history)[1:], strict=False))


def test_every_client_event_names_its_node_and_a_client_may_name_another(tmp_path: Path, seed: int) -> None:
    g = gen.on_clients(gen.limit(60, gen.mix(gen.repeat({"f": "read"}), gen.repeat({"f": "forwarded"}))))
    history, _, _, _ = run(tmp_path, g, seed=seed, concurrency=3)
    hosts = ["n1", "n2", "n3"]
    for op in history:
        expected = "n9" if op.f == "forwarded" and op.type is OpType.OK else hosts[int(op.process) % 3]
        assert op.extra is not None and op.extra["node"] == expected, op.to_dict()
    assert {op.extra["node"] for op in history if op.extra} == {"n1", "n2", "n3", "n9"}


def test_an_exception_is_info_and_the_thread_becomes_a_new_process(tmp_path: Path, seed: int) -> None:
    reg = Register(random.Random(seed))
    reg.crash_every = 7
    history, interp, reg, _ = run(tmp_path, gen.on_clients(workload(100)), seed=seed, reg=reg)
    infos = [o for o in history if o.type is OpType.INFO]
    assert infos and all("ConnectionResetError" in (o.error or "") for o in infos)
    assert interp.stats.info == len(infos)
    processes = {o.process for o in history}
    assert max(processes) >= 4  # successors of crashed processes appeared
    assert reg.closed >= len(infos)  # a crashed process's client is closed
    History(list(history))  # no invoke after an info


def test_an_op_that_outlives_the_timeout_is_info(tmp_path: Path, seed: int) -> None:
    history, _, _, _ = run(tmp_path, gen.on_clients([{"f": "hang"}, {"f": "read"}]), seed=seed, concurrency=1,
                           op_timeout=0.2)
    hang = [o for o in history if o.f == "hang"]
    assert [o.type for o in hang] == [OpType.INVOKE, OpType.INFO] and hang[1].error == "timeout"
    read = [o for o in history if o.f == "read"]
    assert read[0].process == 1  # concurrency 1: process 0 crashed, its thread continues as 1


def test_nemesis_ops_run_on_the_nemesis_thread_and_failures_are_recorded(tmp_path: Path, seed: int) -> None:
    g = gen.any_of(gen.on_clients(workload(50)), gen.on_nemesis([{"f": "break"}, {"f": "fix"}]))
    history, interp, _, nem = run(tmp_path, g, seed=seed)
    assert nem.seen == ["break", "fix"]
    faults = [o for o in history if o.process == NEMESIS]
    assert [(o.type, o.f) for o in faults] == [(OpType.INVOKE, "break"), (OpType.INFO, "break"),
                                               (OpType.INVOKE, "fix"), (OpType.INFO, "fix")]
    assert faults[3].error and "host unreachable" in faults[3].error and faults[3].value == {"applied": False}
    assert interp.stats.faults == 2


def test_a_client_that_breaks_the_contract_stops_the_run(tmp_path: Path, seed: int) -> None:
    with pytest.raises(ExceptionGroup) as info:
        run(tmp_path, gen.on_clients([{"f": "liar"}]), seed=seed)
    assert info.group_contains(ContractError)


def test_rate_and_time_limit_hold_in_real_time(tmp_path: Path, seed: int) -> None:
    g = gen.on_clients(gen.time_limit(1.0, gen.rate(50, gen.repeat({"f": "read"}))))
    history, _, _, _ = run(tmp_path, g, seed=seed)
    invokes = [o for o in history if o.type is OpType.INVOKE]
    assert 1 <= len(invokes) <= 51  # never faster than the rate
    assert max(o.time for o in invokes) < 1.1e9  # nothing invoked after the limit
