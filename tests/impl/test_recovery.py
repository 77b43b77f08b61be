"""Recovery never drops committed data (issue 10): each storage fault of the issue, on real files.

A torn tail is cut only at the end of the last segment with nothing valid after it; everything
else (a flipped length bit mid-segment, a whole record with a bad checksum, a tail cut below the
commit index, a lost meta, manifest or segment) is refused naming the file (and offset), with
every byte of the directory unchanged; ``raftlab node repair`` is the explicit way on.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from raftlab.impl.cluster import raftlab_command
from raftlab.impl.raft.messages import Entry, HardState
from raftlab.impl.storage.meta import StorageError, load_manifest, save_manifest
from raftlab.impl.storage.recovery import MAGIC, RECORD
from raftlab.impl.storage.wal import WalStorage


def entries(lo: int, hi: int, term: int = 1, size: int = 20) -> list[Entry]:
    return [Entry(term=term, index=i, data=bytes([i % 251]) * size) for i in range(lo, hi)]


def image(path: Path) -> dict[str, str]:
    """Every file under ``path`` and the hash of its bytes."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def written(path: Path, n: int = 200, *, commit: int | None = None, segment_bytes: int = 64 << 20) -> WalStorage:
    w = WalStorage(path, segment_bytes=segment_bytes, node_id=1)
    for lo in range(1, n + 1, 10):
        w.append(entries(lo, min(lo + 10, n + 1)))
        w.sync()
    w.set_hard_state(HardState(term=1, vote=1, commit=n if commit is None else commit))
    w.close()
    return w


def record_offset(raw: bytes, n: int) -> int:
    off = len(MAGIC)
    for _ in range(n - 1):
        off += RECORD.size + RECORD.unpack_from(raw, off)[0]
    return off


def refused(path: Path, *words: str) -> str:
    before = image(path)
    with pytest.raises(StorageError) as e:
        WalStorage(path, node_id=1)
    assert image(path) == before, "a refusal must leave every byte as it was"
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def last_segment(path: Path) -> Path:
    return sorted((path / "wal").glob("*.seg"))[-1]


def test_flipped_length_bit_mid_last_segment_is_refused_not_truncated(tmp_path: Path) -> None:
    """The issue's case: a bit flip in one record's length, mid-way through the last segment, was
    taken for a torn tail and 151 committed entries were cut."""
    written(tmp_path, 300, commit=0)  # even with no commit index to protect them
    seg = last_segment(tmp_path)
    raw = bytearray(seg.read_bytes())
    off = record_offset(bytes(raw), 150)
    raw[off] ^= 0x10  # the length field's high byte: the record now claims ~1 MiB
    seg.write_bytes(raw)
    refused(tmp_path, str(seg), f"offset {off}", "valid entries follow it")


@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_flipped_bit_in_the_last_whole_record_is_refused(tmp_path: Path, bit: int) -> None:
    written(tmp_path, 50, commit=0)
    seg = last_segment(tmp_path)
    raw = bytearray(seg.read_bytes())
    raw[-3] ^= bit
    seg.write_bytes(raw)
    refused(tmp_path, str(seg), f"offset {record_offset(bytes(raw), 50)}", "flipped bit")


def test_torn_tail_below_the_commit_index_is_refused_before_truncating(tmp_path: Path) -> None:
    """After a clean stop, the issue's node truncated first and only then refused."""
    written(tmp_path, 40)  # commit 40 is in meta
    seg = last_segment(tmp_path)
    seg.write_bytes(seg.read_bytes()[:-5])  # entry 40 cut short
    refused(tmp_path, "meta", "commit index 40", "torn tail", str(seg))
    lines: list[str] = []
    relaxed = WalStorage(tmp_path, durable=False, logger=lines.append, node_id=1)  # --fsync async's window
    assert relaxed.last_index() == 39 and relaxed.initial_state().commit == 39
    assert any("lowering it" in line for line in lines) and any("torn tail" in line for line in lines)


def test_a_real_torn_tail_is_cut_and_the_node_goes_on(tmp_path: Path) -> None:
    written(tmp_path, 40, commit=30)
    seg = last_segment(tmp_path)
    raw = seg.read_bytes()
    seg.write_bytes(raw + raw[record_offset(raw, 40):][:RECORD.size + 7])  # half of a next batch
    lines: list[str] = []
    w = WalStorage(tmp_path, logger=lines.append, node_id=1)
    assert w.last_index() == 40 and any("torn tail" in line for line in lines)
    w.append(entries(41, 45))
    w.sync()
    w.close()
    assert WalStorage(tmp_path, node_id=1).last_index() == 44


