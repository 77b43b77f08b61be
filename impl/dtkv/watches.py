"""Watches: change events of the applied log, served to clients by long polls (Dongting's
ServerWatchManager, etcd's watchable store), sans-I/O like the machine that owns it.

Theory of operation. Every applied write leaves its changes (``Tree.changes``: put, dir, del of a
key) here as events stamped with their raft index, oldest first. A client watches a key (that
key and everything under it; ``""`` is everything) *from* an index: the answer is every event at
or after it, in index order, up to the node's applied index ``upto``, plus ``next = upto + 1``,
the index to ask from next time. So a client that always asks from the last ``next`` sees each
committed change exactly once, in order, whichever node answers and however often it
reconnects: events are committed log entries, identical on every replica, and ``next`` says
which indexes the answer covered even when none of them touched the key.

A poll with no events yet waits (up to ``WAIT_SECONDS`` of the machine's time, then answers
empty) so a watcher learns of a change as soon as it is applied, without busy polling. The
buffer keeps events from ``floor`` on: it starts after the state the node restored (a snapshot),
holds at most ``max_events`` events and ``max_bytes`` of their values, and never reaches below
the log's first index; a watch from an
older index is answered ``compacted`` with the floor, and the client must re-read the key and
watch from the read's index + 1. ``from_index`` 0 means "from now" (the next applied index).

``unsafe_skip`` (a deliberately broken mode, ``--unsafe-watch-skip``) starts every answer one
index late: a watcher that resumes loses the event at its resume index.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from raftlab.impl.dtkv.commands import ErrorKind
from raftlab.impl.dtkv.tree import Change

H = TypeVar("H")
WAIT_SECONDS = 0.5  # below the clients' default 1 s call timeout
MAX_ANSWER = 1000  # events in one answer (a watcher far behind catches up over several polls)


def covers(watched: str, key: str) -> bool:
    return watched == "" or key == watched or key.startswith(watched + ".")


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer(Generic[H]):
    """One reply to a watch poll: ``error`` None or ``compacted``, and its body."""

    handle: H
    request_id: int
    error: str | None
    body: dict[str, Any]


@dataclass(slots=True)
class _Poll(Generic[H]):
    key: str
    start: int
    handle: H
    request_id: int
    deadline: float


class Watches(Generic[H]):
    def __init__(self, *, max_events: int = 100_000, max_bytes: int = 64 << 20, unsafe_skip: bool = False) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.bytes = 0
        self.unsafe_skip = unsafe_skip
        self.events: deque[tuple[int, str, str, bytes | None]] = deque()  # (index, kind, key, value)
        self.floor = 1  # events at indexes >= floor are all here
        self.applied = 0
        self._polls: list[_Poll[H]] = []

    def reset(self, applied: int) -> None:
        """The state was replaced (a snapshot restored or installed): events before are gone."""
        self.events.clear()
        self.bytes = 0
        self.floor = applied + 1
        self.applied = applied

    def record(self, index: int, changes: list[Change]) -> None:
        """The entry at ``index`` was applied with these changes (possibly none)."""
        self.applied = index
        for kind, key, value in changes:
            self.events.append((index, kind, key, value))
            self.bytes += len(key) + (len(value) if value else 0)
        events = self.events
        while len(events) > self.max_events or (self.bytes > self.max_bytes and len(events) > 1):
            self.trim(events[0][0] + 1)

    def trim(self, first_index: int) -> None:
        """Forget the events before ``first_index`` (the log no longer holds them)."""
        events = self.events
        while events and events[0][0] < first_index:
            _, _, key, value = events.popleft()
            self.bytes -= len(key) + (len(value) if value else 0)
        self.floor = max(self.floor, first_index)

    def poll(self, key: str, from_index: int, handle: H, request_id: int, now: float) -> Answer[H] | None:
        """Answer a watch poll now if it has events (or is compacted), else park it."""
        start = self.applied + 1 if from_index == 0 else from_index
        if start < self.floor:
            return Answer(handle=handle, request_id=request_id, error=ErrorKind.COMPACTED, body=
                          {"message": f"events before index {self.floor} are compacted on this node: re-read "
                                      f"{key!r} and watch from the read's index + 1", "first": self.floor})
        p = _Poll(key, start, handle, request_id, now + WAIT_SECONDS)
        answer = self._answer(p, final=False)
        if answer is None:
            self._polls.append(p)
        return answer

    def ready(self, now: float) -> list[Answer[H]]:
        """Parked polls that now have events, or whose wait is over (answered empty)."""
        out: list[Answer[H]] = []
        keep: list[_Poll[H]] = []
        for p in self._polls:
            answer = self._answer(p, final=now >= p.deadline)
            if answer is None:
                keep.append(p)
            else:
                out.append(answer)
        self._polls = keep
        return out

    def drop_all(self, error: str, body: dict[str, Any]) -> list[Answer[H]]:
        """Answer every parked poll with ``error`` (this node stopped leading)."""
        out = [Answer(handle=p.handle, request_id=p.request_id, error=error, body=body) for p in self._polls]
        self._polls = []
        return out

    def _answer(self, p: _Poll[H], *, final: bool) -> Answer[H] | None:
        if p.start < self.floor:  # compacted while parked
            return Answer(handle=p.handle, request_id=p.request_id, error=ErrorKind.COMPACTED, body=
                          {"message": f"events before index {self.floor} were compacted", "first": self.floor})
        first = p.start + 1 if self.unsafe_skip else p.start
        found: list[list[Any]] = []
        upto = self.applied
        for index, kind, key, value in self._from(first):
            if len(found) >= MAX_ANSWER and index != found[-1][0]:
                upto = found[-1][0]
                break
            if covers(p.key, key):
                found.append([index, kind, key, value])
        if not found and not final:
            return None
        return Answer(handle=p.handle, request_id=p.request_id, error=None, body=
                      {"events": found, "next": max(p.start, upto + 1), "index": self.applied})

    def _from(self, index: int) -> list[tuple[int, str, str, bytes | None]]:
        events = self.events
        # binary search on the deque's indexes (they only grow)
        lo, hi = 0, len(events)
        while lo < hi:
            mid = (lo + hi) // 2
            if events[mid][0] < index:
                lo = mid + 1
            else:
                hi = mid
        return [events[i] for i in range(lo, len(events))]
