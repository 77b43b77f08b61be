"""InstallSnapshot, as a mixin of ``RaftCore``: a leader streams its snapshot to a follower that
needs compacted entries; the follower assembles, verifies (in the shell) and installs it.

Theory of operation (etcd-raft's StateSnapshot, with the transfer made explicit, as in the Raft
thesis §5.3 InstallSnapshot with ``offset``/``done``).

Leader. ``_send_append`` finds ``next < first_index()`` (the entries were compacted): the
progress enters SNAPSHOT for the storage's newest snapshot (``snapshot_meta``) and appends to
that follower pause. SNAP messages carry ``snapshot_chunk_bytes`` each (``index``/``log_term``
name the snapshot, ``offset``/``data``/``done`` the chunk), at most ``snapshot_window`` chunks
beyond what the follower acknowledged (SNAP_RESP ``offset``): flow control, so a large
snapshot never sits whole in the outbox. A SNAP_RESP with ``reject`` means "resend from
``offset``" (a lost chunk, or the follower restarted: offset 0). Two heartbeat rounds without an
acknowledgement while chunks are out resend from the acknowledged offset. The follower's final
answer is an APP_RESP at the snapshot index (sent once it is installed); then, as in etcd, the
progress goes to PROBE from just past the snapshot and replicates the rest of the log.

Follower. A chunk for a snapshot at or below our commit index is stale or a duplicate: refused
with an APP_RESP at our commit (the leader then probes from there) -- installing it would roll
the state machine back. At offset 0, if our log already holds the snapshot's last entry (same
term), the commit index moves up instead (nothing to install); the same check on the last
chunk keeps an install from wiping entries an append acknowledged meanwhile. Otherwise chunks are accepted
strictly in order from one leader, each handed to the shell in ``Ready.snapshot_chunks`` (acked
after it is written), and the last one sets ``Ready.install``. Until that Ready is advanced no
append, snapshot or vote is stepped (dropped, as a lossy network would), so nothing is appended
to the log the install is about to replace. ``advance`` with the install makes the log start
after the snapshot (``RaftLog.restore``); ``reject_snapshot`` (the shell could not verify it)
asks the leader to start over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import Message, MsgType, SnapshotChunk, SnapshotMeta
from .progress import ProgressState

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import RaftConfig
    from .log import RaftLog
    from .progress import Progress


class SnapshotPath:
    """Snapshot sending and receiving of ``RaftCore``; the attributes below are the core's."""

    if TYPE_CHECKING:
        id: int
        term: int
        lead: int
        election_elapsed: int
        config: RaftConfig
        log: RaftLog
        prs: dict[int, Progress]
        log_line: Callable[[str], None]

        def _send(self, m: Message) -> None: ...

        def _send_after(self, m: Message) -> None: ...

        def _restore_membership(self, meta: SnapshotMeta) -> None: ...

    def _init_snapshots(self) -> None:
        # follower: (leader, index, term, bytes received) of the stream being assembled
        self._receiving: tuple[int, int, int, int] | None = None
        self._chunks: list[SnapshotChunk] = []
        self._install_out: tuple[SnapshotMeta, int] | None = None  # complete, not yet in a Ready
        self._installing: tuple[SnapshotMeta, int] | None = None  # in a Ready, not yet advanced

    def installing(self) -> bool:
        """A snapshot was received whole and its install is not yet advanced."""
        return self._install_out is not None or self._installing is not None

    # --- leader ------------------------------------------------------------------------------

    def _send_snapshot(self, to: int) -> None:
        pr = self.prs[to]
        meta = self.log.storage.snapshot_meta()
        if meta.index < self.log.first_index() - 1 or meta.size == 0:
            self.log_line(f"{self.id} cannot bring {to} up: it needs entry {pr.next}, the log starts at "
                          f"{self.log.first_index()} and no snapshot covers the gap")
            return
        self.log_line(f"{self.id} sends {meta.describe()} to {to}: it needs entry {pr.next}, "
                      f"the log starts at {self.log.first_index()}")
        pr.become_snapshot(meta.index, meta.term, meta.size)
        pr.sent = max(pr.sent, meta.index)  # its install is acknowledged by an APP_RESP at meta.index
        self._send_snapshot_chunks(to)

    def _send_snapshot_chunks(self, to: int) -> None:
        pr = self.prs[to]
        size = self.config.snapshot_chunk_bytes
        while pr.snap_sent < pr.snap_size and pr.snap_sent - pr.snap_acked < size * self.config.snapshot_window:
            data = self.log.storage.snapshot_chunk(pr.pending_snapshot, pr.snap_sent, size)
            if not data:
                if self.log.storage.snapshot_meta().index != pr.pending_snapshot:
                    self._send_snapshot(to)  # a newer snapshot replaced it meanwhile: send that one
                return
            done = pr.snap_sent + len(data) >= pr.snap_size
            self._send(Message(type=MsgType.SNAP, to=to, from_=self.id, term=self.term, index=pr.pending_snapshot,
                               log_term=pr.snap_term, offset=pr.snap_sent, data=data, done=done,
                               commit=self.log.committed))
            pr.snap_sent += len(data)

    def _handle_snap_resp(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if pr.state is not ProgressState.SNAPSHOT or m.index != pr.pending_snapshot:
            return  # about a stream we no longer send
        if m.reject:
            pr.snap_acked = min(pr.snap_acked, m.offset)
            pr.snap_sent = m.offset
        else:
            pr.snap_acked = max(pr.snap_acked, m.offset)
            pr.snap_sent = max(pr.snap_sent, pr.snap_acked)
        self._send_snapshot_chunks(m.from_)

    def _snapshot_heartbeat(self, to: int, pr: Progress) -> None:
        if pr.snapshot_stalled():
            self.log_line(f"{self.id} resends snapshot {pr.pending_snapshot} to {to} from offset {pr.snap_acked}")
            pr.snap_sent = pr.snap_acked
            pr.stalls = 0
            self._send_snapshot_chunks(to)

    # --- follower ----------------------------------------------------------------------------

    def _handle_snapshot(self, m: Message) -> None:
        self.election_elapsed = 0
        self.lead = m.from_
        log = self.log
        if m.index <= log.committed:
            if m.offset == 0:
                self.log_line(f"{self.id} ignores snapshot {m.log_term}/{m.index} from {m.from_}: "
                              f"already committed through {log.committed}")
            self._send_after(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term,
                                     index=log.committed))
            return
        if (m.offset == 0 or m.done) and log.match_term(m.index, m.log_term):
            # checked again on the last chunk: appends stepped meanwhile may have reached it, and
            # what they acknowledged must not be wiped by an install
            self._receiving = None
            self.log_line(f"{self.id} fast-forwards its commit to {m.index}: its log holds snapshot "
                          f"{m.log_term}/{m.index}'s last entry")
            log.commit_to(m.index)
            self._send_after(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term,
                                     index=m.index))
            return
        if m.offset == 0:
            self._receiving = (m.from_, m.index, m.log_term, 0)
        rec = self._receiving
        same = rec is not None and rec[:3] == (m.from_, m.index, m.log_term)
        have = rec[3] if rec is not None and same else 0
        if not same or m.offset != have:
            # a duplicate (offset below ours) is acknowledged; a gap asks for a resend from ours
            self._send(Message(type=MsgType.SNAP_RESP, to=m.from_, from_=self.id, term=self.term, index=m.index,
                               log_term=m.log_term, offset=have, reject=not same or m.offset > have))
            return
        self._chunks.append(SnapshotChunk(index=m.index, term=m.log_term, offset=m.offset, data=m.data, done=m.done))
        have += len(m.data)
        if m.done:
            self._receiving = None
            self._install_out = (SnapshotMeta(index=m.index, term=m.log_term, size=have), m.from_)
            self.log_line(f"{self.id} received snapshot {m.log_term}/{m.index} ({have} bytes) from {m.from_}")
        else:
            self._receiving = (m.from_, m.index, m.log_term, have)
            self._send_after(Message(type=MsgType.SNAP_RESP, to=m.from_, from_=self.id, term=self.term,
                                     index=m.index, log_term=m.log_term, offset=have))

    def _take_snapshot_work(self) -> tuple[tuple[SnapshotChunk, ...], SnapshotMeta | None]:
        """For ``ready()``: the chunks to write and the install to carry out, once each."""
        chunks, self._chunks = tuple(self._chunks), []
        install = None
        if self._install_out is not None:
            self._installing, self._install_out = self._install_out, None
            install = self._installing[0]
        return chunks, install

    def reject_snapshot(self, meta: SnapshotMeta) -> None:
        """The shell could not verify the assembled snapshot: drop it and ask for it again."""
        if self._installing is None or self._installing[0] != meta:
            return
        leader = self._installing[1]
        self._installing = None
        self.log_line(f"{self.id} rejects snapshot {meta.term}/{meta.index}: it did not verify; asking again")
        self._send(Message(type=MsgType.SNAP_RESP, to=leader, from_=self.id, term=self.term, index=meta.index,
                           log_term=meta.term, offset=0, reject=True))

    def _advance_install(self, meta: SnapshotMeta) -> None:
        if self._installing is None or self._installing[0] != meta:
            return  # rejected by the shell
        leader = self._installing[1]
        self._installing = None
        self.log.restore(meta.index)
        self._restore_membership(meta)
        self.log_line(f"{self.id} installed snapshot {meta.term}/{meta.index}; its log now starts at {meta.index + 1}")
        # the install is durable (the shell did it before advance): acknowledge it now
        self._send(Message(type=MsgType.APP_RESP, to=leader, from_=self.id, term=self.term, index=meta.index))
