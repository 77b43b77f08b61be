"""When to snapshot, what to delete, and how a restart puts snapshot and log back together.

The rules are pure functions here (so they are tested as tables and read in one place); the
WAL (wal.py ``drop_through``/``reset_to``) and the snapshot files (snapshot.py) carry them out,
and ``recover``/``compact`` are the two places that string the steps together.

* Trigger (``should_snapshot``): ``entries`` applied since the last snapshot reach
  ``--snapshot-entries``, or the WAL holds more than ``--snapshot-wal-bytes``, or an operator
  asked (``raftlab kv snapshot``). 0 turns a trigger off.
* Compaction (``segments_to_delete``): after a snapshot at index S is durable, a WAL segment is
  deleted when every entry in it is at or below ``S - margin`` (``--snapshot-margin`` entries
  stay for followers that lag a little, so they catch up by appends, not a whole snapshot).
  The active segment is never deleted. Order: snapshot durable, then segments removed, then
  old snapshots pruned; a crash between any two steps leaves a directory that recovers.
* Recovery (``plan_snapshot``): the newest snapshot that decodes is loaded. A newer one that
  does not is refused with ``SnapshotError`` naming the file, unless the log still starts at or
  below the older snapshot's index + 1 (so nothing is lost): then the older one is used, the
  bad file is renamed ``.corrupt`` and the log says so. The WAL (its manifest's first index F,
  recovery.py) must start at or below ``S + 1``: a log that starts later, or above 1 with no
  snapshot at all, has lost entries and is refused. F = S + 1 is a log compacted (or reset) up
  to the snapshot: its base term is the snapshot's. If the log ends before S, or holds another
  term at S, it is a log the snapshot replaced (a crash during an install): it is started afresh
  after S ("reset"). If it starts below S, the term below its first entry is unknown, so that
  entry becomes the base ("drop-first"); from index 1 it is kept as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from raftlab.impl.raft.messages import SnapshotMeta
from raftlab.impl.storage.meta import load_manifest
from raftlab.impl.storage.snapshot import SnapshotFiles
from raftlab.impl.storage.snapshot_format import SnapshotError, SnapshotImage

if TYPE_CHECKING:
    from raftlab.impl.storage.wal import WalStorage

DEFAULT_SNAPSHOT_ENTRIES = 10_000
DEFAULT_WAL_BYTES = 32 * 1024 * 1024
DEFAULT_MARGIN = 2_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotPolicy:
    """The triggers and the trailing margin (``--snapshot-entries``/``-wal-bytes``/``-margin``)."""

    entries: int = DEFAULT_SNAPSHOT_ENTRIES
    wal_bytes: int = DEFAULT_WAL_BYTES
    margin: int = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if self.entries < 0 or self.wal_bytes < 0 or self.margin < 0:
            raise ValueError("--snapshot-entries, --snapshot-wal-bytes and --snapshot-margin must be >= 0")


def should_snapshot(policy: SnapshotPolicy, applied: int, last_snapshot: int, wal_bytes: int) -> bool:
    if applied <= last_snapshot:
        return False
    return ((policy.entries > 0 and applied - last_snapshot >= policy.entries)
            or (policy.wal_bytes > 0 and wal_bytes > policy.wal_bytes))


def segments_to_delete(firsts: list[int], snapshot_index: int, margin: int) -> int:
    """How many leading segments hold only entries <= ``snapshot_index - margin`` (the last,
    active segment never counts). ``firsts`` are the segments' first indexes, oldest first."""
    floor = snapshot_index - margin
    count = 0
    for k in range(len(firsts) - 1):
        if firsts[k + 1] - 1 <= floor:
            count = k + 1
        else:
            break
    return count


def plan_snapshot(snap_index: int, snap_term: int, first: int, last: int, term_at_snap: int
                  ) -> Literal["keep", "refuse", "reset", "base-is-snapshot", "drop-first"]:
    """How a recovered log (entries ``first..last``) continues the snapshot ``snap_term/snap_index``
    (index 0: none; ``term_at_snap`` is the log's term there, 0 when it has none); see the
    module docstring."""
    if snap_index == 0:
        return "refuse" if first > 1 else "keep"
    if first > snap_index + 1:
        return "refuse"
    if first == snap_index + 1:
        return "base-is-snapshot"
    if last < snap_index or term_at_snap != snap_term:
        return "reset"
    return "drop-first" if first > 1 else "keep"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered:
    storage: WalStorage
    snapshots: SnapshotFiles
    image: SnapshotImage | None


def recover(data_dir: Path, *, durable: bool, logger: Callable[[str], None], segment_bytes: int,
            node_id: int = 0) -> Recovered:
    """Open a data directory: the newest valid snapshot, then the WAL after it."""
    from raftlab.impl.storage.wal import WalStorage

    files = SnapshotFiles(data_dir, durable=durable, logger=logger)
    image: SnapshotImage | None = None
    refused: list[tuple[int, SnapshotError]] = []
    for index in files.indexes():
        try:
            image = files.load(index)
            break
        except SnapshotError as e:
            refused.append((index, e))
    meta = image.meta if image is not None else SnapshotMeta()
    if refused:
        # usable only if the WAL still starts at or below the older snapshot's index + 1: entries
        # leave the log only by compaction from the front, so it then holds all the bad one held
        manifest = load_manifest(data_dir / "manifest")
        if manifest is None or manifest.first_index > meta.index + 1:
            raise SnapshotError(f"{refused[0][1]}; refusing to start: the log starts after "
                                f"{'snapshot ' + str(meta.index) if meta.index else 'index 1'}, "
                                "so no older snapshot can replace it") from None
        for index, error in refused:
            moved = files.quarantine(index)
            logger(f"snapshot: {error}; using {'snapshot ' + str(meta.index) if meta.index else 'no snapshot'} "
                   f"and the log instead (it covers the gap); the bad file is now {moved.name}")
    files.set_current(meta)
    storage = WalStorage(data_dir, durable=durable, logger=logger, snapshots=files, segment_bytes=segment_bytes,
                         node_id=node_id)
    return Recovered(storage=storage, snapshots=files, image=image)


def compact(storage: WalStorage, snapshots: SnapshotFiles, meta: SnapshotMeta, margin: int,
            logger: Callable[[str], None]) -> None:
    """After snapshot ``meta`` is durable: make it current, delete the segments it covers
    (beyond the margin), then prune older snapshot files."""
    if meta.index > snapshots.meta.index:  # an install may have brought a newer one meanwhile
        snapshots.set_current(meta)
    count = segments_to_delete(storage.segment_firsts(), meta.index, margin)
    removed = storage.drop_through(count)
    pruned = snapshots.prune(meta.index)
    if removed or pruned:
        logger(f"compaction: snapshot {meta.term}/{meta.index}; removed {len(removed)} WAL segment(s) "
               f"(log now starts at {storage.first_index()}) and {len(pruned)} older snapshot(s)")
