"""Generators: what a campaign does next, decided from an explicit context (Jepsen generators).

In a nutshell
-------------
A generator answers ``op(ctx)`` with one of three things:

* an ``Op`` (an ``invoke``): the interpreter runs it **now**, on the process the op names, which
  must be free in ``ctx``. Returning an op commits to it: it will be invoked, so a combinator
  never asks a child for an op it might throw away;
* ``PENDING`` (or ``pending_until(t)``): nothing yet; ask again after the next event, or at time
  ``t`` (ns) at the latest;
* ``None``: this generator is exhausted.

After every invocation and completion the interpreter calls ``update(ctx, event)`` so generators
can react (``until_ok`` stops after an ``ok``, the nemesis schedule waits for its heal to return).

Generators are mutable objects (Python has no cheap persistent data), but their **time and chance
come only from the context**: ``ctx.time`` (ns since the run began) and ``ctx.rng``. Given the same
sequence of contexts and events a generator makes the same choices, so ``simulate()`` runs any
generator deterministically, without I/O, to test it.

Workers and processes
---------------------
A run has ``concurrency`` client threads ``0 .. concurrency-1`` and one ``"nemesis"`` thread. Each
thread runs one process at a time; client thread ``t`` starts as process ``t``, and after an
``info`` completion continues as process ``p + concurrency`` (Jepsen's rule: a process whose
operation may still take effect never invokes again). The nemesis thread's process is always
``"nemesis"``. ``ctx.free_processes`` lists the processes whose thread is idle.

Leaf generators are plain values, lifted by ``lift``:

* a ``dict`` such as ``{"f": "write", "key": "x", "value": 3}``: one invoke on a free process
  (``process`` may be given to pin it); a ``list``/``tuple``: those generators in order;
* a callable ``fn(ctx) -> dict | Op | None``: called for every op, exhausted when it returns None;
* an object with ``op`` and ``update``: used as is.

Which thread an op may go to is decided by restricting the context: ``on_clients`` and
``on_nemesis`` show their child only the client threads or only the nemesis thread.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from raftlab.history import NEMESIS, Op, OpType, Process

Thread = int | str
"""A worker: ``0 .. concurrency-1`` for clients, ``"nemesis"`` for the nemesis."""

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Pending:
    """Nothing to do yet. ``until``: ask again by this time (ns) even if no event arrives."""

    until: int | None = None


PENDING = Pending()
"""Nothing to do until the next event (the interpreter also re-asks after a short poll)."""


def pending_until(time: int | None) -> Pending:
    return PENDING if time is None else Pending(time)


def is_pending(x: object) -> bool:
    return isinstance(x, Pending)


def earliest(a: Pending, b: Pending) -> Pending:
    """The more urgent of two pendings (a missing ``until`` means "on the next event")."""
    if a.until is None:
        return b
    if b.until is None:
        return a
    return a if a.until <= b.until else b


def _thread_key(thread: Thread) -> tuple[int, int, str]:
    return (1, 0, thread) if isinstance(thread, str) else (0, thread, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a generator may look at: the time, the random stream, and the workers.

    Invariant: ``free_threads`` is a subset of ``workers``' keys. ``workers`` maps each visible
    thread to its current process.
    """

    time: int
    rng: random.Random
    concurrency: int
    workers: Mapping[Thread, Process]
    free_threads: frozenset[Thread]

    @property
    def free_processes(self) -> tuple[Process, ...]:
        return tuple(self.workers[t] for t in sorted(self.free_threads, key=_thread_key))

    @property
    def all_free(self) -> bool:
        return len(self.free_threads) == len(self.workers)

    def some_free_process(self) -> Process | None:
        """A free process chosen with ``rng`` (clients spread their load), or None."""
        free = self.free_processes
        if not free:
            return None
        return free[0] if len(free) == 1 else self.rng.choice(free)

    def thread_of(self, process: Process) -> Thread:
        """The thread that runs (or ran) ``process``: ``process mod concurrency`` for clients."""
        return process % self.concurrency if isinstance(process, int) else process

    def restrict(self, keep: Callable[[Thread], bool]) -> Context:
        """The same moment as seen by a generator that may only use threads where ``keep``."""
        workers = {t: p for t, p in self.workers.items() if keep(t)}
        return replace(self, workers=workers, free_threads=frozenset(t for t in self.free_threads if t in workers))


