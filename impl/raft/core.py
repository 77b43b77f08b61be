"""RaftCore: the whole Raft protocol as a deterministic state machine with no I/O.

Theory of operation. Inputs are ``tick()`` (logical time), ``step(msg)`` (a peer's message),
``propose(data)``, ``read_index(context)`` and ``transfer_leader(to)``. Outputs are collected
into one ``Ready`` (see messages.py for the order the shell must follow). Nothing here reads a
clock, a socket, a file or the global random: the only chance is the injected ``rng`` for
election timeouts, so a seed replays a run exactly (etcd-io/raft's design).

Durability is in the contract: responses that promise something persisted (append, vote and
pre-vote responses) go to ``send_after_persist``, and the leader counts its own log towards a
commit quorum only after the shell has persisted it (``advance``), so a committed entry is always
durable on a majority (thesis §10.2.1 allows the leader to write in parallel with replication,
but not to count itself early).

Rules (with paper/thesis sections):
* Terms: a message with a higher term makes us a follower (§5.1), except pre-votes (thesis §9.6)
  and votes received within a leader lease while check-quorum is on (thesis §4.2.3).
* Elections: randomized timeouts in [election_tick, 2*election_tick); pre-vote first; a vote goes
  to a candidate whose log is at least as up to date (§5.4.1); one vote per term (§5.2).
* Replication: per-follower probe/replicate progress, pipelined MsgApps bounded by inflights;
  rejections carry a hint (index, term) and the leader jumps back with find_conflict_by_term.
* Commit: only an entry of the leader's current term is committed by counting (§5.4.2); a no-op
  is appended on election so that happens promptly (§8).
* Reads: ReadIndex (thesis §6.4) and lease reads (thesis §6.4.1), in reads.py.
* Snapshots: a follower that needs compacted entries gets the snapshot in chunks (thesis §5.3,
  etcd's StateSnapshot), in snapshots.py.
* Membership: joint consensus (thesis §4.3), learners, a removed leader stepping down, in
  membership.py (the rules) and confchange.py (the values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raftlab.impl.storage import Storage

from .config import RaftConfig
from .log import RaftLog
from .membership import MembershipPath
from .messages import (
    NONE,
    DroppedRead,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    ReadState,
    Ready,
    Role,
    SoftState,
)
from .progress import Inflights, Progress, ProgressState
from .quorum import VoteResult
from .readonly import ReadOnly, decode_seq, encode_seq
from .reads import NotLeader, ReadPath
from .snapshots import SnapshotPath
from .validate import MAX_VALUE, Refusals, Refused, check

if TYPE_CHECKING:
    import random  # the core only calls the Random it is given; it never uses the global one

TRANSFER = b"transfer"  # context of a campaign started by TIMEOUT_NOW: ignores leader leases


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    id: int
    role: Role
    term: int
    leader: int
    vote: int
    commit: int
    applied: int
    last_index: int
    progress: dict[int, str] = field(default_factory=dict)
    membership: str = ""

    def describe(self) -> str:
        return (f"{self.id} {self.role.value} term={self.term} leader={self.leader} commit={self.commit} "
                f"applied={self.applied} last={self.last_index}")


class RaftCore(ReadPath, SnapshotPath, MembershipPath):
    def __init__(self, config: RaftConfig, storage: Storage, *, rng: random.Random,
                 logger: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.id = config.id
        self.rng = rng
        self.log_line = logger or (lambda _line: None)
        self.refusals = Refusals(self.log_line)  # refused peer messages, counted per kind (validate.py)
        self.log = RaftLog(storage, config.applied)
        hs = storage.initial_state()
        self.term = hs.term
        self.vote = hs.vote
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_tick
        self.lead_transferee = NONE
        self.read_only = ReadOnly()
        self.reads_waiting_commit: list[tuple[bytes, int]] = []  # (context, origin) before a term commit
        # context -> clock deadline of reads forwarded to the leader (each answered, dropped or
        # timed out exactly once)
        self.forwarded_reads: dict[bytes, int] = {}
        self._msgs: list[Message] = []
        self._msgs_after: list[Message] = []
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[DroppedRead] = []
        self._bcast_pending = False
        self.clock = 0  # ticks since this core was built: the stamp of heartbeats (lease reads)
        self.lease_void = False  # set once a TIMEOUT_NOW went out: the transferee ignores our lease
        # lease mode: a booted node grants no vote for election_tick ticks, as if it had heard a leader
        self.boot_lease = config.read_only == "lease"
        self._init_snapshots()
        self._init_membership()  # sets voters and quorum
        # repaired empty (`raftlab node repair --empty`): no vote, no campaign until a leader caught
        # it up; then it counts as having voted for that leader in its term (docs/node.md, recovery)
        self.rejoining = config.rejoin and len(self.voters) > 1
        # ...and it follows no leader before a quorum of the *others* told it their terms: the term
        # it forgot could let a deposed leader of an older term count it towards a majority
        self.term_known = not self.rejoining
        self._probe_nonce = self.rng.getrandbits(64).to_bytes(8, "big") if self.rejoining else b""
        self._probe_answers: set[int] = set()
        self._probe_terms()  # nothing unless rejoining
        self._prev_hs = HardState(term=hs.term, vote=hs.vote, commit=self.log.committed)
        self._prev_ss = SoftState()
        self._reset_randomized_timeout()

    # --- inputs ------------------------------------------------------------------------------

    def tick(self, count: int = 1) -> None:
        """``count`` ticks of elapsed time: ``advance_clock`` then ``run_timeouts``."""
        self.advance_clock(count)
        self.run_timeouts(count)

    def advance_clock(self, count: int) -> None:
        """Time passed: the clock that stamps heartbeats and judges the lease and read deadlines
        moves at once. A shell that stalled calls this before stepping the messages that waited,
        so a lease is never judged by the time before the stall (thesis §6.4.1)."""
        self.clock += count

    def run_timeouts(self, count: int) -> None:
        """The timeouts of ``count`` elapsed ticks (elections, heartbeats, check-quorum, read
        deadlines). A burst after a stall fires each timeout at most once: a leader runs at most
        ``election_tick`` rounds (one check-quorum, judged by the answers that waited through
        the stall), anyone else at most ``2 * election_tick`` (the longest election timeout)."""
        e = self.config.election_tick
        for done in range(count):
            if self.role is Role.LEADER:
                if done >= e:
                    break
                self._tick_heartbeat()
            elif done >= 2 * e:
                break
            else:
                self._tick_election()
        self._expire_forwarded_reads()

    def propose(self, data: bytes) -> tuple[int, int]:
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead)
        if self.lead_transferee != NONE:
            raise NotLeader(self.lead_transferee)
        index = self.log.last_index() + 1
        self.log.append((Entry(term=self.term, index=index, data=data),))
        self._bcast_pending = True
        return self.term, index

    def campaign(self) -> None:
        """Start an election now, as an expired election timeout would (etcd's MsgHup)."""
        self._hup()

    def transfer_leader(self, to: int) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead)
        if to == self.id or to not in self.prs or to not in self.voters:
            return
        self.log_line(f"{self.id} transfers leadership to {to} at term {self.term}")
        self.lead_transferee = to
        self.election_elapsed = 0
        if self.prs[to].match == self.log.last_index():
            self._send_timeout_now(to)
        else:
            self._send_append(to)

    def step(self, m: Message) -> None:
        """Step one peer message; one that breaks the protocol is refused (counted, logged at a
        bounded rate) and changes nothing (validate.py)."""
        try:
            if m.to != self.id or m.from_ not in self.known or m.from_ == self.id:
                raise Refused("foreign", "not meant for this cluster")
            check(self, m)
            self._step(m)
        except Refused as e:
            self.refuse(e, m)

    def refuse(self, e: Refused, m: Message) -> None:
        self.refusals.note(e.kind, f"{self.id} refuses {m.describe()[:200]}: {e}", self.clock)

    def _step(self, m: Message) -> None:
        if m.type is MsgType.TERM_PROBE:  # answered in any role and term; the answer changes nothing here
            self._send(Message(type=MsgType.TERM_PROBE_RESP, to=m.from_, from_=self.id, term=self.term,
                               context=m.context))
            return
        if m.type is MsgType.TERM_PROBE_RESP:
            self._on_term_probe_resp(m)
            return
        if not self.term_known and m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            return  # its sender may be a deposed leader; it is resent once the highest term is known
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                in_lease = (self.config.check_quorum and (self.lead != NONE or self.boot_lease)
                            and self.election_elapsed < self.config.election_tick)
                if in_lease and m.context != TRANSFER:
                    self.log_line(f"{self.id} ignores {m.type.name} from {m.from_} at term {m.term}: lease not expired")
                    return
            if m.type is MsgType.PRE_VOTE or (m.type is MsgType.PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote changes no one's term
            elif m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
                self._become_follower(m.term, m.from_)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if m.type in (MsgType.APP, MsgType.HEARTBEAT) and (self.config.check_quorum or self.config.pre_vote):
                # tell a stale leader about the newer term so it steps down
                self._send(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term))
            elif m.type is MsgType.PRE_VOTE:
                self._send_after(Message(type=MsgType.PRE_VOTE_RESP, to=m.from_, from_=self.id, term=self.term,
                                         reject=True))
            return
        if self.installing() and m.type in (MsgType.APP, MsgType.SNAP, MsgType.VOTE, MsgType.PRE_VOTE):
            # the log is about to be replaced: nothing may be appended to it or vouched for by it
            self.log_line(f"{self.id} drops {m.type.name} from {m.from_}: installing a snapshot")
            return
        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    # --- outputs -----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(
            self._bcast_pending or self._msgs or self._msgs_after or self.log.unstable
            or self.log.has_next_committed() or self._read_states or self._dropped_reads
            or self._chunks or self._install_out is not None
            or self._hard_state() != self._prev_hs or self._soft_state() != self._prev_ss
        )

    def ready(self) -> Ready:
        if self._bcast_pending:
            self._bcast_pending = False
            self._bcast_append()
        hs = self._hard_state()
        ss = self._soft_state()
        entries = tuple(self.log.unstable)
        chunks, install = self._take_snapshot_work()
        committed = tuple(self.log.next_committed(self.config.max_committed_per_ready))
        self._apply_conf_entries(committed)  # may step down (removed) or propose the leave of a joint change
        rd = Ready(
            entries=entries,
            hard_state=hs if hs != self._prev_hs else None,
            must_sync=bool(entries) or bool(chunks) or hs.term != self._prev_hs.term or hs.vote != self._prev_hs.vote,
            send_now=tuple(self._msgs),
            send_after_persist=tuple(self._msgs_after),
            committed=committed,
            read_states=tuple(self._read_states),
            soft_state=ss if ss != self._prev_ss else None,
            dropped_reads=tuple(self._dropped_reads),
            snapshot_chunks=chunks,
            install=install,
        )
        self._msgs, self._msgs_after, self._read_states, self._dropped_reads = [], [], [], []
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        if rd.soft_state is not None:
            self._prev_ss = rd.soft_state
        if rd.committed:
            self.log.applied_to(rd.committed[-1].index)
        if rd.install is not None:
            self._advance_install(rd.install)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            # the leader's own log counts towards the commit quorum only now that it is durable
            if (self.role is Role.LEADER and self.log.term(last.index) == last.term
                    and self.prs[self.id].maybe_update(last.index) and self._maybe_commit()):
                self._bcast_pending = True

    def status(self) -> Status:
        return Status(id=self.id, role=self.role, term=self.term, leader=self.lead, vote=self.vote,
                      commit=self.log.committed, applied=self.log.applied, last_index=self.log.last_index(),
                      progress={i: p.describe() for i, p in self.prs.items()} if self.role is Role.LEADER else {},
                      membership=self.membership.describe())

    # --- roles -------------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
            # an append acknowledged in the old term waits for the next persist, which may no
            # longer hold it (this term's leader can truncate it in the same Ready): drop the ack
            self._msgs_after = [m for m in self._msgs_after if m.type is not MsgType.APP_RESP]
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self.votes = {}
        self.lead_transferee = NONE
        # a broadcast owed by the role this node is leaving is void: sent after a step-down in the
        # same batch of inputs, it would go out under the new term as if this node led it
        self._bcast_pending = False
        self._drop_pending_reads()

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead
        self.log_line(f"{self.id} became follower at term {self.term}" + (f", leader {lead}" if lead else ""))

    def _become_pre_candidate(self) -> None:
        # no term change and no vote: a pre-candidate disturbs nobody (thesis §9.6)
        self.role = Role.PRE_CANDIDATE
        self.lead = NONE
        self.votes = {}
        self._reset_randomized_timeout()
        self.log_line(f"{self.id} became pre-candidate at term {self.term}")

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self.vote = self.id
        self.log_line(f"{self.id} became candidate at term {self.term}")

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        self.lease_void = False
        last = self.log.last_index()
        self.prs = {v: Progress(last + 1, Inflights(self.config.max_inflight_msgs, self.config.max_inflight_bytes))
                    for v in sorted(set(self.membership.members()) | set(self.latest_membership.members()))}
        self.pending_conf_index = last  # whatever change is in our log must be applied before another
        for v, pr in self.prs.items():
            pr.recent_active = v == self.id
        own = self.prs[self.id]
        own.match = self.log.storage.last_index() if not self.log.unstable else self.log.offset - 1
        own.become_replicate()
        self.log.append((Entry(term=self.term, index=last + 1, type=EntryType.NOOP),))
        self._bcast_pending = True
        self.log_line(f"{self.id} became leader at term {self.term}")

    def _hup(self, transfer: bool = False) -> None:
        if self.role is Role.LEADER:
            return
        if self.rejoining:
            self.log_line(f"{self.id} does not campaign: rejoining, not caught up with a leader yet")
            self._probe_terms()
            return
        if self.id not in self.voters:
            return  # a learner, or removed: it never campaigns
        if self._unapplied_conf_change():
            self.log_line(f"{self.id} does not campaign: a committed membership change is not applied yet")
            return
        if self.term >= MAX_VALUE:  # a term stored by an older, unchecked version: never overflow
            self.log_line(f"{self.id} cannot campaign: term {self.term} is at the limit {MAX_VALUE}")
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, *, pre: bool, transfer: bool = False) -> None:
        if pre:
            self._become_pre_candidate()
            term, kind = self.term + 1, MsgType.PRE_VOTE
        else:
            self._become_candidate()
            term, kind = self.term, MsgType.VOTE
        self.votes[self.id] = True
        if self.quorum.vote_result(self.votes) is VoteResult.WON:
            self._on_won(pre)
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for v in self.voters:
            if v != self.id:
                self._send(Message(type=kind, to=v, from_=self.id, term=term, index=last_index, log_term=last_term,
                                   context=TRANSFER if transfer else b""))

    def _on_won(self, pre: bool) -> None:
        if pre:
            self._campaign(pre=False)
        else:
            self._become_leader()

    # --- ticks -------------------------------------------------------------------------------

    def _reset_randomized_timeout(self) -> None:
        e = self.config.election_tick
        self.randomized_timeout = e + self.rng.randrange(e)

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.boot_lease = False
        if self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._hup()

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                active = {v: True for v, pr in self.prs.items() if pr.recent_active or v == self.id}
                if self.quorum.vote_result(active) is not VoteResult.WON:
                    self.log_line(f"{self.id} stepped down at term {self.term}: no quorum heard from (check-quorum)")
                    self._become_follower(self.term, NONE)
                    return
                for v, pr in self.prs.items():
                    pr.recent_active = v == self.id
            if self.lead_transferee != NONE:
                self.log_line(f"{self.id} aborts the transfer to {self.lead_transferee}")
                self.lead_transferee = NONE
            self._maybe_hand_over()  # a leader removed from the voters tries again
            self._maybe_auto_leave()  # e.g. after a transfer that held it back was aborted
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_only.last_seq())

    # --- messages by role --------------------------------------------------------------------

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type is MsgType.PRE_VOTE
        can_vote = (self.vote == m.from_ or (self.vote == NONE and self.lead == NONE)
                    or (pre and m.term > self.term))
        resp = MsgType.PRE_VOTE_RESP if pre else MsgType.VOTE_RESP
        if self.rejoining:
            self.log_line(f"{self.id} refuses {m.type.name} from {m.from_}: rejoining, not caught up yet")
            can_vote = False
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send_after(Message(type=resp, to=m.from_, from_=self.id, term=m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.from_
            self.log_line(f"{self.id} grants {m.type.name} to {m.from_} at term {m.term}")
        else:
            self._send_after(Message(type=resp, to=m.from_, from_=self.id, term=self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self._become_follower(m.term, m.from_)
            self._step_follower(m)
        elif (t is MsgType.PRE_VOTE_RESP and self.role is Role.PRE_CANDIDATE) or (
                t is MsgType.VOTE_RESP and self.role is Role.CANDIDATE):
            self.votes.setdefault(m.from_, not m.reject)
            result = self.quorum.vote_result(self.votes)
            if result is VoteResult.WON:
                self._on_won(self.role is Role.PRE_CANDIDATE)
            elif result is VoteResult.LOST:
                self._become_follower(self.term, NONE)
        elif t is MsgType.TIMEOUT_NOW:
            pass
        elif t is MsgType.READ_INDEX_RESP and self._take_forwarded(m.context):
            self._dropped_reads.append(DroppedRead(context=m.context, reason="election in progress"))

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is MsgType.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append(m)
            self._maybe_rejoined(m.from_)
        elif t is MsgType.SNAP:
            self._handle_snapshot(m)  # a rejoining member catches up by the appends that follow the install
        elif t is MsgType.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self.log.commit_to(min(m.commit, self.log.last_index()))
            self._maybe_rejoined(m.from_)  # an idle leader's commit reaches a caught-up member by heartbeats only
            self._send(Message(type=MsgType.HEARTBEAT_RESP, to=m.from_, from_=self.id, term=self.term,
                               index=m.index, context=m.context, reject_hint=self.log.last_index()))
        elif t is MsgType.READ_INDEX_RESP and self._take_forwarded(m.context):
            if m.reject:
                self._dropped_reads.append(DroppedRead(context=m.context, reason=f"refused by {m.from_}"))
            else:
                self._read_states.append(ReadState(index=m.index, context=m.context))
        elif t is MsgType.TIMEOUT_NOW:
            self.log_line(f"{self.id} campaigns at once: leadership transferred by {m.from_}")
            self._hup(transfer=True)
        elif t is MsgType.READ_INDEX:
            # a follower that forwarded to us thinks we lead; we do not: let it retry
            self._send(Message(type=MsgType.READ_INDEX_RESP, to=m.from_, from_=self.id, term=self.term,
                               context=m.context, reject=True))

    def _probe_terms(self) -> None:
        """Ask every voter that has not answered yet for its term (again on each election timeout)."""
        if self.term_known:
            return
        for v in self.voters:
            if v != self.id and v not in self._probe_answers:
                self._send(Message(type=MsgType.TERM_PROBE, to=v, from_=self.id, term=self.term,
                                   context=self._probe_nonce))

    def _on_term_probe_resp(self, m: Message) -> None:
        """Every term that elected a leader is durable on a quorum, and any quorum of the others
        meets it in a member that still holds it: once such a quorum answered, our term is at least
        that of any leader that may have counted our lost acknowledgements, and a deposed leader's
        appends are refused as stale. An answer to an earlier boot (another nonce) does not count."""
        if self.term_known or m.context != self._probe_nonce:
            return
        self._probe_answers.add(m.from_)
        if m.term > self.term:
            self._become_follower(m.term, NONE)
        if self.quorum.vote_result(dict.fromkeys(self._probe_answers, True)) is VoteResult.WON:
            self.term_known = True
            self.log_line(f"{self.id} learned term {self.term} from {sorted(self._probe_answers)}: "
                          f"follows leaders of that term or later")

    def _maybe_rejoined(self, leader: int) -> None:
        """A member repaired empty votes again once it holds an entry of this term as committed: the
        leader committed it after every entry committed before (leader completeness), and a commit
        reaches a follower only over a prefix known to match, so nothing the member may have acked
        before its data was lost is missing any more."""
        committed = self.log.committed
        if self.rejoining and committed > 0 and self.log.term(committed) == self.term:
            self.rejoining = False
            self.vote = leader
            self.log_line(f"{self.id} caught up with leader {leader} at commit {committed}: votes again")

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._check_committed_overlap(m)
            self._send_after(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term,
                                     index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._note_appended(m.entries)
            self._send_after(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term,
                                     index=last_new))
            return
        hint = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send_after(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term, index=m.index,
                                 reject=True, reject_hint=hint, hint_term=self.log.term(hint)))

    def _check_committed_overlap(self, m: Message) -> None:
        """An append below our commit index changes nothing, but what it says of our committed
        prefix must be what we hold: a leader whose entry differs at an index we committed broke
        leader completeness (Raft §5.4; etcd-raft panics at the same spot). Refused (``conflict``),
        so the follower says so instead of answering as if it matched."""
        first = self.log.first_index()
        for index, term in ((m.index, m.log_term), *((e.index, e.term) for e in m.entries)):
            if index > self.log.committed:
                return
            if index >= first and self.log.term(index) != term:
                raise Refused("conflict", f"the leader's entry {index} has term {term}; we committed it with "
                                          f"term {self.log.term(index)} (committed through {self.log.committed})")

    def _step_leader(self, m: Message) -> None:
        pr = self.prs.get(m.from_)
        t = m.type
        if t is MsgType.READ_INDEX:
            self._leader_read(m.context, m.from_)
            return
        if pr is None:
            return
        if t is MsgType.APP_RESP:
            pr.recent_active = True
            if m.reject and m.reject_hint < pr.match <= m.index:
                self._lost_entries(m.from_, pr, m.reject_hint)
                return
            if m.reject:
                next_probe = m.reject_hint
                if m.hint_term > 0:
                    next_probe = self.log.find_conflict_by_term(m.reject_hint, m.hint_term)
                if pr.maybe_decr_to(m.index, next_probe):
                    if pr.state is ProgressState.REPLICATE:
                        pr.become_probe()
                    self._send_append(m.from_)
                return
            if pr.maybe_update(m.index):
                pr.match_stamp = self.clock
                if pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
                    self.log_line(f"{self.id} resumes appends to {m.from_} after its snapshot (match {pr.match})")
                    pr.become_probe()
                    pr.become_replicate()
                elif pr.state is ProgressState.PROBE:
                    pr.become_replicate()
                else:
                    pr.inflights.free_le(m.index)
                if self._maybe_commit():
                    self._bcast_pending = True
                elif pr.match < self.log.last_index():
                    self._send_append(m.from_)
                if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
                    self._send_timeout_now(m.from_)
        elif t is MsgType.SNAP_RESP:
            self._handle_snap_resp(m, pr)
        elif t is MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            if m.index > pr.lease_stamp:
                pr.lease_stamp = m.index
            pr.probe_sent = False
            if m.reject_hint < pr.match and m.index > pr.match_stamp:
                self._lost_entries(m.from_, pr, m.reject_hint)
            elif pr.new_heartbeat_round(m.index):
                if pr.state is ProgressState.SNAPSHOT:
                    self._snapshot_heartbeat(m.from_, pr)
                elif pr.stalled():
                    self.log_line(f"{self.id} re-probes {m.from_}: no progress with {len(pr.inflights)} "
                                  "appends in flight")
                    pr.become_probe()
                if pr.match < self.log.last_index():
                    self._send_append(m.from_)
            seq = decode_seq(m.context)
            if seq:
                self.read_only.ack(m.from_, seq)
                for req in self.read_only.release(self.quorum, self.id):
                    self._answer_read(req.context, req.origin, req.index)

    # --- replication -------------------------------------------------------------------------

    def _send_append(self, to: int) -> None:
        pr = self.prs[to]
        if pr.is_paused():
            return
        if pr.next < self.log.first_index():
            self._send_snapshot(to)  # the entries it needs were compacted
            return
        prev = pr.next - 1
        entries = self.log.entries(pr.next, self.log.last_index() + 1, self.config.max_size_per_msg)
        self._send(Message(type=MsgType.APP, to=to, from_=self.id, term=self.term, index=prev,
                           log_term=self.log.term(prev), entries=tuple(entries), commit=self.log.committed))
        pr.sent = max(pr.sent, prev + len(entries))
        if pr.state is ProgressState.REPLICATE:
            if entries:
                pr.next = entries[-1].index + 1
                pr.inflights.add(entries[-1].index, sum(len(e.data) + 16 for e in entries))
        else:
            pr.probe_sent = True

    def _lost_entries(self, to: int, pr: Progress, last: int) -> None:
        """A follower's log ends below what it acknowledged (its disk lost a tail it had
        synced, or it was repaired as an empty member): forget the match and back-track from
        its real end, as a probe does, so it is sent the entries again. Commit never moves back."""
        self.log_line(f"{self.id} back-tracks {to}: its log ends at {last}, below its acknowledged {pr.match}")
        pr.match = last
        pr.become_probe()
        self._send_append(to)

    def _bcast_append(self) -> None:
        last = self.log.last_index()
        for v, pr in self.prs.items():
            if v == self.id:
                continue
            # pipelining: keep sending while the window allows and entries remain
            while True:
                before = pr.next
                self._send_append(v)
                if pr.state is not ProgressState.REPLICATE or pr.next == before or pr.next > last:
                    break

    def _bcast_heartbeat(self, seq: int) -> None:
        context = encode_seq(seq)
        for v, pr in self.prs.items():
            if v != self.id:
                self._send(Message(type=MsgType.HEARTBEAT, to=v, from_=self.id, term=self.term,
                                   commit=min(pr.match, self.log.committed), index=self.clock, context=context))

    def _maybe_commit(self) -> bool:
        index = self.quorum.committed_index({v: pr.match for v, pr in self.prs.items()})
        if index > self.log.committed and self.log.term(index) == self.term:
            self.log.commit_to(index)
            self._release_reads_waiting_commit()
            return True
        return False

    # --- helpers -----------------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    def _send_timeout_now(self, to: int) -> None:
        self.lease_void = True  # the transferee campaigns through every follower's lease
        self._send(Message(type=MsgType.TIMEOUT_NOW, to=to, from_=self.id, term=self.term))

    def _send_after(self, m: Message) -> None:
        self._msgs_after.append(m)

    def _hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(leader=self.lead, role=self.role)
