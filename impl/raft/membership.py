"""Membership changes, as a mixin of ``RaftCore``: proposing, applying and obeying a configuration.

Theory of operation (etcd-raft's rules, confchange.py for the values). The configuration in force
is the one of the *applied* prefix of the log: the snapshot's (``SnapshotMeta``) or the
bootstrap one (``RaftConfig.voters``/``learners``), then every ``CONF_CHANGE`` entry in order as
``ready()`` hands it out to be applied. Using it means:

* ``voters`` (both sides while joint) are asked for votes and counted by ``quorum`` (a
  ``JointConfig`` while joint): elections, commits, ReadIndex confirmations, leases and
  check-quorum all go through it;
* while the log holds changes not yet applied, ``quorum`` is ``AllOf`` the applied
  configuration and the one those changes lead to (``latest``). The applied one alone is not
  enough: a member whose commit index was not synced restarts not knowing that a change in its
  log committed (say the removal of the other voters of a one-voter configuration); counting
  votes by the configuration it applied, it could elect itself beside the real leader. Asking
  for the configuration in its log as well (the thesis's rule) is only ever stricter, so both
  rules' safety arguments hold, and a change commits under old and new voters alike;
* the leader keeps a ``Progress`` for every member of either configuration, learners too (they
  get the log and snapshots, never count); members that arrive get one, members that leave
  lose theirs;
* only a voter campaigns, and not while a committed change is still unapplied (etcd's hup check:
  it would count votes under a configuration that is no longer the cluster's);
* a leader that is no longer a voter (it led the commit of the change that removed it, under the
  joint quorum it still belonged to) hands leadership over once that change is applied: it
  takes no more proposals, keeps replicating, counts only the new voters towards commits, and
  transfers leadership to the most caught-up new voter (again each heartbeat until one takes
  over: its TIMEOUT_NOW campaign ends our term). Stepping down at once instead can leave no one
  able to win: the new voters may lack entries the removed leader gave to non-voters, who
  then refuse them their votes while not campaigning themselves.

Proposals are validated at the leader (``ConfChangeError`` names the problem), one at a time:
none while an earlier change is not applied (``pending_conf_index``, set to the log's end on
election as etcd does, since a new leader cannot know what is pending in its log). A joint
configuration with ``auto_leave`` is left by the leader itself once it applied the ``enter``.
Messages are accepted from every id the core has ever known as a member, the bootstrap ids and
``RaftConfig.peers`` (the address book of the shell), so a lagging follower still hears a leader
added after its own configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .confchange import ConfChange, ConfChangeError, Membership, apply, decode_change, encode_change, validate
from .messages import NONE, Entry, EntryType, Role, SnapshotMeta
from .progress import Inflights, Progress
from .quorum import AllOf
from .reads import NotLeader

if TYPE_CHECKING:
    from .config import RaftConfig
    from .log import RaftLog
    from .quorum import Quorum

KEEP = 16  # memberships remembered by index (the snapshot writer asks for one at its index)


def membership_of(meta: SnapshotMeta) -> Membership:
    return Membership(voters=meta.voters, learners=meta.learners, outgoing=meta.outgoing,
                      outgoing_learners=meta.outgoing_learners, auto_leave=meta.auto_leave)


class MembershipPath:
    """The configuration of ``RaftCore``; the attributes below are the core's."""

    if TYPE_CHECKING:
        id: int
        term: int
        lead: int
        role: Role
        config: RaftConfig
        log: RaftLog
        prs: dict[int, Progress]
        lead_transferee: int
        _bcast_pending: bool
        log_line: Callable[[str], None]

        def transfer_leader(self, to: int) -> None: ...

    def _init_membership(self) -> None:
        c = self.config
        meta = self.log.storage.snapshot_meta()
        base = (membership_of(meta) if meta.index and meta.voters
                else Membership(voters=tuple(sorted(c.voters)), learners=tuple(sorted(c.learners))))
        self.known: set[int] = set(c.voters) | set(c.learners) | set(c.peers)
        self._memberships: list[tuple[int, Membership]] = [(meta.index, base)]
        self.pending_conf_index = 0
        self._conf_applied = self.log.applied  # entries through here were handed out to apply
        lo, hi = max(self._conf_applied + 1, self.log.first_index()), self.log.last_index() + 1
        # (index, term) of the membership changes in the log above the applied index
        self._log_confs: list[tuple[int, int]] = [(e.index, e.term) for e in self.log.entries(lo, hi)
                                                  if e.type is EntryType.CONF_CHANGE] if lo < hi else []
        self._refresh_membership()

    @property
    def membership(self) -> Membership:
        return self._memberships[-1][1]

    def membership_at(self, index: int) -> Membership:
        """The configuration in force once entries through ``index`` are applied."""
        for at, m in reversed(self._memberships):
            if at <= index:
                return m
        return self._memberships[0][1]

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        """Append a membership change (leader only); ``ConfChangeError`` if it is not allowed now."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.lead)
        if self.lead_transferee != NONE or self.id not in self.membership.all_voters():
            raise NotLeader(self.lead_transferee)  # handing leadership over: no more changes here
        if self.pending_conf_index > self._conf_applied:
            raise ConfChangeError(f"a membership change is in progress (entry {self.pending_conf_index} "
                                  f"is not applied yet)")
        strangers = sorted(set(change.voters + change.learners) - self.known)
        if strangers:
            raise ConfChangeError(f"unknown member {strangers}: not among this cluster's peers (the shell "
                                  "must be able to reach a member before it is added)")
        validate(self.membership, change)
        index = self.log.last_index() + 1
        self.log.append((Entry(term=self.term, index=index, type=EntryType.CONF_CHANGE,
                               data=encode_change(change)),))
        self.pending_conf_index = index
        self._log_confs.append((index, self.term))
        self._refresh_membership()
        self._bcast_pending = True
        self.log_line(f"{self.id} proposes membership change ({change.describe()}) at {index}")
        return self.term, index

    def _apply_conf_entries(self, committed: Sequence[Entry]) -> None:
        """``ready()`` hands out ``committed`` to apply: changes among them take effect now."""
        for e in committed:
            if e.index <= self._conf_applied:
                continue
            self._conf_applied = e.index
            if e.type is not EntryType.CONF_CHANGE:
                continue
            try:
                change = decode_change(e.data)
            except ConfChangeError as err:
                self.log_line(f"{self.id} ignores entry {e.index}: {err}")
                continue
            new, line = apply(self.membership, change)
            self.log_line(f"{self.id} {line} at {e.index}")
            if new != self.membership:
                self._remember(e.index, new)
        if committed and self._log_confs and self._log_confs[0][0] <= self._conf_applied:
            self._log_confs = [c for c in self._log_confs if c[0] > self._conf_applied]
            self._refresh_membership()
        self._maybe_auto_leave()

    def _note_appended(self, entries: Sequence[Entry]) -> None:
        """A follower appended ``entries`` (perhaps replacing a suffix): track its changes."""
        log = self.log
        kept = [(i, t) for i, t in self._log_confs if i <= log.last_index() and log.term(i) == t]
        new = [(e.index, e.term) for e in entries if e.type is EntryType.CONF_CHANGE
               and e.index > self._conf_applied and (e.index, e.term) not in kept]
        if new or len(kept) != len(self._log_confs):
            self._log_confs = sorted(kept + new)
            self._refresh_membership()

    def _remember(self, index: int, m: Membership) -> None:
        self._memberships.append((index, m))
        del self._memberships[:-KEEP]
        self._refresh_membership()

    def _restore_membership(self, meta: SnapshotMeta) -> None:
        """An installed snapshot replaced the log: its configuration is the one in force."""
        stored = self.log.storage.snapshot_meta()
        self._conf_applied = max(self._conf_applied, meta.index)
        self._log_confs = []
        if stored.index == meta.index and stored.voters:
            self._remember(meta.index, membership_of(stored))
        else:
            self._refresh_membership()

    def _refresh_membership(self) -> None:
        """Recompute ``latest`` (the applied configuration with the log's pending changes
        applied), ``voters``, ``quorum`` and the leader's progress set."""
        m = latest = self.membership
        for index, _ in self._log_confs:
            try:
                latest = apply(latest, decode_change(self.log.entries(index, index + 1)[0].data))[0]
            except ConfChangeError:
                continue
        self.latest_membership = latest
        self.voters: tuple[int, ...] = tuple(sorted(set(m.all_voters()) | set(latest.all_voters())))
        self.quorum: Quorum = m.quorum() if latest == m else AllOf((m.quorum(), latest.quorum()))
        members = set(m.members()) | set(latest.members())
        self.known |= members
        if self.role is not Role.LEADER:
            return
        last = self.log.last_index()
        for v in sorted(members):
            if v not in self.prs:
                pr = Progress(last + 1, Inflights(self.config.max_inflight_msgs, self.config.max_inflight_bytes))
                pr.recent_active = True  # a new member is not held against check-quorum at once
                self.prs[v] = pr
                self._bcast_pending = True
        for v in [v for v in self.prs if v not in members and v != self.id]:
            del self.prs[v]
        if self.lead_transferee not in (NONE, *self.voters):
            self.lead_transferee = NONE
        self._maybe_hand_over()

    def _maybe_hand_over(self) -> None:
        """A leader removed from the voters transfers leadership to the best-placed new voter."""
        voters = self.membership.all_voters()
        if self.role is not Role.LEADER or self.id in voters or self.lead_transferee != NONE:
            return
        best = max(voters, key=lambda v: (self.prs[v].match, -v))
        self.log_line(f"{self.id} is no longer a voter ({self.membership.describe()}): hands leadership to {best}")
        self.transfer_leader(best)

    def _maybe_auto_leave(self) -> None:
        m = self.membership
        if (self.role is Role.LEADER and m.joint and m.auto_leave and self.pending_conf_index <= self._conf_applied
                and self.lead_transferee == NONE):  # a transfer under way: the next leader leaves it
            self.propose_conf_change(ConfChange(op="leave"))

    def _unapplied_conf_change(self) -> bool:
        """A committed membership change is not applied yet (no campaign until it is)."""
        lo = max(self._conf_applied + 1, self.log.first_index())
        if lo > self.log.committed:
            return False
        return any(e.type is EntryType.CONF_CHANGE for e in self.log.entries(lo, self.log.committed + 1))
