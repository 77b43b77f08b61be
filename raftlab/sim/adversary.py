"""The simulator's adversarial-message mode: forged peer messages that the validation layer must
refuse (``impl/raft/validate.py``), crafted from the target's current state.

Theory of operation. Each forgery is invalid *whatever* the target does before it steps it (its
inbox may hold messages that change its progress or term first): indexes are beyond anything
its log holds, stamps far in its future, terms out of range or far ahead, the sender is not the
leader the target follows in that term (a term never changes its leader), entries skip indexes.
So every forgery must be refused or ignored as stale, and the simulator's invariants (election
safety, log matching, leader completeness, state-machine safety) and its linearizability check
must hold with them in the mix. What validation cannot judge locally (a plausible message under
a real member's id) is the job of authentication, and is not forged here.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from raftlab.impl.raft import NONE, Entry, Message, MsgType, Role
from raftlab.impl.raft.validate import MAX_VALUE

if TYPE_CHECKING:
    from raftlab.impl.raft import RaftCore

KINDS = ("range", "not-leader", "gap", "never-sent", "future-stamp", "timeout-now")
FAR = 1 << 30


def forge(rng: random.Random, core: RaftCore, ids: tuple[int, ...]) -> tuple[str, Message] | None:
    """A forged message for ``core`` (kind, message), or None when its state offers no such attack."""
    kind = rng.choice(KINDS)
    others = [i for i in ids if i != core.id]
    frm = rng.choice(others)
    last = core.log.last_index()
    if kind == "range":
        mtype = rng.choice(list(MsgType))
        term = rng.choice([(1 << 64) - 1, MAX_VALUE + 1 + rng.randrange(FAR)])
        return kind, Message(type=mtype, to=core.id, from_=frm, term=term, index=rng.randrange(last + 1))
    if kind == "not-leader":
        if core.role is not Role.FOLLOWER or core.lead == NONE:
            return None
        rogues = [i for i in others if i != core.lead]
        if not rogues:
            return None
        entries = (Entry(term=core.term, index=last + 1, data=b"forged"),)
        mtype = rng.choice([MsgType.APP, MsgType.HEARTBEAT])
        return kind, Message(type=mtype, to=core.id, from_=rng.choice(rogues), term=core.term, index=last,
                             log_term=core.log.last_term(), entries=entries if mtype is MsgType.APP else (),
                             commit=last + 1)
    if kind == "gap":
        skip = 2 + rng.randrange(5)
        entries = (Entry(term=core.term, index=last + skip, data=b"forged"),)
        return kind, Message(type=MsgType.APP, to=core.id, from_=core.lead or frm, term=core.term, index=last,
                             log_term=core.log.last_term(), entries=entries, commit=last + skip)
    if kind == "never-sent":
        if core.role is not Role.LEADER:
            return None
        return kind, Message(type=MsgType.APP_RESP, to=core.id, from_=frm, term=core.term,
                             index=last + FAR + rng.randrange(FAR))
    if kind == "future-stamp":
        if core.role is not Role.LEADER:
            return None
        return kind, Message(type=MsgType.HEARTBEAT_RESP, to=core.id, from_=frm, term=core.term,
                             index=core.clock + FAR, reject_hint=0)
    term = core.term + FAR if rng.random() < 0.5 else core.term
    sender = next((i for i in others if i != core.lead), None)
    if sender is None:
        return None
    return kind, Message(type=MsgType.TIMEOUT_NOW, to=core.id, from_=sender, term=term)
