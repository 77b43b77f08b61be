"""The interpreter: the I/O shell that runs a generator against real clients and a nemesis.

One asyncio task per client thread and one for the nemesis, all owned by one TaskGroup; a
scheduler loop (this module's ``run``) asks the generator for ops, hands each to its thread's
worker and feeds every invocation and completion back to the generator. The generator is pure
with respect to time and chance (``raftlab.generator``); everything else lives here.

Guarantees:

* Every invocation is appended to the history (``HistoryWriter``, flushed per line) **before** the
  op is sent, and every completion as soon as the client returns, so ``history.jsonl`` is a
  faithful, live journal: an interrupted run keeps everything that happened.
* Jepsen's process rule: after an ``info`` completion the thread continues as process
  ``process + concurrency`` (and its client is closed and reopened); a process never invokes after
  an ``info``.
* A client never decides an op it could not complete: an exception or an op that outlives
  ``op_timeout`` becomes ``info`` (it may have happened); only a client's explicit ``fail`` says it
  did not. A completion that breaks the Client contract (other process, other f, an invoke)
  stops the run with ``ContractError``.
* Every client invocation and completion carries ``node``: the host its client talks to (the
  node that served it, unless the client's completion names another in ``extra["node"]``), so a
  report can say which node gave a stale read.
* Every client invocation and completion carries ``node`` (an extra field): the host the worker's
  client was opened on, unless the client's completion names the node that really answered
  (``extra["node"]``: dtkv's writes follow the leader). A report can then say which node gave a
  stale read.
* Nemesis ops run on the ``"nemesis"`` thread, their invoke and info completion are the fault's
  start and end times in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from raftlab.generator import NS, Context, Generator, Pending, Thread, lift
from raftlab.history import NEMESIS, HistoryWriter, Op, OpType, Process
from raftlab.protocols import Client, Host, Nemesis

POLL = 0.05
"""Seconds between asks when a generator is PENDING without a wake-up time."""


class ContractError(RuntimeError):
    """A client or generator broke its contract (wrong process, f or type); names the op."""


@dataclass(slots=True, kw_only=True)
class Stats:
    """Counts kept as the run goes, for the progress bar and the results."""

    invokes: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    faults: int = 0

    def count(self, op: Op) -> None:
        if op.process == NEMESIS:
            if op.type is OpType.INVOKE:
                self.faults += 1
            return
        if op.type is OpType.INVOKE:
            self.invokes += 1
        elif op.type is OpType.OK:
            self.ok += 1
        elif op.type is OpType.FAIL:
            self.fail += 1
        else:
            self.info += 1


@dataclass(slots=True, kw_only=True)
class _Worker:
    thread: Thread
    process: Process
    inbox: asyncio.Queue[Op | None] = field(default_factory=asyncio.Queue)


def served_by(op: Op, host: Host) -> Op:
    """``op`` with ``node`` set to ``host``, unless the client already named the serving node."""
    if op.extra and "node" in op.extra:
        return op
    return replace(op, extra={**(op.extra or {}), "node": host})


def check_completion(invoke: Op, done: object) -> Op:
    """``done`` if it is a proper completion of ``invoke``, else ContractError."""
    if not isinstance(done, Op):
        raise ContractError(f"invoke of {invoke.describe()} returned {done!r}, not an Op")
    if done.process != invoke.process or done.f != invoke.f or done.type is OpType.INVOKE:
        raise ContractError(f"{invoke.describe()} was completed by {done.describe()}: a completion must keep "
                            "the process and f and be ok, fail or info")
    return done


class Interpreter:
    """Runs one generator to exhaustion. Make a new one per run.

    ``client`` is opened once per client process on ``hosts[thread % len(hosts)]``; ``nemesis``
    (already set up) runs the nemesis thread's ops. ``on_event`` sees every recorded event.
    Times are ``clock() - origin`` (``origin`` defaults to now; pass another interpreter's to
    continue its history on the same clock).
    """

    def __init__(self, *, client: Client, nemesis: Nemesis, hosts: Sequence[Host], concurrency: int,
                 writer: HistoryWriter, rng: random.Random, op_timeout: float = 10.0,
                 nemesis_timeout: float = 120.0, on_event: Callable[[Op], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, origin: int | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if not hosts:
            raise ValueError("the interpreter needs at least one host")
        self.client = client
        self.nemesis = nemesis
        self.hosts = list(hosts)
        self.concurrency = concurrency
        self.writer = writer
        self.rng = rng
        self.op_timeout = op_timeout
        self.nemesis_timeout = nemesis_timeout
        self.on_event = on_event
        self.clock = clock
        self.stats = Stats()
        self.origin = clock() if origin is None else origin
        self.workers: dict[Thread, _Worker] = {t: _Worker(thread=t, process=t) for t in range(concurrency)}
        self.workers[NEMESIS] = _Worker(thread=NEMESIS, process=NEMESIS)
        self.free: set[Thread] = set(self.workers)
        self._done: asyncio.Queue[tuple[Thread, Op]] = asyncio.Queue()

    def now(self) -> int:
        """Nanoseconds since this interpreter was made (the history's clock)."""
        return self.clock() - self.origin

    def context(self) -> Context:
        return Context(time=self.now(), rng=self.rng, concurrency=self.concurrency,
                       workers={t: w.process for t, w in self.workers.items()}, free_threads=frozenset(self.free))

    def _record(self, op: Op) -> Op:
        op = self.writer.append(op)
        self.stats.count(op)
        if self.on_event is not None:
            self.on_event(op)
        return op

    async def run(self, gen: object) -> Stats:
        """Drive ``gen`` until it is exhausted and every op it started has completed."""
        g = lift(gen)
        async with asyncio.TaskGroup() as tg:
            for worker in self.workers.values():
                tg.create_task(self._client_worker(worker) if worker.thread != NEMESIS
                               else self._nemesis_worker(worker))
            try:
                await self._schedule(g)
            finally:
                for worker in self.workers.values():
                    worker.inbox.put_nowait(None)
        return self.stats

    async def _schedule(self, gen: Generator) -> None:
        exhausted = False
        while True:
            while not self._done.empty():
                self._complete(gen, *self._done.get_nowait())
            if exhausted and len(self.free) == len(self.workers):
                return
            result = None if exhausted else gen.op(self.context())
            if isinstance(result, Op):
                self._dispatch(gen, result)
                await asyncio.sleep(0)  # let workers start; keeps a flood of ops fair
                continue
            if result is None:
                exhausted = True
                if len(self.free) == len(self.workers):
                    return
                timeout: float | None = None
            else:
                if not isinstance(result, Pending):
                    raise ContractError(f"a generator returned {result!r}, not an Op, PENDING or None")
                timeout = POLL if result.until is None else max(0.0, (result.until - self.now()) / NS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    thread, done = await self._done.get()
                    self._complete(gen, thread, done)

    def _dispatch(self, gen: Generator, op: Op) -> None:
        thread: Thread = op.process % self.concurrency if isinstance(op.process, int) else op.process
        worker = self.workers.get(thread)
        if op.type is not OpType.INVOKE or worker is None or thread not in self.free or worker.process != op.process:
            raise ContractError(f"generator produced {op.describe()}, but that process is not a free worker")
        invoke = replace(op, time=self.now())
        if thread != NEMESIS:
            invoke = served_by(invoke, self.hosts[int(thread) % len(self.hosts)])
        invoke = self._record(invoke)
        self.free.discard(thread)
        gen.update(self.context(), invoke)
        worker.inbox.put_nowait(invoke)

    def _complete(self, gen: Generator, thread: Thread, done: Op) -> None:
        self.free.add(thread)
        if done.type is OpType.INFO and thread != NEMESIS:
            self.workers[thread].process = int(done.process) + self.concurrency
        gen.update(self.context(), done)

    async def _client_worker(self, worker: _Worker) -> None:
        host = self.hosts[int(worker.thread) % len(self.hosts)]
        client: Client | None = None
        try:
            while (invoke := await worker.inbox.get()) is not None:
                why = ""
                if client is None:
                    client, why = await self._open(host)
                if client is None:  # never sent: it certainly did not happen
                    done = replace(invoke, type=OpType.FAIL, value=None, error=f"could not connect to {host}: {why}",
                                   index=-1)
                else:
                    done = await self._invoke_client(client, invoke)
                done = self._record(served_by(replace(done, time=self.now(), index=-1), host))
                if done.type is OpType.INFO and client is not None:
                    await self._close(client)  # the process is done; its successor gets a fresh client
                    client = None
                self._done.put_nowait((worker.thread, done))
        finally:
            if client is not None:
                await self._close(client)

    async def _open(self, host: Host) -> tuple[Client | None, str]:
        """The opened client, or None and why. An unreachable node (OSError, timeout) fails the op;
        any other exception is a bug in the client and stops the run at once, naming it."""
        try:
            async with asyncio.timeout(self.op_timeout):
                return await self.client.open(host), ""
        except TimeoutError:
            return None, f"open() did not finish within {self.op_timeout}s"
        except OSError as e:
            return None, f"{type(e).__name__}: {e}"
        except Exception as e:
            raise ContractError(f"the client's open({host!r}) raised {type(e).__name__}: {e}") from e

    async def _close(self, client: Client) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.op_timeout):
                await client.close()

    async def _invoke_client(self, client: Client, invoke: Op) -> Op:
        try:
            async with asyncio.timeout(self.op_timeout):
                done = await client.invoke(invoke)
        except TimeoutError:
            return replace(invoke, type=OpType.INFO, value=None, error="timeout", index=-1)
        except ContractError:
            raise
        except Exception as e:  # unknown outcome: it may have happened
            return replace(invoke, type=OpType.INFO, value=None, error=f"{type(e).__name__}: {e}", index=-1)
        return check_completion(invoke, done)

    async def _nemesis_worker(self, worker: _Worker) -> None:
        while (invoke := await worker.inbox.get()) is not None:
            try:
                async with asyncio.timeout(self.nemesis_timeout):
                    done = await self.nemesis.invoke(invoke)
                if not isinstance(done, Op) or done.process != NEMESIS or done.f != invoke.f:
                    raise ContractError(f"nemesis completed {invoke.describe()} with {done!r}")
                done = replace(done, type=OpType.INFO)
            except TimeoutError:
                done = replace(invoke, type=OpType.INFO, value={"applied": False},
                               error=f"the nemesis did not finish within {self.nemesis_timeout}s", index=-1)
            except ContractError:
                raise
            except Exception as e:  # recorded as a fault that did not apply, never assumed
                done = replace(invoke, type=OpType.INFO, value={"applied": False},
                               error=f"{type(e).__name__}: {e}", index=-1)
            done = self._record(replace(done, time=self.now(), index=-1))
            self._done.put_nowait((worker.thread, done))
