"""Every contract between raftlab's parts, in one file a newcomer can read in one sitting.

Each protocol is small (five methods at most). Optional abilities are separate
``@runtime_checkable`` protocols found with ``isinstance`` (Jepsen's ``satisfies?``), never stubbed
methods that raise. A method is ``async`` exactly when it does I/O. Nothing here needs to be
inherited from: any object with the right methods fits.

Only the standard library and ``raftlab.history`` are imported, so every part can depend on this
file without depending on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from raftlab.history import History, Op, Operation

if TYPE_CHECKING:
    from raftlab.checker.result import Result

Host = str
"""A host's name as the lab knows it (``n1`` .. ``n5``)."""

Grudge = dict[Host, frozenset[Host]]
"""A partition: each host maps to the hosts whose traffic it drops (Jepsen's grudge)."""

S = TypeVar("S", bound=Hashable)


# --- checking -----------------------------------------------------------------------------------


class Model(Protocol[S]):
    """A sequential specification (porcupine's Model). Pure: ``step`` never mutates ``state``.

    States are hashable so the checker can memoise (linearized set, state) pairs. Models see only
    definite outputs: ``info`` and ``fail`` semantics live in the checker. ``step`` with an unknown
    outcome (``operation.known`` false) must accept and apply the operation's *effect*.
    """

    def init(self) -> S: ...

    def step(self, state: S, operation: Operation) -> tuple[bool, S]: ...

    def describe_op(self, operation: Operation) -> str: ...

    def describe_state(self, state: S) -> str: ...


# Optional model capabilities (porcupine's optional Partition / PartitionEvent, DescribeOperation
# ...): each is found with isinstance and each only makes checking faster or explanations better;
# the verdict never depends on whether a model offers one.


@runtime_checkable
class PartitionedModel(Protocol):
    """Histories split into independent parts (P-compositionality, Herlihy & Wing), e.g. by key.

    Contract: operations with different keys never constrain each other, so the history is
    linearizable exactly when every part is.
    """

    def partition_key(self, operation: Operation) -> Hashable: ...


@runtime_checkable
class CompiledModel(Protocol):
    """``step`` specialised to one operation once, before the search calls it millions of times.

    Contract: ``compile(op)(state) == step(state, op)`` for every state.
    """

    def compile(self, operation: Operation) -> Callable[[Any], tuple[bool, Any]]: ...


@runtime_checkable
class ReadOnlyModel(Protocol):
    """Which operations never change the state (reads).

    Contract: if ``read_only(op)``, ``step(s, op)`` returns ``(ok, s)`` for every state ``s``. The
    search then linearizes an accepted read-only operation without trying alternatives to it (a
    read placed as early as possible loses nothing), and drops unknown reads (they constrain nothing).
    """

    def read_only(self, operation: Operation) -> bool: ...


@runtime_checkable
class ValueFlowModel(Protocol):
    """Register-like models: which values an operation observes and which it writes.

    Contract: a state is the last value written (or the initial value, ``init()``).
    ``observed(op)``: the values whose presence the operation's acceptance or effect tests (a
    known read's output, a cas's expected value; nothing for a read whose output is unknown); a
    known operation that observes ``v`` is accepted only in state ``v``. ``written(op)``: the
    values it may leave; a known operation that writes ``v`` leaves the state ``v``, and an
    operation that writes nothing leaves the state as it was. The search drops unknown operations
    whose written values nothing observes (their effect can only hurt), and the shrinker keeps the
    writes a kept observation may have read.
    """

    def observed(self, operation: Operation) -> tuple[Hashable, ...]: ...

    def written(self, operation: Operation) -> tuple[Hashable, ...]: ...


@runtime_checkable
class MonotoneModel(Protocol):
    """Models whose state only grows under most operations (porcupine's kv: append to a string).

    Contract: there is a preorder "grown from" on states such that every operation ``op`` with
    ``resets(op) is None`` leaves a state grown from the one it was given, and every other one
    leaves one of the states ``resets(op)`` names, whatever it was given (a put). ``reachable(op)(s)``
    is false only if ``op`` fits in no state grown from ``s`` (a get of "ab" in state "ac"). The
    search then abandons a branch as soon as a known operation that must still be linearized can
    no longer fit, unless a reset that could still come before it would let it fit.

    ``shows(observer, op)`` (for the shrinker): false only if the read-only ``observer`` fits in
    no state where ``op``'s effect persists (``op`` came after the last reset before it, or is
    it): an append whose value is not in a get's output. Operations that are not read-only must
    always fit. The shrinker keeps, with each observation, every operation it shows.
    """

    def resets(self, operation: Operation) -> tuple[Any, ...] | None: ...

    def reachable(self, operation: Operation) -> Callable[[Any], bool]: ...

    def shows(self, observer: Operation, operation: Operation) -> bool: ...


