"""Snapshot files, compaction and recovery on real files (impl/storage/snapshot.py, compaction.py).

Claims: a snapshot file round-trips and any damage to it (bit flip, truncation, bad magic) is
refused naming the file; writes are atomic (no ``.tmp`` left, old ones pruned only after the
new one is durable); compaction deletes only whole segments below the snapshot minus the margin;
a restart loads the newest valid snapshot and the log after it; a corrupt newest snapshot falls
back to an older one only when the log covers the gap (with a log line), else the node refuses
naming the file; a log that does not continue the snapshot is started afresh after it. And for
every file of a data directory, every bit flip and truncation we try either recovers the exact
committed state or is refused naming the damaged file -- never a silently different state.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
from raftlab.impl.dtkv.commands import Put
from raftlab.impl.dtkv.tree import Tree
from raftlab.impl.net.codec import decode_command, encode_command
from raftlab.impl.raft.messages import Entry, HardState, SnapshotChunk, SnapshotMeta
from raftlab.impl.storage.compaction import (
    Recovered,
    compact,
    plan_snapshot,
    recover,
    segments_to_delete,
)
from raftlab.impl.storage.meta import StorageError
from raftlab.impl.storage.snapshot import GLOB
from raftlab.impl.storage.snapshot_format import SnapshotError, SnapshotImage, decode, encode
from raftlab.impl.storage.wal import WalStorage

SEGMENT = 4096


def open_dir(path: Path, lines: list[str] | None = None) -> Recovered:
    return recover(path, durable=True, logger=(lines.append if lines is not None else lambda _l: None),
                   segment_bytes=SEGMENT)


def put(i: int) -> bytes:
    return encode_command(Put(key=f"k{i % 7}", value=f"v{i}".encode()))


def image_of(entries: list[Entry], upto: int, term: int = 1) -> SnapshotImage:
    tree = Tree()
    for e in entries[:upto]:
        tree.apply(e.index, decode_command(e.data))
    values, dirs = tree.image()
    return SnapshotImage(meta=SnapshotMeta(index=upto, term=term, voters=(1, 2, 3)), values=values, dirs=dirs,
                         chain=b"c" * 32, skipped=0)


def build(path: Path, n: int = 400, snapshots: tuple[int, ...] = (150, 300), margin: int = 10) -> list[Entry]:
    """A data directory with ``n`` committed entries, snapshots at the given indexes and the
    log compacted after each."""
    rec = open_dir(path)
    entries = [Entry(term=1, index=i, data=put(i)) for i in range(1, n + 1)]
    done = 0
    for s in (*snapshots, n):
        for lo in range(done, s, 10):  # Readys of 10 entries: segments roll every ~4 KiB
            rec.storage.append(entries[lo:min(lo + 10, s)])
            rec.storage.set_hard_state(HardState(term=1, vote=1, commit=min(lo + 10, s)))
            rec.storage.sync()
        done = s
        if s != n:
            meta = rec.snapshots.write(image_of(entries, s))
            compact(rec.storage, rec.snapshots, meta, margin, lambda _l: None)
    rec.storage.close()
    return entries


def state_after(rec: Recovered) -> tuple[int, str]:
    """(commit index, tree digest) a node would serve after this recovery."""
    tree = Tree()
    start = 0
    if rec.image is not None:
        tree.restore_image(rec.image.meta.index, rec.image.values, rec.image.dirs)
        start = rec.image.meta.index
    commit = max(rec.storage.initial_state().commit, start)  # a restored snapshot is committed (RaftLog)
    for e in rec.storage.entries(start + 1, commit + 1):
        tree.apply(e.index, decode_command(e.data))
    assert tree.applied == commit
    return commit, tree.digest()


def test_snapshot_round_trips_and_damage_is_refused_naming_the_file() -> None:
    entries = [Entry(term=2, index=i, data=put(i)) for i in range(1, 40)]
    raw = encode(image_of(entries, 39, term=2))
    back = decode(raw, "snap-x")
    assert (back.meta.index, back.meta.term, back.meta.voters, back.meta.size) == (39, 2, (1, 2, 3), len(raw))
    assert dict(back.values) == dict(image_of(entries, 39).values)
    for pos in (0, 9, 40, len(raw) // 2, len(raw) - 1):
        bad = bytearray(raw)
        bad[pos] ^= 0x10
        with pytest.raises(SnapshotError, match="snap-x"):
            decode(bytes(bad), "snap-x")
    for cut in (0, 5, 30, len(raw) - 1):
        with pytest.raises(SnapshotError, match="snap-x"):
            decode(raw[:cut], "snap-x")
    with pytest.raises(SnapshotError, match="snap-x"):
        decode(raw + b"\0", "snap-x")


def test_compaction_deletes_whole_segments_below_the_margin_and_prunes_old_snapshots(tmp_path: Path) -> None:
    build(tmp_path, 400, (150, 300), margin=10)
    firsts = sorted(int(p.stem) for p in (tmp_path / "wal").glob("*.seg"))
    assert 1 < firsts[0] <= 291, firsts  # compacted, but entries 291..300 (the margin) are kept
    assert sorted(p.name for p in tmp_path.glob(GLOB)) == ["snapshot-00000000000000000150.snap",
                                                          "snapshot-00000000000000000300.snap"]
    assert not list(tmp_path.glob("*.tmp"))
    assert segments_to_delete([1, 100, 200, 300], 250, 10) == 2  # [1..99], [100..199]; not [200..299]
    assert segments_to_delete([1, 100], 1000, 0) == 1  # never the active segment
    assert segments_to_delete([1, 100], 50, 0) == 0


def test_restart_loads_the_newest_snapshot_and_replays_only_later_entries(tmp_path: Path) -> None:
    entries = build(tmp_path)
    lines: list[str] = []
    rec = open_dir(tmp_path, lines)
    assert rec.image is not None and rec.image.meta.index == 300
    assert rec.storage.first_index() > 1 and rec.storage.last_index() == 400
    assert rec.storage.term(rec.storage.first_index() - 1) == 1  # the term below the log is known
    assert state_after(rec) == (400, image_of(entries, 400).values and _digest(entries, 400))


def _digest(entries: list[Entry], upto: int) -> str:
    tree = Tree()
    for e in entries[:upto]:
        tree.apply(e.index, decode_command(e.data))
    return tree.digest()


def test_a_corrupt_newest_snapshot_falls_back_only_when_the_log_covers_it(tmp_path: Path) -> None:
    entries = build(tmp_path, 400, (150, 300), margin=200)  # margin: the log still starts below 150
    newest = tmp_path / "snapshot-00000000000000000300.snap"
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 1
    newest.write_bytes(bytes(raw))
    lines: list[str] = []
    rec = open_dir(tmp_path, lines)
    assert rec.image is not None and rec.image.meta.index == 150
    assert any("snapshot-00000000000000000300.snap" in line and "using snapshot 150" in line for line in lines), lines
    assert (tmp_path / "snapshot-00000000000000000300.snap.corrupt").exists()
    assert state_after(rec) == (400, _digest(entries, 400))


def test_a_corrupt_snapshot_the_log_does_not_cover_is_refused(tmp_path: Path) -> None:
    build(tmp_path, 400, (150, 300), margin=10)
    for name in ("snapshot-00000000000000000300.snap", "snapshot-00000000000000000150.snap"):
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(SnapshotError, match=r"snapshot-00000000000000000300\.snap"):
        open_dir(tmp_path)


def test_missing_segments_after_a_snapshot_are_refused(tmp_path: Path) -> None:
    build(tmp_path, 700)
    segs = sorted((tmp_path / "wal").glob("*.seg"))
    assert len(segs) >= 3
    holding = [p for p in segs if int(p.stem) <= 301][-1]  # holds entry 301, the first after the snapshot
    holding.unlink()
    with pytest.raises(StorageError, match=re.escape(holding.name) + ".*missing"):
        open_dir(tmp_path)


def test_a_log_that_does_not_continue_the_snapshot_is_started_afresh(tmp_path: Path) -> None:
    """A follower that crashed after making a received snapshot current but before resetting
    its WAL: the old log ends before the snapshot."""
    rec = open_dir(tmp_path)
    entries = [Entry(term=1, index=i, data=put(i)) for i in range(1, 21)]
    rec.storage.append(entries)
    rec.storage.set_hard_state(HardState(term=1, vote=1, commit=20))
    rec.storage.sync()
    rec.storage.close()
    later = [Entry(term=3, index=i, data=put(i)) for i in range(1, 61)]
    open_dir(tmp_path).snapshots.write(image_of(later, 60, term=3))
    lines: list[str] = []
    rec = open_dir(tmp_path, lines)
    assert rec.image is not None and rec.image.meta.index == 60
    assert (rec.storage.first_index(), rec.storage.last_index(), rec.storage.term(60)) == (61, 60, 3)
    assert any("does not continue snapshot" in line for line in lines), lines
    assert plan_snapshot(60, 3, 1, 20, 0) == "reset"
    assert plan_snapshot(60, 3, 1, 80, 2) == "reset"  # another term at the snapshot's index
    assert plan_snapshot(60, 3, 40, 80, 3) == "drop-first"
    assert plan_snapshot(60, 3, 61, 80, 0) == "base-is-snapshot"
    assert plan_snapshot(60, 3, 70, 80, 0) == "refuse"  # entries 61..69 are nowhere
    assert plan_snapshot(0, 0, 5, 10, 0) == "refuse"  # compacted, but no snapshot
    assert plan_snapshot(0, 0, 1, 10, 0) == "keep"


def test_receiving_a_snapshot_assembles_verifies_and_installs(tmp_path: Path) -> None:
    rec = open_dir(tmp_path)
    rec.storage.append([Entry(term=1, index=i, data=put(i)) for i in range(1, 11)])
    rec.storage.sync()
    leader_entries = [Entry(term=2, index=i, data=put(i)) for i in range(1, 101)]
    raw = encode(image_of(leader_entries, 100, term=2))
    meta = SnapshotMeta(index=100, term=2, size=len(raw))
    for off in range(0, len(raw), 50):
        rec.snapshots.receive(SnapshotChunk(index=100, term=2, offset=off, data=raw[off:off + 50],
                                            done=off + 50 >= len(raw)))
    image = rec.snapshots.finish(meta)
    assert image is not None and image.meta.index == 100
    rec.storage.reset_to(image.meta)
    assert (rec.storage.first_index(), rec.storage.last_index()) == (101, 100)
    # a damaged stream is refused and leaves nothing behind
    rec.snapshots.receive(SnapshotChunk(index=120, term=2, offset=0, data=b"garbage", done=True))
    assert rec.snapshots.finish(SnapshotMeta(index=120, term=2, size=7)) is None
    assert not list(tmp_path.glob("*.partial"))


def test_every_bitflip_and_truncation_recovers_exactly_or_is_refused_naming_the_file(tmp_path: Path,
                                                                                    seed: int) -> None:
    rng = random.Random(seed)
    clean = tmp_path / "clean"
    entries = build(clean, 400, (150, 300), margin=10)
    expected = (400, _digest(entries, 400))
    files = sorted(p for p in clean.rglob("*") if p.is_file())
    assert any(p.suffix == ".snap" for p in files) and any(p.suffix == ".seg" for p in files)
    tried = refused = 0
    for path in files:
        size = path.stat().st_size
        for kind in ("flip", "flip", "flip", "truncate"):
            work = tmp_path / f"case{tried}"
            shutil.copytree(clean, work)
            target = work / path.relative_to(clean)
            raw = bytearray(target.read_bytes())
            pos = rng.randrange(size)
            if kind == "flip":
                raw[pos] ^= 1 << rng.randrange(8)
            else:
                del raw[pos:]
            target.write_bytes(bytes(raw))
            tried += 1
            try:
                rec = open_dir(work)
            except StorageError as e:
                assert target.name in str(e) or str(target.parent) in str(e), f"{kind} {target} at {pos}: {e}"
                refused += 1
                continue
            assert state_after(rec) == expected, f"{kind} of {target} at {pos} recovered a different state"
            rec.storage.close()
    print(f"seed {seed}: {tried} corruptions, {refused} refused naming the file, the rest recovered exactly")
    assert refused > 0


def test_wal_storage_without_snapshots_still_starts_at_index_one(tmp_path: Path) -> None:
    wal = WalStorage(tmp_path, segment_bytes=SEGMENT)
    assert (wal.first_index(), wal.last_index(), wal.snapshot_meta().index) == (1, 0, 0)
    wal.close()


def test_a_crash_inside_an_install_recovers_from_the_installed_snapshot(tmp_path: Path) -> None:
    """reset_to rewrites the manifest (the log starts after the snapshot) before it deletes the
    old segments; a crash in between leaves them, unlisted and below the first index: deleted."""
    from raftlab.impl.storage.meta import Manifest, load_manifest, save_manifest

    rec = open_dir(tmp_path)
    rec.storage.append([Entry(term=1, index=i, data=put(i)) for i in range(1, 21)])
    rec.storage.set_hard_state(HardState(term=1, vote=1, commit=20))
    rec.storage.sync()
    rec.storage.close()
    later = [Entry(term=3, index=i, data=put(i)) for i in range(1, 61)]
    open_dir(tmp_path).snapshots.write(image_of(later, 60, term=3))  # the install's rename happened
    old = load_manifest(tmp_path / "manifest")
    assert old is not None
    save_manifest(tmp_path / "manifest", Manifest(node=old.node, first_index=61, segments=()))  # ... and this
    leftovers = sorted((tmp_path / "wal").glob("*.seg"))
    assert leftovers  # the crash came before the old segments went
    lines: list[str] = []
    rec = open_dir(tmp_path, lines)
    assert (rec.storage.first_index(), rec.storage.last_index(), rec.storage.term(60)) == (61, 60, 3)
    assert not any(p.exists() for p in leftovers) and any("snapshot install" in line for line in lines), lines
    assert state_after(rec) == (60, _digest(later, 60))
