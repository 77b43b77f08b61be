"""``raftlab node repair``: the explicit way back for a data directory that recovery refused.

Recovery (storage/recovery.py) never guesses: a lost file or corruption in the middle of the log
stops the node with the file and offset. What to do next is a decision with consequences, so it
is a separate command that says what it did:

* ``--rebuild-manifest``: only the manifest is gone (or the directory predates manifests). The
  segments and ``meta`` are listed as they are; the node's next start still checks every record,
  so corruption in them is still refused. It refuses when ``meta`` is missing too.
* ``--empty``: the log or ``meta`` is damaged beyond that. The directory is moved aside, whole
  (``DIR.damaged-<UTC time>``, kept for inspection), and a fresh one is created whose manifest
  says ``rejoin``: the node starts with no log, no term and no vote, grants no vote and never
  campaigns until a leader has brought it up to that leader's commit index, and then counts as
  having voted for that leader in its term. So the vote it forgot cannot elect a second leader,
  and an election that needs it waits for a member that still holds the data (the entries it
  acknowledged may exist only there) instead of electing one that lacks them. Raft needs a
  majority of intact members for this to end: repair one member at a time.
"""

from __future__ import annotations

import time
from pathlib import Path

from raftlab.impl.storage.manifest import Manifest, save_manifest
from raftlab.impl.storage.meta import StorageError
from raftlab.impl.storage.recovery import scan_segment
from raftlab.impl.storage.wal import WalStorage


def rebuild_manifest(data_dir: Path, node_id: int) -> str:
    """List the segments as found; then open the directory as a node would (every record checked)."""
    meta = data_dir / "meta"
    if not meta.exists():
        raise StorageError(f"{meta}: missing as well: term and vote are lost; use --empty")
    paths = sorted(p for p in (data_dir / "wal").glob("*.seg"))
    scans = [scan_segment(str(p), p.read_bytes()) for p in paths]
    first = scans[0].first if scans else 1
    save_manifest(data_dir / "manifest", Manifest(node=node_id, first_index=first,
                                                  segments=tuple(s.first for s in scans)))
    storage = WalStorage(data_dir, node_id=node_id)
    try:
        return (f"{data_dir / 'manifest'}: rebuilt: {len(scans)} segments, entries "
                f"{storage.first_index()}..{storage.last_index()}, {storage.initial_state().describe()}")
    finally:
        storage.close()


def empty(data_dir: Path, node_id: int, *, now: float | None = None) -> str:
    """Move the directory aside and create an empty one that rejoins (no vote until caught up)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = data_dir.with_name(f"{data_dir.name}.damaged-{stamp}")
    moved = data_dir.exists()
    if moved:
        if aside.exists():
            raise StorageError(f"{aside}: exists already; move it away first")
        data_dir.rename(aside)
    storage = WalStorage(data_dir, node_id=node_id)
    storage.mark_rejoin()
    storage.close()
    kept = f"the damaged directory is kept as {aside}; " if moved else ""
    return (f"{data_dir}: recreated empty for node {node_id}; {kept}it rejoins with no vote until a leader "
            "has caught it up")