def context(*, concurrency: int, rng: random.Random, time: int = 0, nemesis: bool = True) -> Context:
    """The context at the start of a run: every thread free, thread ``t`` running process ``t``."""
    workers: dict[Thread, Process] = {t: t for t in range(concurrency)}
    if nemesis:
        workers[NEMESIS] = NEMESIS
    return Context(time=time, rng=rng, concurrency=concurrency, workers=workers, free_threads=frozenset(workers))


class Generator(Protocol):
    def op(self, ctx: Context) -> Op | Pending | None: ...

    def update(self, ctx: Context, event: Op) -> None: ...


GenLike = Any
"""A Generator, a dict op spec, a list/tuple of GenLikes, a callable ``fn(ctx)``, or None."""


def fill(ctx: Context, spec: Mapping[str, Any] | Op) -> Op | Pending:
    """An invoke for ``spec`` on a free process at ``ctx.time``, or PENDING when none is free."""
    if isinstance(spec, Op):
        spec = {k: v for k, v in spec.to_dict().items() if k not in ("index", "time", "type")}
    if "f" not in spec:
        raise ValueError(f"an op spec needs an 'f': {dict(spec)!r}")
    process = spec.get("process")
    if process is None:
        process = ctx.some_free_process()
        if process is None:
            return PENDING
    elif process not in ctx.free_processes:
        return PENDING
    extra = {k: v for k, v in spec.items() if k not in ("f", "key", "value", "process", "error", "type", "time", "index")}
    return Op(type=OpType.INVOKE, process=process, f=spec["f"], key=spec.get("key"), value=spec.get("value"),
              time=ctx.time, extra=extra or None)


class _Once:
    """A single op spec: one invoke, then exhausted."""

    def __init__(self, spec: Mapping[str, Any] | Op) -> None:
        self.spec = spec
        self.done = False

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.done:
            return None
        result = fill(ctx, self.spec)
        if isinstance(result, Op):
            self.done = True
        return result

    def update(self, ctx: Context, event: Op) -> None:
        return None


class _Fn:
    """``fn(ctx)`` called for each op; exhausted once it returns None."""

    def __init__(self, fn: Callable[[Context], Mapping[str, Any] | Op | None]) -> None:
        self.fn = fn
        self.held: Mapping[str, Any] | Op | None = None
        self.done = False

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.done:
            return None
        if not ctx.free_threads:
            return PENDING
        if self.held is None:
            self.held = self.fn(ctx)
            if self.held is None:
                self.done = True
                return None
        result = fill(ctx, self.held)
        if isinstance(result, Op):
            self.held = None
        return result

    def update(self, ctx: Context, event: Op) -> None:
        return None


def lift(x: GenLike) -> Generator:
    """Turn a leaf value into a generator (see the module docstring)."""
    if x is None:
        return seq()
    if isinstance(x, (Mapping, Op)):
        return _Once(x)
    if isinstance(x, (list, tuple)):
        return seq(*x)
    if hasattr(x, "op") and hasattr(x, "update"):
        return x  # type: ignore[no-any-return]
    if callable(x):
        return _Fn(x)
    raise TypeError(f"cannot make a generator from {x!r}")


def once(spec: Mapping[str, Any]) -> Generator:
    return _Once(spec)


class _Seq:
    def __init__(self, gens: Sequence[GenLike]) -> None:
        self.gens = [lift(g) for g in gens]
        self.i = 0

    def op(self, ctx: Context) -> Op | Pending | None:
        while self.i < len(self.gens):
            result = self.gens[self.i].op(ctx)
            if result is not None:
                return result
            self.i += 1
        return None

    def update(self, ctx: Context, event: Op) -> None:
        # Earlier generators may still await completions of their ops (until_ok, schedules).
        for g in self.gens[: self.i + 1]:
            g.update(ctx, event)


def seq(*gens: GenLike) -> Generator:
    """Each generator in turn, moving on when one is exhausted (no waiting in between)."""
    return _Seq(gens)


class _Synchronize:
    """Waits until every visible thread is free, then behaves as its child."""

    def __init__(self, gen: GenLike) -> None:
        self.gen = lift(gen)
        self.started = False

    def op(self, ctx: Context) -> Op | Pending | None:
        if not self.started:
            if not ctx.all_free:
                return PENDING
            self.started = True
        return self.gen.op(ctx)

    def update(self, ctx: Context, event: Op) -> None:
        if self.started:
            self.gen.update(ctx, event)


def synchronize(gen: GenLike) -> Generator:
    return _Synchronize(gen)


def phases(*gens: GenLike) -> Generator:
    """Each generator in turn; a phase starts only once every operation before it completed."""
    return seq(*(synchronize(g) for g in gens))


