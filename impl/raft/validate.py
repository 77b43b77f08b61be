"""Peer input checks: what a message may claim, judged against what this core knows locally.

Theory of operation. The codec (``net/codec.py``) checks a frame's shape; this module checks its
*meaning* before ``RaftCore.step`` acts on it. A message that no correct member could have sent
is refused: ``check(core, m)`` returns the kind of violation and a detail, the core counts it
and logs it through ``Refusals`` (rate-limited), and the message changes nothing, not even the
term. An ``assert`` in the core is for our own bugs; input never reaches one.

What is refused, and why no correct member sends it:

* ``range``: a term, index or commit above ``MAX_VALUE`` (2^62). No real log or term gets
  near it, and it keeps ``term + 1`` and ``index + 1`` far from the 64-bit fields of ``meta``
  and the WAL (a term of 2^64-1 used to crash every member on its next election, for good).
* ``malformed``: an append whose entries are not consecutive from ``index + 1``, whose terms
  decrease, exceed the message's term, or sit below ``log_term``; a TIMEOUT_NOW or a vote reply
  at a term other than ours.
* ``not-leader``: an append, heartbeat, snapshot chunk or TIMEOUT_NOW at our term from a node other than the
  leader we already follow in that term (one leader per term, Raft §5.2); a TIMEOUT_NOW at
  a higher term (a transfer comes from our own leader).
* ``never-sent``: as leader, an append response acknowledging (or rejecting) an index beyond
  what we ever sent that follower this term, or a heartbeat response echoing a stamp from our
  future. Either would let a forged answer commit entries no follower holds, or park the
  follower's progress past our log (it would never be sent entries again).

* ``conflict``: an append that contradicts our committed prefix. One whose previous index is
  below our commit index changes nothing and is answered with the commit index (core.py), unless
  its previous entry or an entry it carries differs from one we committed: then it is refused.
  ``log.py`` refuses a conflict with a committed entry above the previous index as a second
  line. No correct leader sends either (leader completeness, Raft §5.4); the campaign's log
  check counts such a line as a violation (raftlab/replicas.py).

What cannot be judged locally, a forged message that is *plausible* (an acknowledgement
of an index we did send, an append from our actual leader), is what peer authentication is for
(docs/node.md, security).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .messages import NONE, Message, MsgType, Role

if TYPE_CHECKING:
    from .core import RaftCore

MAX_VALUE = 1 << 62
LOG_WINDOW_TICKS = 100  # per kind, one log line per window; the rest are counted
_RESPONSES = (MsgType.VOTE_RESP, MsgType.PRE_VOTE_RESP)


class Refused(Exception):
    """A peer message that breaks the protocol; ``kind`` names the class of violation."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def check(core: RaftCore, m: Message) -> None:
    """Raise ``Refused`` if ``m`` is something no correct member sends to ``core``."""
    for name in ("term", "index", "log_term", "commit", "reject_hint", "hint_term", "offset"):
        if getattr(m, name) > MAX_VALUE:
            raise Refused("range", f"{name} {getattr(m, name)} is beyond {MAX_VALUE}")
    t = m.type
    if t is MsgType.APP:
        _check_entries(m)
    leads_or_follows_other = core.role is Role.LEADER or (
        core.role is Role.FOLLOWER and core.lead not in (NONE, m.from_))
    if m.term == core.term and t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.TIMEOUT_NOW, MsgType.SNAP) \
            and leads_or_follows_other:
        raise Refused("not-leader", f"{t.name} from {m.from_} at term {m.term}, whose leader is {core.lead}")
    if t is MsgType.TIMEOUT_NOW and (m.term != core.term or m.from_ != core.lead):
        raise Refused("not-leader", f"TIMEOUT_NOW from {m.from_} at term {m.term}; we follow {core.lead} "
                                    f"at term {core.term}")
    if t in _RESPONSES and not m.reject and m.term < core.term:
        return  # stale; the core drops it
    if core.role is Role.LEADER and m.term == core.term:
        pr = core.prs.get(m.from_)
        if pr is None:
            return
        if t is MsgType.APP_RESP and m.index > pr.sent:
            raise Refused("never-sent", f"APP_RESP from {m.from_} for index {m.index}; we sent it up to "
                                        f"{pr.sent}")
        if t is MsgType.SNAP_RESP and m.index == pr.pending_snapshot and m.offset > pr.snap_size:
            raise Refused("never-sent", f"SNAP_RESP from {m.from_} acknowledging {m.offset} bytes of a "
                                        f"{pr.snap_size}-byte snapshot")
        if t is MsgType.APP_RESP and m.reject and m.reject_hint > m.index:
            raise Refused("malformed", f"APP_RESP rejecting {m.index} with a hint {m.reject_hint} beyond it")
        if t is MsgType.HEARTBEAT_RESP and m.index > core.clock:
            raise Refused("never-sent", f"HEARTBEAT_RESP from {m.from_} echoes stamp {m.index}; our clock is "
                                        f"{core.clock}")


def _check_entries(m: Message) -> None:
    if m.log_term > m.term:
        raise Refused("malformed", f"APP at term {m.term} with a previous entry of term {m.log_term}")
    prev_term = m.log_term
    for k, e in enumerate(m.entries):
        if e.index != m.index + 1 + k:
            raise Refused("malformed", f"APP after index {m.index}: entry {k} has index {e.index}")
        if e.term > m.term or e.term < prev_term or e.term > MAX_VALUE:
            raise Refused("malformed", f"APP at term {m.term}: entry {e.index} has term {e.term} "
                                       f"(after term {prev_term})")
        prev_term = e.term


class Refusals:
    """Counts refused messages per kind and logs at most one line per kind per window of ticks,
    so a flood of bad frames cannot fill the disk through the log (the next line says how many
    were suppressed). Pure: time is the core's tick clock."""

    __slots__ = ("_last", "_log", "_suppressed", "counts")

    def __init__(self, log: Callable[[str], None]) -> None:
        self.counts: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}
        self._log = log

    def note(self, kind: str, line: str, clock: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and clock - last < LOG_WINDOW_TICKS:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = clock
        more = self._suppressed.pop(kind, 0)
        suffix = f" ({more} more {kind} refusals since the last line)" if more else ""
        self._log(line + suffix)

    def total(self) -> int:
        return sum(self.counts.values())
