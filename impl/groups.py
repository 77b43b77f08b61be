"""Several Raft groups in one node process, routed by group id (Dongting's ``RaftGroupImpl`` per
group, SOFAJRaft's multi-raft ``RaftGroupService``).

Theory of operation. ``raftlab node --groups N`` runs N independent Raft groups, ids ``0..N-1``.
Each group has its own ``NodeMachine`` (one RaftCore and one DtKV tree), its own WAL and
snapshots in its own directory, its own configuration (changed with ``raftlab admin --group G``)
and so its own leader, and its own Ready loop and timer; the groups share the process: its two
ports, its peer links (one TCP connection to each peer carries every group's frames), its cluster
key and its event loop. The member id is the process's: node ``i`` is member ``i`` of every group.
The sans-I/O core and the machine know nothing of groups; this module is the shell's routing
table, pure, so a deterministic test can drive several machines through it.

On the wire (``net/codec.py``) a peer frame of group 0 is the 15-field list of a single-group
node, and one of group G > 0 carries G as a 16th field; a client request for group G > 0 is the
map ``{"group": G, "request": [...]}``. So group 0 is the default everywhere: a node started
without ``--groups``, a client without ``--group``, and every existing campaign and test speak
exactly the format they spoke before.

Refusals. Every inbound frame's group id is checked here before any machine sees it:

* a peer message for a group this process does not serve (a member started with more groups, or
  a forged frame) is dropped and counted under ``unknown-group`` (one rate-limited log line);
  the connection stays open, so one member's wrong ``--groups`` never cuts the other groups'
  traffic on that link. The message's meaning is then judged by that group's own core
  (``raft/validate.py``), as on a single-group node.
* a client request for an unknown group is answered ``validation`` naming the groups served.

Authentication (``net/auth.py``) is per connection, and every group's frames travel on the same
authenticated connections, so it covers every group: the sender check (``from`` must be the
authenticated member) and the read-only role's refusal of writes apply whatever the group.

Data directory layout (``group_dir``): group 0 keeps the single-group layout in ``DATA_DIR``
itself (``meta``, ``manifest``, ``wal/*.seg``, ``snapshot-*.snap``); group G > 0 has the same
files in ``DATA_DIR/groups/G/``. At start each group recovers from its own directory
(``storage/compaction.recover``), so a crash of the process recovers every group, and a damaged
group directory refuses that start naming the file (``raftlab node repair --group G`` repairs one
group). Election jitter: group 0 draws from ``--seed``; group G from a stream named by the seed
and G (``group_seed``), so the groups' timers are independent yet replayable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

GROUPS_DIR = "groups"  # DATA_DIR/groups/<G>/ holds group G > 0
MAX_GROUPS = 64

T = TypeVar("T")


def group_ids(count: int) -> tuple[int, ...]:
    """The ids of ``--groups count``: 0..count-1 (ValueError naming the flag)."""
    if not 1 <= count <= MAX_GROUPS:
        raise ValueError(f"--groups must be 1..{MAX_GROUPS}, not {count}")
    return tuple(range(count))


def group_dir(data_dir: Path, group: int) -> Path:
    """Where group ``group`` keeps its WAL, meta, manifest and snapshots."""
    return data_dir if group == 0 else data_dir / GROUPS_DIR / str(group)


def group_seed(seed: int, group: int) -> int | str:
    """The seed of group ``group``'s election jitter (group 0: ``--seed`` itself, as before)."""
    return seed if group == 0 else f"{seed}/group-{group}"


def group_logger(log: Callable[[str], None], group: int) -> Callable[[str], None]:
    """Group 0 logs as a single-group node does; group G's lines start with ``group G:``."""
    if group == 0:
        return log
    return lambda line: log(f"group {group}: {line}")


class UnknownGroup(Exception):
    """A frame for a group this process does not serve; the message names the groups served."""


class Router(Generic[T]):
    """Group id -> the group's member (a shell, or a machine in a test). Invariant: the set of
    groups is fixed at construction (a process serves the groups it was started with)."""

    __slots__ = ("_members",)

    def __init__(self, members: dict[int, T]) -> None:
        if not members:
            raise ValueError("a router needs at least one group")
        self._members = dict(members)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._members))

    def route(self, group: int) -> T:
        member = self._members.get(group)
        if member is None:
            raise UnknownGroup(f"unknown group {group}: this node serves groups {self.describe()}")
        return member

    def describe(self) -> str:
        ids = self.ids
        return f"{ids[0]}..{ids[-1]}" if len(ids) > 1 and ids == tuple(range(ids[0], ids[-1] + 1)) \
            else ",".join(map(str, ids))

    def items(self) -> Iterator[tuple[int, T]]:
        return iter(sorted(self._members.items()))

    def __len__(self) -> int:
        return len(self._members)