class _Restricted:
    def __init__(self, keep: Callable[[Thread], bool], gen: GenLike) -> None:
        self.keep = keep
        self.gen = lift(gen)

    def op(self, ctx: Context) -> Op | Pending | None:
        return self.gen.op(ctx.restrict(self.keep))

    def update(self, ctx: Context, event: Op) -> None:
        if self.keep(ctx.thread_of(event.process)):
            self.gen.update(ctx.restrict(self.keep), event)


def _is_client(thread: Thread) -> bool:
    return isinstance(thread, int)


def _is_nemesis(thread: Thread) -> bool:
    return thread == NEMESIS


def on_threads(keep: Callable[[Thread], bool], gen: GenLike) -> Generator:
    return _Restricted(keep, gen)


def on_clients(gen: GenLike) -> Generator:
    """``gen`` sees (and so invokes on) client threads only."""
    return _Restricted(_is_client, gen)


def on_nemesis(gen: GenLike) -> Generator:
    """``gen`` sees (and so invokes on) the nemesis thread only."""
    return _Restricted(_is_nemesis, gen)


class _AnyOf:
    """Whichever child has an op; the first child asked rotates so none starves."""

    def __init__(self, gens: Sequence[GenLike]) -> None:
        self.gens: list[Generator | None] = [lift(g) for g in gens]
        self.start = 0

    def op(self, ctx: Context) -> Op | Pending | None:
        wait: Pending | None = None
        n = len(self.gens)
        for k in range(n):
            i = (self.start + k) % n
            g = self.gens[i]
            if g is None:
                continue
            result = g.op(ctx)
            if result is None:
                self.gens[i] = None
            elif isinstance(result, Pending):
                wait = result if wait is None else earliest(wait, result)
            else:
                self.start = (i + 1) % n
                return result
        return wait

    def update(self, ctx: Context, event: Op) -> None:
        for g in self.gens:
            if g is not None:
                g.update(ctx, event)


def any_of(*gens: GenLike) -> Generator:
    """All generators at once: an op from whichever has one (Jepsen's ``any``)."""
    return _AnyOf(gens)


class _Mix:
    """A random child per op; the choice sticks until that child yields an op or ends."""

    def __init__(self, gens: Sequence[GenLike]) -> None:
        self.gens = [lift(g) for g in gens]
        self.chosen: int | None = None

    def op(self, ctx: Context) -> Op | Pending | None:
        while self.gens:
            if self.chosen is None:
                self.chosen = ctx.rng.randrange(len(self.gens))
            result = self.gens[self.chosen].op(ctx)
            if result is None:
                del self.gens[self.chosen]
                self.chosen = None
                continue
            if isinstance(result, Op):
                self.chosen = None
            return result
        return None

    def update(self, ctx: Context, event: Op) -> None:
        for g in self.gens:
            g.update(ctx, event)


def mix(*gens: GenLike) -> Generator:
    """A uniformly random choice among generators for each op (Jepsen's ``mix``)."""
    return _Mix(gens)


class _Limit:
    def __init__(self, n: int, gen: GenLike) -> None:
        if n < 0:
            raise ValueError(f"limit must be >= 0, not {n}")
        self.left = n
        self.gen = lift(gen)

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.left <= 0:
            return None
        result = self.gen.op(ctx)
        if isinstance(result, Op):
            self.left -= 1
        return result

    def update(self, ctx: Context, event: Op) -> None:
        self.gen.update(ctx, event)


def limit(n: int, gen: GenLike) -> Generator:
    """At most ``n`` ops from ``gen``."""
    return _Limit(n, gen)


class _TimeLimit:
    def __init__(self, seconds: float, gen: GenLike) -> None:
        if seconds < 0:
            raise ValueError(f"time limit must be >= 0, not {seconds}")
        self.span = int(seconds * NS)
        self.deadline: int | None = None
        self.gen = lift(gen)

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.deadline is None:
            self.deadline = ctx.time + self.span
        if ctx.time >= self.deadline:
            return None
        result = self.gen.op(ctx)
        if isinstance(result, Pending):
            return earliest(result, Pending(self.deadline))
        return result

    def update(self, ctx: Context, event: Op) -> None:
        self.gen.update(ctx, event)


def time_limit(seconds: float, gen: GenLike) -> Generator:
    """``gen`` until ``seconds`` after it was first asked for an op."""
    return _TimeLimit(seconds, gen)


