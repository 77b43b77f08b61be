"""The WAL and meta file: what was synced survives, a torn tail is repaired, corruption is refused.

Each test writes through WalStorage, damages the files the way a crash or a bad disk would, and
reopens: a torn or zero-filled tail is truncated (with a log line), damage followed by more data
is refused with StorageError naming the file and offset, and meta is replaced atomically.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from raftlab.impl.raft.messages import Entry, EntryType, HardState
from raftlab.impl.storage.meta import StorageError, load_meta, save_meta
from raftlab.impl.storage.wal import MAGIC, RECORD, WalStorage


def entries(lo: int, hi: int, term: int = 1, size: int = 20) -> list[Entry]:
    return [Entry(term=term, index=i, data=bytes([i % 251]) * size) for i in range(lo, hi)]


def segment(path: Path) -> Path:
    return sorted((path / "wal").iterdir())[-1]


def test_round_trip_and_conflicting_suffix(tmp_path: Path) -> None:
    w = WalStorage(tmp_path)
    w.append(entries(1, 11))
    w.set_hard_state(HardState(term=2, vote=3, commit=4))
    w.sync()
    w.append(entries(6, 8, term=2))  # Raft §5.3: the conflicting suffix 6..10 goes
    w.sync()
    assert w.last_index() == 7 and w.term(5) == 1 and w.term(6) == 2
    w.close()
    again = WalStorage(tmp_path)
    assert again.last_index() == 7
    assert [e.term for e in again.entries(1, 8)] == [1] * 5 + [2, 2]
    assert again.initial_state() == HardState(term=2, vote=3, commit=4)
    assert again.entries(1, 8, max_bytes=60) == again.entries(1, 2)  # each entry counts 20 + 32 bytes
    assert len(again.entries(3, 4, max_bytes=1)) == 1  # at least one entry
    with pytest.raises(ValueError, match="gap"):
        again.append(entries(10, 11))


def test_segments_roll_and_truncation_crosses_them(tmp_path: Path) -> None:
    w = WalStorage(tmp_path, segment_bytes=300)
    for lo in range(1, 60, 5):
        w.append(entries(lo, lo + 5))
        w.sync()
    assert len(list((tmp_path / "wal").iterdir())) > 3
    w.append(entries(12, 13, term=5))
    w.sync()
    w.close()
    again = WalStorage(tmp_path, segment_bytes=300)
    assert again.last_index() == 12 and again.term(12) == 5 and again.term(11) == 1
    again.append(entries(13, 40, term=5))
    again.sync()
    assert WalStorage(tmp_path, segment_bytes=300).last_index() == 39


@pytest.mark.parametrize("damage", ["cut", "zeros"])
def test_torn_tail_is_truncated(tmp_path: Path, damage: str) -> None:
    w = WalStorage(tmp_path)
    w.append(entries(1, 21))
    w.sync()
    w.close()
    seg = segment(tmp_path)
    raw = bytearray(seg.read_bytes())
    if damage == "cut":
        raw = raw[:-7]
    else:
        raw += bytes(RECORD.size + 40)  # a half-written next record, zero-filled by the filesystem
    seg.write_bytes(raw)
    lines: list[str] = []
    again = WalStorage(tmp_path, logger=lines.append)
    expected = 20 if damage == "zeros" else 19
    assert again.last_index() == expected
    assert any("torn tail" in line for line in lines), lines
    again.append(entries(expected + 1, 25))
    again.sync()
    assert WalStorage(tmp_path).last_index() == 24


def test_corrupt_middle_entry_is_refused_with_file_and_offset(tmp_path: Path, seed: int) -> None:
    w = WalStorage(tmp_path)
    w.append(entries(1, 51))
    w.sync()
    w.close()
    seg = segment(tmp_path)
    raw = bytearray(seg.read_bytes())
    rng = random.Random(seed)
    record = RECORD.size + 20
    victim = rng.randrange(5, 40)
    offset = len(MAGIC) + (victim - 1) * record
    raw[offset + RECORD.size + rng.randrange(20)] ^= 0x40  # a bit flip in entry `victim`'s data
    seg.write_bytes(raw)
    with pytest.raises(StorageError) as e:
        WalStorage(tmp_path)
    assert str(seg) in str(e.value) and f"offset {offset}" in str(e.value)
    assert "corrupt entry in the middle" in str(e.value)


def test_missing_segment_and_bad_magic_are_refused(tmp_path: Path) -> None:
    w = WalStorage(tmp_path, segment_bytes=200)
    for lo in range(1, 30, 4):
        w.append(entries(lo, lo + 4))
    w.sync()
    w.close()
    segs = sorted((tmp_path / "wal").iterdir())
    segs[1].unlink()
    with pytest.raises(StorageError, match="missing"):
        WalStorage(tmp_path)
    segs[0].write_bytes(b"NOTAWAL!" + segs[0].read_bytes()[8:])
    with pytest.raises(StorageError, match="bad magic"):
        WalStorage(tmp_path)


def test_meta_is_atomic_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "meta"
    assert load_meta(path) == HardState()
    save_meta(path, HardState(term=3, vote=2, commit=9))
    assert load_meta(path) == HardState(term=3, vote=2, commit=9)
    # a crash after writing the temp file but before the rename leaves the old state intact
    (tmp_path / "meta.tmp").write_bytes(b"half")
    assert load_meta(path) == HardState(term=3, vote=2, commit=9)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 1
    path.write_bytes(raw)
    with pytest.raises(StorageError, match="checksum mismatch"):
        load_meta(path)
    path.write_bytes(b"short")
    with pytest.raises(StorageError, match="not a raftlab meta file"):
        load_meta(path)


def test_commit_beyond_the_log_is_refused_when_durable(tmp_path: Path) -> None:
    WalStorage(tmp_path).close()
    save_meta(tmp_path / "meta", HardState(term=1, vote=1, commit=5))
    with pytest.raises(StorageError, match="beyond the last entry"):
        WalStorage(tmp_path)
    lines: list[str] = []
    relaxed = WalStorage(tmp_path, durable=False, logger=lines.append)
    assert relaxed.initial_state().commit == 0 and lines


def test_sync_is_one_fdatasync_per_touched_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    w = WalStorage(tmp_path)
    for lo in range(1, 101, 10):
        w.append(entries(lo, lo + 10))
    w.sync()
    assert len(calls) == 1
    w.append([Entry(term=1, index=101, type=EntryType.NOOP)])
    w.sync()
    assert len(calls) == 2


def test_async_flush_makes_term_and_vote_durable(tmp_path: Path) -> None:
    """--fsync async: the periodic flush fsyncs the meta file too, so an OS crash after it keeps
    term and vote (before, the meta file replaced without fsync was never fsynced: the loss
    window for them was unbounded). Proven on labfs, which drops what was not fsynced."""
    import asyncio

    from raftlab.lab.local import sweep
    from tests.conftest import labfs

    data = tmp_path / "data"

    async def main() -> None:
        async with labfs(tmp_path, data, lazy=True) as disk:
            w = WalStorage(data, durable=False)
            w.append(entries(1, 4, term=7))
            w.set_hard_state(HardState(term=7, vote=2, commit=3))
            w.sync()  # async mode: written, not fsynced
            w.flush()  # what the node does about once a second
            assert "dropped" in await disk.ctl("crash")
            assert load_meta(data / "meta") == HardState(term=7, vote=2, commit=3)
            assert WalStorage(data, durable=False).last_index() == 3

    try:
        asyncio.run(main())
    finally:
        sweep(tmp_path)