@pytest.mark.parametrize("lost", ["meta", "manifest", "last-segment", "all-segments", "middle-segment"])
def test_a_lost_file_is_refused_naming_it(tmp_path: Path, lost: str) -> None:
    written(tmp_path, 120, segment_bytes=600)
    segs = sorted((tmp_path / "wal").glob("*.seg"))
    assert len(segs) > 3
    if lost == "meta":
        (tmp_path / "meta").unlink()
        refused(tmp_path, str(tmp_path / "meta"), "amnesiac")
    elif lost == "manifest":
        (tmp_path / "manifest").unlink()
        refused(tmp_path, str(tmp_path / "manifest"), "missing")
    elif lost == "last-segment":
        segs[-1].unlink()
        refused(tmp_path, str(segs[-1]), "missing")
    elif lost == "all-segments":
        for s in segs:
            s.unlink()
        refused(tmp_path, str(segs[0]), f"{len(segs)} of the {len(segs)} segments")
    else:
        segs[2].unlink()
        refused(tmp_path, str(segs[2]), "missing")


def test_the_log_may_start_above_one_when_the_manifest_says_so(tmp_path: Path) -> None:
    """Compaction (a snapshot through index K) moves first_index up and deletes older segments;
    a crash between the manifest rewrite and the deletion leaves a stale segment, which goes."""
    written(tmp_path, 120, segment_bytes=600, commit=100)
    m = load_manifest(tmp_path / "manifest")
    assert m is not None and m.segments[0] == 1
    keep = m.segments[2:]
    save_manifest(tmp_path / "manifest", m.__class__(node=1, first_index=keep[0], segments=keep))
    stale = sorted((tmp_path / "wal").glob("*.seg"))[0]  # segment 1 still there; segment 2 deleted
    sorted((tmp_path / "wal").glob("*.seg"))[1].unlink()
    lines: list[str] = []
    w = WalStorage(tmp_path, logger=lines.append, node_id=1)
    assert w.first_index() == keep[0] and w.last_index() == 120 and w.term(keep[0] - 1) == 0
    assert w.entries(keep[0], keep[0] + 1)[0].index == keep[0]
    assert not stale.exists() and any("compaction" in line for line in lines)
    w.append(entries(110, 112, term=2))  # truncation works with the offset too
    w.sync()
    w.close()
    again = WalStorage(tmp_path, node_id=1)
    assert again.last_index() == 111 and again.term(111) == 2


def test_an_unlisted_trailing_segment_is_adopted(tmp_path: Path) -> None:
    """A crash after creating a segment and before the manifest named it."""
    written(tmp_path, 120, segment_bytes=600)
    m = load_manifest(tmp_path / "manifest")
    assert m is not None
    save_manifest(tmp_path / "manifest", m.with_segments(m.segments[:-1]))
    w = WalStorage(tmp_path, node_id=1)
    assert w.last_index() == 120
    assert load_manifest(tmp_path / "manifest") == m


def test_another_members_directory_is_refused(tmp_path: Path) -> None:
    written(tmp_path, 10)
    with pytest.raises(StorageError, match="belongs to node 1, not 2"):
        WalStorage(tmp_path, node_id=2)


def repair(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*raftlab_command(), "node", "repair", *args], capture_output=True, text=True,
                          timeout=60)


def test_repair_rebuild_manifest_and_empty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    written(data, 60, segment_bytes=600)
    (data / "manifest").unlink()
    out = repair("--data-dir", str(data), "--id", "1", "--rebuild-manifest")
    assert out.returncode == 0 and "rebuilt" in out.stdout and "1..60" in out.stdout, out.stderr
    assert WalStorage(data, node_id=1).last_index() == 60
    (data / "meta").unlink()
    out = repair("--data-dir", str(data), "--id", "1", "--rebuild-manifest")
    assert out.returncode == 2 and "use --empty" in out.stderr
    out = repair("--data-dir", str(data), "--id", "1", "--empty")
    assert out.returncode == 0 and "damaged-" in out.stdout, out.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("data.damaged-")]
    assert len(aside) == 1 and (aside[0] / "wal").is_dir()
    w = WalStorage(data, node_id=1)
    assert w.last_index() == 0 and w.manifest.rejoin and w.initial_state() == HardState()
    assert repair("--data-dir", str(data), "--id", "1").returncode == 2


def test_a_compaction_point_inside_a_segment(tmp_path: Path) -> None:
    """The first index may fall inside the first kept segment (a snapshot through any index)."""
    written(tmp_path, 120, segment_bytes=600, commit=100)
    m = load_manifest(tmp_path / "manifest")
    assert m is not None and len(m.segments) > 2
    first = m.segments[1] + 3  # three entries into the second segment
    save_manifest(tmp_path / "manifest", m.__class__(node=1, first_index=first, segments=m.segments[1:]))
    w = WalStorage(tmp_path, node_id=1)
    assert w.first_index() == first and w.last_index() == 120
    assert w.term(first - 1) == 0 and w.entries(first, first + 2)[0].index == first
    assert not (tmp_path / "wal" / "00000000000000000001.seg").exists()
    w.append(entries(118, 119, term=3))
    w.close()
    assert WalStorage(tmp_path, node_id=1).last_index() == 118

