"""MemoryStorage keeps what was written apart from what was synced, as a disk does: a crash
keeps exactly the synced part. The simulator's crash faults are only as real as this."""

from __future__ import annotations

from raftlab.impl.raft import Entry, HardState
from raftlab.impl.storage.memory import MemoryStorage


def entries(term: int, lo: int, hi: int) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"x" * 10) for i in range(lo, hi + 1)]


def test_crash_keeps_only_what_was_synced() -> None:
    s = MemoryStorage()
    s.append(entries(1, 1, 3))
    s.set_hard_state(HardState(term=1, vote=2, commit=2))
    s.sync()
    s.append(entries(1, 4, 5))
    s.set_hard_state(HardState(term=2, vote=3, commit=4))
    after = s.crash()
    assert after.last_index() == 3 and after.initial_state() == HardState(term=1, vote=2, commit=2)


def test_an_unsynced_truncation_is_undone_by_a_crash() -> None:
    s = MemoryStorage()
    s.append(entries(1, 1, 5))
    s.sync()
    s.append(entries(2, 3, 3))  # truncates 3..5 and writes 2/3, not synced
    assert [e.term for e in s.entries(1, 10)] == [1, 1, 2]
    assert [e.term for e in s.crash().entries(1, 10)] == [1, 1, 1, 1, 1]
    s.sync()
    assert [e.term for e in s.crash().entries(1, 10)] == [1, 1, 2]


def test_entries_respect_max_bytes_but_return_at_least_one() -> None:
    s = MemoryStorage(entries(1, 1, 10))
    assert len(s.entries(1, 11, max_bytes=1)) == 1
    assert len(s.entries(1, 11, max_bytes=3 * 26)) == 3
    assert s.term(0) == 0 and s.term(10) == 1 and s.term(11) == 0 and s.first_index() == 1