class _Spaced:
    """Ops no sooner than a gap after the previous one; the gap comes from ``gap(rng)``."""

    def __init__(self, gap: Callable[[random.Random], int], gen: GenLike) -> None:
        self.gap = gap
        self.gen = lift(gen)
        self.next_time: int | None = None

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.next_time is not None and ctx.time < self.next_time:
            return Pending(self.next_time)
        result = self.gen.op(ctx)
        if isinstance(result, Op):
            self.next_time = ctx.time + self.gap(ctx.rng)
        return result

    def update(self, ctx: Context, event: Op) -> None:
        self.gen.update(ctx, event)


def stagger(seconds: float, gen: GenLike) -> Generator:
    """Ops about ``seconds`` apart on average: each gap uniform in [0, 2*seconds] (Jepsen)."""
    if seconds < 0:
        raise ValueError(f"stagger must be >= 0, not {seconds}")
    span = int(seconds * NS)
    return _Spaced(lambda rng: int(rng.uniform(0, 2 * span)), gen)


def rate(per_second: float, gen: GenLike) -> Generator:
    """At most ``per_second`` ops per second overall, evenly spaced (Jepsen's ``delay``)."""
    if per_second <= 0:
        raise ValueError(f"rate must be positive, not {per_second}")
    gap = int(NS / per_second)
    return _Spaced(lambda rng: gap, gen)


class _Sleep:
    def __init__(self, seconds: float) -> None:
        self.span = int(seconds * NS)
        self.until: int | None = None

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.until is None:
            self.until = ctx.time + self.span
        return Pending(self.until) if ctx.time < self.until else None

    def update(self, ctx: Context, event: Op) -> None:
        return None


def sleep(seconds: float) -> Generator:
    """Nothing for ``seconds`` after first asked, then exhausted (a pause inside ``seq``)."""
    if seconds < 0:
        raise ValueError(f"sleep must be >= 0, not {seconds}")
    return _Sleep(seconds)


class _Repeat:
    def __init__(self, make: Callable[[], GenLike], times: int | None) -> None:
        self.make = make
        self.left = times
        self.gen: Generator | None = None

    def op(self, ctx: Context) -> Op | Pending | None:
        for _ in range(2):  # a fresh copy that is exhausted at once would spin forever: stop
            if self.gen is None:
                if self.left is not None and self.left <= 0:
                    return None
                if self.left is not None:
                    self.left -= 1
                self.gen = lift(self.make())
            result = self.gen.op(ctx)
            if result is not None:
                return result
            self.gen = None
        return None

    def update(self, ctx: Context, event: Op) -> None:
        if self.gen is not None:
            self.gen.update(ctx, event)


def repeat(gen: GenLike | Callable[[], GenLike], times: int | None = None) -> Generator:
    """A dict spec repeated (forever, or ``times`` times); a zero-argument factory re-made each time."""
    if isinstance(gen, Mapping):
        spec = gen
        return _Repeat(lambda: _Once(spec), times)
    if callable(gen) and not hasattr(gen, "op"):
        return _Repeat(gen, times)
    raise TypeError("repeat takes an op spec dict or a zero-argument factory of generators")


class _EachProcess:
    """A fresh generator from ``make()`` for every process, each seeing only its own thread."""

    def __init__(self, make: Callable[[], GenLike]) -> None:
        self.make = make
        self.gens: dict[Process, Generator] = {}
        self.done: set[Process] = set()

    def op(self, ctx: Context) -> Op | Pending | None:
        wait: Pending | None = None
        for thread in sorted(ctx.workers, key=_thread_key):
            process = ctx.workers[thread]
            if process in self.done:
                continue
            gen = self.gens.get(process)
            if gen is None:
                gen = self.gens[process] = lift(self.make())
            result = gen.op(ctx.restrict(lambda t, mine=thread: t == mine))
            if result is None:
                self.done.add(process)
            elif isinstance(result, Pending):
                wait = result if wait is None else earliest(wait, result)
            else:
                return result
        return wait

    def update(self, ctx: Context, event: Op) -> None:
        gen = self.gens.get(event.process)
        if gen is not None:
            thread = ctx.thread_of(event.process)
            gen.update(ctx.restrict(lambda t: t == thread), event)


def each_process(make: Callable[[], GenLike]) -> Generator:
    """Every process runs its own copy of ``make()`` (e.g. one final read per worker)."""
    return _EachProcess(make)


