"""RaftLog: the stable log (Storage) plus the unstable tail not yet handed to the shell to persist.

Invariants: first_index() - 1 <= applied <= committed <= last_index() (entries below
first_index() were compacted into a snapshot, which the state machine was restored from or
applied through); unstable entries start at ``offset`` and are
contiguous; every entry in storage below ``offset`` is persisted. The shell persists the unstable
tail from a Ready and ``stable_to`` drops it here (etcd's log.go / log_unstable.go). Entries are
only ever handed to the state machine once (``applied`` is the index handed out, etcd's
"applying"); the shell applies them after persisting the Ready they came in.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftlab.impl.storage import Storage

from .messages import Entry
from .validate import Refused


class RaftLog:
    __slots__ = ("applied", "committed", "offset", "storage", "unstable")

    def __init__(self, storage: Storage, applied: int = 0) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1
        hs = storage.initial_state()
        # a restored snapshot (``applied``) is committed even if the hard state's commit lags it
        self.committed = max(min(hs.commit, storage.last_index()), min(applied, storage.last_index()))
        self.applied = min(applied, self.committed)

    def first_index(self) -> int:
        """The first index still in the log (below it: only the snapshot)."""
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable[-1].index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """Term of the entry at ``index``; 0 for index 0 or an index past the end."""
        if index >= self.offset:
            k = index - self.offset
            return self.unstable[k].term if k < len(self.unstable) else 0
        if index <= 0 or index > self.storage.last_index():
            return 0
        return self.storage.term(index)

    def match_term(self, index: int, term: int) -> bool:
        if index > self.last_index():
            return False
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Raft §5.4.1: a log is at least as up to date as ours."""
        mine = self.last_term()
        return term > mine or (term == mine and last_index >= self.last_index())

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in [lo, hi), at least one if any, at most ``max_bytes`` of data beyond the first."""
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        out: list[Entry] = []
        if lo < self.offset:
            out = list(self.storage.entries(lo, min(hi, self.offset), max_bytes))
            if max_bytes is not None and len(out) < min(hi, self.offset) - lo:
                return out
        if hi > self.offset:
            start = max(lo, self.offset) - self.offset
            tail = self.unstable[start:hi - self.offset]
            if max_bytes is None:
                out.extend(tail)
            else:
                size = sum(len(e.data) + 16 for e in out)
                for e in tail:
                    size += len(e.data) + 16
                    if out and size > max_bytes:
                        break
                    out.append(e)
        return out

    def append(self, entries: Sequence[Entry]) -> None:
        """The leader's own new entries (they continue the log)."""
        self.unstable.extend(entries)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The first index of ``entries`` that is new or differs from ours (0: none)."""
        last = self.last_index()
        for e in entries:
            if e.index > last or self.term(e.index) != e.term:  # past our end: the rest is new too
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (fast back-tracking)."""
        index = min(index, self.last_index())
        while index > 0 and self.term(index) > term:
            index -= 1
        return index

    def maybe_append(self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]) -> int | None:
        """A follower's MsgApp: the last index now known to match the leader, or None on mismatch."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise Refused("conflict", f"entry {conflict} conflicts with a committed entry (committed "
                                          f"through {self.committed})")
            self._truncate_and_append(entries[conflict - entries[0].index:])
        self.commit_to(min(commit, last_new))
        return last_new

    def _truncate_and_append(self, entries: Sequence[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.unstable):
            self.unstable.extend(entries)
        elif after <= self.offset:
            # the stable suffix from `after` is superseded; storage.append truncates it on persist
            self.offset = after
            self.unstable = list(entries)
        else:
            del self.unstable[after - self.offset:]
            self.unstable.extend(entries)

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} is past the last index {self.last_index()}")
            self.committed = index

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) were persisted by the shell."""
        if index < self.offset or self.term(index) != term:
            return
        del self.unstable[:index + 1 - self.offset]
        self.offset = index + 1

    def has_next_committed(self) -> bool:
        return self.committed > self.applied

    def next_committed(self, max_count: int) -> list[Entry]:
        hi = min(self.committed, self.applied + max_count) + 1
        return self.entries(self.applied + 1, hi)

    def restore(self, index: int) -> None:
        """An installed snapshot at ``index`` replaced the whole log (the storage already starts
        after it): nothing is unstable, everything through ``index`` is committed and applied."""
        self.unstable = []
        self.offset = index + 1
        self.committed = max(self.committed, index)
        self.applied = max(self.applied, index)

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            self.applied = index