class Checker(Protocol):
    """Decides something about a whole history. Pure; a crash becomes an ``unknown`` Result."""

    def check(self, history: History, opts: dict[str, Any]) -> Result: ...


# --- driving a system ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What a command run on a host returned."""

    exit_status: int
    stdout: str
    stderr: str


class Remote(Protocol):
    """Runs commands and moves files on one host (local subprocess, or SSH)."""

    async def run(self, cmd: str, *, stdin: str | None = None, check: bool = True) -> RunResult: ...

    async def put(self, local: str, remote: str) -> None: ...

    async def get(self, remote: str, local: str) -> None: ...


class Net(Protocol):
    """Cuts and heals links between hosts."""

    async def partition(self, grudge: Grudge) -> None: ...

    async def heal(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkShape:
    """What happens to the traffic of one direction of a link (from ``src`` to ``dst``).

    ``delay`` and ``jitter`` in seconds (each chunk or packet waits delay + uniform(0, jitter),
    order kept), ``rate`` in bytes per second (0: unlimited), ``drop``: the direction carries
    nothing (a one-way blackhole). ``seed`` seeds the jitter."""

    delay: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    drop: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("delay", "jitter", "rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"link {name} must be >= 0, not {getattr(self, name)}")


Link = tuple[Host, Host]
"""A direction of a link: traffic from the first host to the second."""


@runtime_checkable
class ShapesLinks(Protocol):
    """A ``Net`` that can slow, throttle, cut one way and reset links, per direction (link faults).

    ``shape`` replaces every earlier shape; ``unshape`` removes them all (partitions untouched);
    ``reset`` breaks the TCP connections of the given directions once (peers see a reset)."""

    async def shape(self, links: Mapping[Link, LinkShape]) -> None: ...

    async def unshape(self) -> None: ...

    async def reset(self, links: Sequence[Link]) -> None: ...


class Lab(Protocol):
    """Where the nodes run: a set of hosts, a way to reach each, and control of their network."""

    @property
    def hosts(self) -> Sequence[Host]: ...

    def remote(self, host: Host) -> Remote: ...

    @property
    def net(self) -> Net: ...

    def endpoint(self, src: Host | None, dst: Host, port: int) -> tuple[str, int]:
        """How ``src`` reaches ``dst``'s ``port``; ``src=None`` is the control machine (clients),
        whose links are never partitioned. In the local lab this is a per-link proxy."""
        ...

    async def close(self) -> None: ...


class HostLayout(Protocol):
    """Where a DB may put things on a host, and how peers address it; every lab offers it beside ``Lab``."""

    def node_dir(self, host: Host) -> str:
        """A directory on ``host`` that belongs to this lab (files, pid files, logs go here)."""
        ...

    def python(self, host: Host) -> str:
        """A Python 3.11+ interpreter on ``host`` that can import raftlab."""
        ...

    def address(self, host: Host) -> str:
        """The one address every peer reaches ``host`` at, for systems whose members must agree on
        it (partitions by address cut it; the local lab's proxy mode answers 127.0.0.1)."""
        ...


@runtime_checkable
class StopsLeftovers(Protocol):
    """A lab that can find and kill what a run left on its hosts (the local lab: every process in
    a host directory). The runner calls it after teardown and reports what it killed."""

    async def stop_leftovers(self) -> list[str]: ...


class HostLab(Lab, HostLayout, Protocol):
    """What a system module is given: a ``Lab`` that also lays out its hosts."""


class DB(Protocol):
    """Installs and removes the system under test on a host.

    ``setup(host)`` installs, starts and returns once the node serves (or raises naming why);
    ``teardown(host)`` stops it and removes its files, and must work on a host where nothing was
    ever set up (the runner tears down before setting up). Both run on every host in parallel.
    """

    async def setup(self, host: Host) -> None: ...

    async def teardown(self, host: Host) -> None: ...


@runtime_checkable
class ClusterSetup(Protocol):
    """A step after every host's ``setup`` (an init that needs all members up): e.g. create users."""

    async def setup_cluster(self, hosts: Sequence[Host]) -> None: ...


@runtime_checkable
class ClusterTeardown(Protocol):
    """A step before any host's ``teardown`` (e.g. save cluster-wide state or leave a ring)."""

    async def teardown_cluster(self, hosts: Sequence[Host]) -> None: ...


@runtime_checkable
class Killable(Protocol):
    """``kill`` returns only once the node's processes are gone (raise if none was running);
    ``start`` is a no-op on a running node (healers call it in any state) and otherwise starts it
    on its existing data and returns once it serves."""

    async def kill(self, host: Host) -> None: ...

    async def start(self, host: Host) -> None: ...


@runtime_checkable
class HasStartEnv(Protocol):
    """A DB that starts its nodes with extra environment variables, from the next ``start`` on
    (the clock faults preload libfaketime this way). ``env`` replaces what was set before."""

    def set_start_env(self, host: Host, env: Mapping[str, str]) -> None: ...


@runtime_checkable
class HasDataFiles(Protocol):
    """A DB that says which of a host's files are which, for the file faults: kind (``wal``,
    ``snapshot``) -> an absolute shell glob. A kind it does not have is simply absent."""

    def data_files(self, host: Host) -> Mapping[str, str]: ...


@runtime_checkable
class Pausable(Protocol):
    """``pause`` stops the node's processes (SIGSTOP) without killing them; ``resume`` continues them."""

    async def pause(self, host: Host) -> None: ...

    async def resume(self, host: Host) -> None: ...


@runtime_checkable
class HasPrimaries(Protocol):
    """The hosts that currently lead, best first (empty when there is none); never raises for an
    unreachable node, which simply is not a primary."""

    async def primaries(self) -> list[Host]: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A DB whose membership can change (nemesis/member.py). ``set_members`` returns once the
    change is complete (raising if it is not within the DB's timeout); ``wipe`` kills a host's
    node, empties its data and starts it as a member that must be added again."""

    async def members(self) -> list[Host]: ...

    async def set_members(self, hosts: Sequence[Host]) -> None: ...

    async def wipe(self, host: Host) -> None: ...


@runtime_checkable
class ShowsMembership(Protocol):
    """A Reconfigurable DB that can say its whole configuration, for the report's membership
    timeline (nemesis/member.py records it after every change):
    ``{"voters": [Host], "learners": [Host], "outgoing": [Host], "leader": Host | None}``, where
    ``outgoing`` holds the old voters while a joint change is in progress (empty otherwise)."""

    async def membership(self) -> dict[str, Any]: ...


@runtime_checkable
class HasLogFiles(Protocol):
    """``{path on host: name in the run's nodes/<host>/}`` of the files worth keeping after a run."""

    def log_files(self, host: Host) -> dict[str, str]: ...


@runtime_checkable
class HasReplicaDigests(Protocol):
    """Each host's replica fingerprint, compared at the end of a campaign (raftlab/replicas.py).

    Per host: ``{"applied": int, "chain": str, "tree": str}`` (a running hash of the applied log
    and a digest of the state machine; replicas at the same ``applied`` must agree on both), or
    ``{"error": str}`` for a host that did not answer.
    """

    async def digests(self) -> dict[Host, dict[str, Any]]: ...


class Client(Protocol):
    """Talks to the system for one worker.

    ``invoke`` returns the completion of ``op``: the same process and ``f``, with type ``ok``,
    ``fail`` (it definitely did not happen) or ``info`` (unknown). It never retries silently.
    """

    async def open(self, host: Host) -> Client: ...

    async def invoke(self, op: Op) -> Op: ...

    async def close(self) -> None: ...


class Nemesis(Protocol):
    """Injects faults. ``invoke`` returns an ``info`` completion saying what was really done."""

    async def setup(self, lab: Lab) -> None: ...

    async def invoke(self, op: Op) -> Op: ...

    async def teardown(self) -> None: ...

    def fs(self) -> frozenset[str]: ...


class GeneratorContext(Protocol):
    """What a generator may look at: the time and chance it must use, and who is free."""

    @property
    def time(self) -> int: ...

    @property
    def free_processes(self) -> Sequence[int | str]: ...


Pending = Any
"""The generator's "not yet" answer; the value lives in ``raftlab.generator.PENDING``."""


class Generator(Protocol):
    """Produces operations. Time and randomness come only from the context (Jepsen generators)."""

    def op(self, ctx: Any) -> Op | Pending | None: ...

    def update(self, ctx: Any, event: Op) -> None: ...

