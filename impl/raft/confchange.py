"""Membership: who votes and who learns, changed by joint consensus (Raft thesis §4.3).

Theory of operation (etcd-raft's confchange/ package and Dongting's MemberManager
prepare / commit / abort). A ``Membership`` is the configuration a core works under: its
``voters``, its ``learners`` (they receive the log and never count in a quorum), and while a
change is under way the ``outgoing`` voters and learners it replaces. A change is a
``ConfChange`` entry in the log (``EntryType.CONF_CHANGE``) and takes effect on every member when
that entry is *applied* (etcd's rule), so the configuration is a pure function of the applied
prefix of the log, and snapshots carry the one at their index (``SnapshotMeta``).

* ``enter`` (prepare): from a simple configuration C_old to the joint C_old,new. It commits under
  C_old (it is applied only once committed); from then on an election or a commit needs a
  majority of *both* C_old and C_new (``JointConfig``), so no two leaders can be chosen by the
  two sides, whatever order the members apply it in.
* ``leave`` (commit): from C_old,new to C_new, committed under the joint quorum. With
  ``auto_leave`` (the default, etcd's ConfChangeTransitionAuto) the leader proposes it itself
  once it has applied the ``enter``.
* ``abort``: from C_old,new back to C_old, also under the joint quorum: a prepared change the
  operator gives up (Dongting's drop). A joint configuration whose *new* majority is gone can
  neither leave nor abort (both need it): that is the price of safety, which is why a new voter
  should first be a learner that caught up (``raftlab admin add-learner``, then ``promote``).

``validate`` names what is wrong with a change (one at a time, never an empty set of voters,
learners apart from voters, nothing that changes nothing); ``apply`` is what every member runs
at apply time, where an invalid change (proposed by a stale leader, or racing another) is a
no-op, the same on every member. Removing the leader is allowed: it steps down once the
configuration without it is applied (core.py). Pure: bytes and tuples in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .quorum import JointConfig, MajorityConfig

OPS = ("enter", "leave", "abort")


class ConfChangeError(ValueError):
    """A membership change that cannot be made; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()
    outgoing: tuple[int, ...] = ()  # non-empty while joint: the voters being replaced
    outgoing_learners: tuple[int, ...] = ()  # the learners before the change (restored by abort)
    auto_leave: bool = True

    @property
    def joint(self) -> bool:
        return bool(self.outgoing)

    def quorum(self) -> MajorityConfig | JointConfig:
        incoming = MajorityConfig(self.voters)
        return JointConfig(incoming, MajorityConfig(self.outgoing)) if self.joint else incoming

    def all_voters(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.voters) | set(self.outgoing)))

    def members(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.voters) | set(self.outgoing) | set(self.learners)))

    def describe(self) -> str:
        text = f"voters={list(self.voters)}"
        if self.joint:
            text += f" outgoing={list(self.outgoing)}"
        if self.learners:
            text += f" learners={list(self.learners)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"voters": list(self.voters), "learners": list(self.learners), "outgoing": list(self.outgoing),
                "outgoing_learners": list(self.outgoing_learners), "auto_leave": self.auto_leave}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfChange:
    op: str  # enter | leave | abort
    voters: tuple[int, ...] = ()  # enter: the new voters
    learners: tuple[int, ...] = ()  # enter: the new learners
    auto_leave: bool = True

    def describe(self) -> str:
        if self.op == "enter":
            extra = "" if self.auto_leave else ", manual leave"
            return f"enter joint -> voters={list(self.voters)} learners={list(self.learners)}{extra}"
        return f"{self.op} joint"


def encode_change(c: ConfChange) -> bytes:
    return msgpack.packb({"op": c.op, "voters": list(c.voters), "learners": list(c.learners),
                          "auto_leave": c.auto_leave}, use_bin_type=True)


def decode_change(data: bytes) -> ConfChange:
    """The change in a CONF_CHANGE entry; ``ConfChangeError`` if it is not one."""
    try:
        obj = msgpack.unpackb(data, raw=False)
        change = ConfChange(op=str(obj["op"]), voters=tuple(int(v) for v in obj["voters"]),
                            learners=tuple(int(v) for v in obj["learners"]), auto_leave=bool(obj["auto_leave"]))
    except Exception as e:  # an entry written by something else: applied as a no-op
        raise ConfChangeError(f"not a membership change ({e})") from None
    if change.op not in OPS:
        raise ConfChangeError(f"unknown membership operation {change.op!r}")
    return change


def validate(m: Membership, c: ConfChange) -> Membership:
    """The membership ``c`` leads to from ``m``, or ``ConfChangeError`` naming the problem."""
    if c.op == "enter":
        if m.joint:
            raise ConfChangeError(f"a change is in progress ({m.describe()}): leave or abort it first")
        voters, learners = tuple(sorted(set(c.voters))), tuple(sorted(set(c.learners)))
        if not voters:
            raise ConfChangeError("a configuration needs at least one voter")
        if any(v <= 0 for v in voters + learners):
            raise ConfChangeError(f"member ids must be positive: {list(voters + learners)}")
        if set(voters) & set(learners):
            raise ConfChangeError(f"{sorted(set(voters) & set(learners))} cannot be both voter and learner")
        if voters == tuple(sorted(m.voters)) and learners == tuple(sorted(m.learners)):
            raise ConfChangeError(f"the configuration is already {m.describe()}")
        return Membership(voters=voters, learners=learners, outgoing=tuple(sorted(m.voters)),
                          outgoing_learners=m.learners, auto_leave=c.auto_leave)
    if not m.joint:
        raise ConfChangeError(f"no change is in progress to {c.op} ({m.describe()})")
    if c.op == "leave":
        return Membership(voters=m.voters, learners=m.learners)
    return Membership(voters=m.outgoing, learners=m.outgoing_learners)


def apply(m: Membership, c: ConfChange) -> tuple[Membership, str]:
    """What every member does when the entry is applied: the new membership and a log line (an
    invalid change leaves the membership as it is, identically everywhere)."""
    try:
        new = validate(m, c)
    except ConfChangeError as e:
        return m, f"ignores membership change ({c.describe()}): {e}"
    return new, f"applies membership change ({c.describe()}): now {new.describe()}"