class _Until:
    def __init__(self, done: Callable[[Op], bool], gen: GenLike) -> None:
        self.done = done
        self.gen = lift(gen)
        self.mine: set[Process] = set()
        self.ended = False

    def op(self, ctx: Context) -> Op | Pending | None:
        if self.ended:
            return None
        result = self.gen.op(ctx)
        if isinstance(result, Op):
            self.mine.add(result.process)
        elif result is None and self.mine:
            return PENDING  # exhausted, but an op of ours may still come back done: wait for it
        return result

    def update(self, ctx: Context, event: Op) -> None:
        self.gen.update(ctx, event)
        if event.process in self.mine and event.type is not OpType.INVOKE:
            self.mine.discard(event.process)
            if self.done(event):
                self.ended = True


def until(done: Callable[[Op], bool], gen: GenLike) -> Generator:
    """``gen`` until one of its ops completes with ``done(completion)`` true."""
    return _Until(done, gen)


def until_ok(gen: GenLike) -> Generator:
    """``gen`` until one of its ops completes ``ok`` (e.g. retry a final read until it works)."""
    return _Until(lambda e: e.type is OpType.OK, gen)


# --- simulation -------------------------------------------------------------------------------


Completer = Callable[[Op, random.Random], tuple[OpType, Any, int]]
"""For a simulated invoke: (completion type, completion value, latency in ns)."""


def always_ok(latency_ns: int = 1_000_000) -> Completer:
    def complete(op: Op, rng: random.Random) -> tuple[OpType, Any, int]:
        return OpType.OK, op.value, latency_ns

    return complete


def simulate(gen: GenLike, *, concurrency: int, seed: int = 0, complete: Completer | None = None,
             nemesis: bool = True, max_time: float = 3600.0, poll: float = 0.01,
             max_ops: int = 1_000_000) -> list[Op]:
    """Run ``gen`` against a pretend system with a simulated clock: the history it would produce.

    Pure and deterministic: the same generator and seed give the same history. Each invoke is
    completed by ``complete`` (default: ``ok`` echoing the value after 1 ms); time jumps to the
    next completion or the time a generator asked to be woken. Applies the process rule (after
    ``info`` the thread runs ``process + concurrency``). Stops when the generator is exhausted and
    every op completed, or at ``max_time`` seconds, or after ``max_ops`` invokes.
    """
    g = lift(gen)
    rng = random.Random(seed)
    complete = complete or always_ok()
    ctx = context(concurrency=concurrency, rng=rng, nemesis=nemesis)
    workers: dict[Thread, Process] = dict(ctx.workers)
    free: set[Thread] = set(workers)
    inflight: list[tuple[int, int, Thread, Op]] = []  # (due, seq, thread, completion)
    history: list[Op] = []
    now, counter, invokes, horizon = 0, 0, 0, int(max_time * NS)

    def snapshot() -> Context:
        return Context(time=now, rng=rng, concurrency=concurrency, workers=dict(workers),
                       free_threads=frozenset(free))

    def record(op: Op) -> Op:
        op = replace(op, index=len(history))
        history.append(op)
        return op

    exhausted = False
    while now <= horizon and invokes < max_ops:
        inflight.sort(key=lambda x: (x[0], x[1]))
        while inflight and inflight[0][0] <= now:
            _, _, thread, done = inflight.pop(0)
            done = record(replace(done, time=now))
            free.add(thread)
            if done.type is OpType.INFO and isinstance(thread, int):
                workers[thread] = int(done.process) + concurrency
            g.update(snapshot(), done)
        result = None if exhausted else g.op(snapshot())
        if isinstance(result, Op):
            thread = snapshot().thread_of(result.process)
            if thread not in free or workers[thread] != result.process:
                raise RuntimeError(f"generator invoked {result.describe()} on a process that is not free")
            invoke = record(replace(result, time=now))
            invokes += 1
            free.discard(thread)
            g.update(snapshot(), invoke)
            kind, value, latency = complete(invoke, rng)
            counter += 1
            inflight.append((now + max(0, latency), counter, thread,
                             replace(invoke, type=kind, value=value)))
            continue
        if result is None:
            exhausted = True
            if not inflight:
                break
        wake = [d for d, *_ in inflight]
        if isinstance(result, Pending) and result.until is not None:
            wake.append(result.until)
        now = max(now + 1, min(wake)) if wake else now + int(poll * NS)
    return history


def ops_of(history: Iterable[Op], *, kind: OpType = OpType.INVOKE) -> list[Op]:
    """The events of one type, for assertions in tests."""
    return [op for op in history if op.type is kind]
