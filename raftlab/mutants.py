"""The mutant catalogue: classic one-line Raft and KV mistakes, as exact-text patches on impl/.

A campaign that finds nothing proves little unless it would have found a bug that was there. Each
``Mutant`` here is one honest mistake a Raft implementer makes (etcd-raft's fixed bugs, the Jepsen
analyses, the Raft paper's own warnings): a small patch of ``find`` -> ``replace`` in one module
of the reference node, with the rule it breaks. ``raftlab mutate`` (raftlab/mutate.py) applies
them one at a time to a copy of the source and runs a campaign and/or a simulation budget on
each; the share caught is the mutation score, the measure of a campaign's bug-finding power.

A patch must match its module's text exactly once (``patch`` refuses otherwise, naming the
mutant), so a refactor that moves the code breaks the catalogue loudly, in a test, rather than
silently turning a mutant into the original program. This module is pure: it reads and returns
strings; the shell that copies trees and starts processes is raftlab/mutate.py.

``layer`` groups the catalogue (raft, dtkv, client, storage, codec, node); ``sim`` says whether
``raftlab mutate --method sim`` hunts the mutant: it patches code the simulator runs (RaftCore
and its log, quorum and read helpers; ``impl/machine.py``, the sans-I/O node machine every
simulated node is; the DtKV tree, which a third of the swarm's seeds drive with the tree
workload's ops; and the meta file's codec, through which every simulated restart reads its
hard state back). The other layers are judged by campaigns.
"""

from __future__ import annotations

from dataclasses import dataclass

CORE = "raftlab.impl.raft.core"
READS = "raftlab.impl.raft.reads"
READONLY = "raftlab.impl.raft.readonly"
LOG = "raftlab.impl.raft.log"
SNAPSHOTS = "raftlab.impl.raft.snapshots"
QUORUM = "raftlab.impl.raft.quorum"
MEMBERSHIP = "raftlab.impl.raft.membership"
TREE = "raftlab.impl.dtkv.tree"
CLIENT = "raftlab.impl.client"
WAL = "raftlab.impl.storage.wal"
META = "raftlab.impl.storage.meta"
CODEC = "raftlab.impl.net.codec"
MACHINE = "raftlab.impl.machine"
SNAPSHOT_FORMAT = "raftlab.impl.storage.snapshot_format"
LEASES = "raftlab.impl.dtkv.leases"

LAYERS = ("raft", "dtkv", "client", "storage", "codec", "node")


class PatchError(ValueError):
    """A mutant's ``find`` text does not occur exactly once in its module (names the mutant)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutant:
    id: str
    layer: str
    module: str  # dotted module name, as installed (raftlab.impl.* maps to impl/)
    find: str
    replace: str
    description: str
    rule: str

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValueError(f"mutant {self.id}: layer {self.layer!r} is not one of {', '.join(LAYERS)}")
        if self.find == self.replace:
            raise ValueError(f"mutant {self.id}: the patch changes nothing")

    @property
    def sim(self) -> bool:
        """Whether ``--method sim`` hunts this mutant: it patches code the simulator runs (RaftCore
        and its helpers, the node machine, the DtKV tree, the meta codec every restart reads, the
        snapshot format every simulated snapshot is encoded with; not the lease timers, which no
        simulated workload arms)."""
        return (self.layer in ("raft", "node", "dtkv") and self.module != LEASES) or self.module in (META, SNAPSHOT_FORMAT)

    def describe(self) -> str:
        return f"{self.id} [{self.layer}] {self.description} (breaks: {self.rule})"


def patch(source: str, mutant: Mutant) -> str:
    """``source`` with the mutant's one replacement; PatchError unless ``find`` occurs exactly once."""
    count = source.count(mutant.find)
    if count != 1:
        raise PatchError(f"mutant {mutant.id}: its patch text occurs {count} times in {mutant.module} "
                         "(expected exactly once; the source moved: update the catalogue)")
    return source.replace(mutant.find, mutant.replace)


def _m(id: str, layer: str, module: str, find: str, replace: str, description: str, rule: str) -> Mutant:
    return Mutant(id=id, layer=layer, module=module, find=find, replace=replace, description=description, rule=rule)


CATALOGUE: tuple[Mutant, ...] = (
    # --- raft core: elections ----------------------------------------------------------------
    _m("vote-twice", "raft", CORE,
       "(self.vote == NONE and self.lead == NONE)", "(self.lead == NONE)",
       "grants a second vote in a term when no leader is known",
       "one vote per term (Raft §5.2)"),
    _m("vote-stale-log", "raft", CORE,
       "if can_vote and self.log.is_up_to_date(m.index, m.log_term):", "if can_vote:",
       "grants votes without comparing logs",
       "election restriction (Raft §5.4.1)"),
    _m("up-to-date-by-length", "raft", LOG,
       "return term > mine or (term == mine and last_index >= self.last_index())",
       "return last_index >= self.last_index()",
       "judges 'at least as up to date' by log length, ignoring the last term",
       "election restriction compares last terms first (Raft §5.4.1)"),
    _m("vote-quorum-minority", "raft", QUORUM,
       "        if granted >= q:\n", "        if granted >= q - 1:\n",
       "wins an election one vote short of a majority",
       "election safety: a majority of votes (Raft §5.2)"),
    _m("stale-term-accepted", "raft", CORE,
       "                                         reject=True))\n            return\n",
       "                                         reject=True))\n",
       "processes messages from older terms instead of ignoring them",
       "a message with a stale term is rejected (Raft §5.1)"),
    # --- raft core: commit rule --------------------------------------------------------------
    _m("figure8", "raft", CORE,
       "if index > self.log.committed and self.log.term(index) == self.term:",
       "if index > self.log.committed:",
       "commits an entry of an earlier term by counting replicas",
       "only current-term entries commit by counting (Raft §5.4.2, Figure 8)"),
    _m("commit-quorum-short", "raft", QUORUM,
       "return matched[self.quorum() - 1]", "return matched[self.quorum() - 2]",
       "commits an index acknowledged by one node fewer than a majority",
       "an entry commits on a majority (Raft §5.3)"),
    _m("heartbeat-commit-unmatched", "raft", CORE,
       "commit=min(pr.match, self.log.committed), index=self.clock",
       "commit=self.log.committed, index=self.clock",
       "heartbeats carry the full commit index to followers that may not match it",
       "a follower commits only what it knows matches the leader (etcd heartbeat commit)"),
    # (``follower-commit-past-match``, a follower committing to min(leader commit, its last index)
    # instead of the last entry the append verified, was dropped as equivalent: it differs only when
    # the follower holds entries past the append that disagree with its sender. Every append after
    # such a tail starts at the first conflicting index (the term hints never undershoot it: terms
    # grow along a log) and truncates it, an older leader's appends are refused by term, and the
    # sender's own entries match by Log Matching; no reachable state tells the two apart. Its one
    # "catch", swarm seed 2962, was the empty-repair bug, a member that forgot its term, since fixed.)
    # (``leader-self-ack-early``, the leader counting its own entry before persisting it, was
    # dropped: NodeMachine steps no message while a Persist is out, so no acknowledgement can be
    # counted before the leader's own write completes; that mutant equals the original program.)
    _m("append-ack-before-persist", "raft", CORE,
       "self._send_after(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term,\n"
       "                                     index=last_new))",
       "self._send(Message(type=MsgType.APP_RESP, to=m.from_, from_=self.id, term=self.term,\n"
       "                                     index=last_new))",
       "a follower acknowledges an append when it accepts it, before the entries are persisted",
       "a committed entry is durable on a majority (Raft Figure 2; etcd's msgsAfterAppend)"),
    # --- raft core: log matching and truncation ----------------------------------------------
    _m("append-no-prev-check", "raft", LOG,
       "        if not self.match_term(prev_index, prev_term):\n            return None\n",
       "        if prev_index > self.last_index():\n            return None\n",
       "accepts an append whose previous entry has a different term",
       "log matching: the consistency check on prevLogIndex/prevLogTerm (Raft §5.3)"),
    _m("keep-conflicting-suffix", "raft", LOG,
       "if e.index > last or self.term(e.index) != e.term:", "if e.index > last:",
       "keeps a conflicting suffix instead of truncating it",
       "a follower deletes entries that conflict with the leader's (Raft §5.3)"),
    _m("truncate-on-duplicate", "raft", LOG,
       "        conflict = self.find_conflict(entries)\n",
       "        conflict = entries[0].index if entries else 0\n",
       "truncates the log on every append, even a late duplicate whose entries all match",
       "truncate only on a real conflict (Raft §5.3: 'if an existing entry conflicts')"),
    # --- raft core: reads --------------------------------------------------------------------
    _m("read-no-confirm", "raft", READS,
       "if self.voters == (self.id,) or (self.config.read_only == \"lease\" and self._in_lease()):",
       "if True:",
       "serves leader reads without confirming leadership with a quorum",
       "ReadIndex confirms leadership by a heartbeat round (thesis §6.4 step 3)"),
    _m("read-before-term-commit", "raft", READS,
       "        if not self._committed_in_term():\n            # thesis",
       "        if False:\n            # thesis",
       "a new leader serves reads before committing an entry of its term",
       "ReadIndex waits for the leader's first commit (thesis §6.4 step 1)"),
    _m("read-one-ack", "raft", READONLY,
       "confirmed = config.committed_index(acked)",
       "confirmed = max(self._acked.values(), default=0)",
       "confirms a read on the first heartbeat answer",
       "ReadIndex needs a quorum of heartbeat answers (thesis §6.4)"),
    _m("vote-not-synced", "raft", CORE,
       "must_sync=bool(entries) or bool(chunks) or hs.term != self._prev_hs.term or hs.vote != self._prev_hs.vote,",
       "must_sync=bool(entries) or bool(chunks),",
       "a Ready with a new term or vote but no entries is not synced",
       "term and vote are durable before answering (Raft Figure 2)"),
    # --- dtkv state machine ------------------------------------------------------------------
    _m("cas-absent-always", "dtkv", TREE,
       "                if current != expected:\n",
       "                if current != expected and expected is not None:\n",
       "a CAS expecting an absent key succeeds when the key exists",
       "cas is atomic compare-then-set, absent included"),
    _m("remove-noop", "dtkv", TREE,
       "                self._remove_check(key)\n                self._remove(key)\n",
       "                self._remove_check(key)\n",
       "remove answers ok but keeps the value",
       "an acknowledged remove takes effect"),
    _m("batch-put-first-only", "dtkv", TREE,
       "                for key, value in items:\n",
       "                for key, value in items[:1]:\n",
       "batch_put writes only its first item but acknowledges all",
       "a batch applies all of its items atomically"),
    _m("mkdir-clobbers", "dtkv", TREE,
       "                if key in self.dirs:\n                    return Result(index=index)\n                if key in values:",
       "                if key in values:",
       "mkdir of an existing directory forgets its children",
       "mkdir is idempotent"),
    _m("cas-mismatch-writes", "dtkv", TREE,
       "                if current != expected:\n                    return",
       "                if current != expected:\n                    values[key] = new\n                    return",
       "a CAS that reports a mismatch writes anyway",
       "a failed command leaves the state untouched"),
    _m("lease-ttl-in-seconds", "dtkv", LEASES,
       "        due = now + ttl_ms / 1000\n", "        due = now + ttl_ms\n",
       "the leader's expiry clock adds a TTL in milliseconds to a clock in seconds: temp nodes "
       "expire a thousand times late",
       "a temp node expires within its TTL (plus a bound) after its last refresh (etcd lessor)"),
    # --- client error classification ---------------------------------------------------------
    _m("timeout-definite", "client", CLIENT,
       "            if state.sent_to is not None:  # a read too",
       "            if False:  # a read too",
       "a write that timed out after it was sent is reported as definitely failed",
       "an unanswered sent write is indeterminate (info), never fail"),
    _m("lost-conn-retry-write", "client", CLIENT,
       "                if write:\n                    raise IndeterminateError",
       "                if False:\n                    raise IndeterminateError",
       "a write whose connection died after sending is silently resent elsewhere",
       "an indeterminate write is never retried silently (style rule 10)"),
    # --- raft core: snapshots (impl/raft/snapshots.py) ----------------------------------------
    _m("snapshot-install-stale", "raft", SNAPSHOTS,
       "        if m.index <= log.committed:\n",
       "        if m.index <= log.committed and m.index >= log.first_index():\n",
       "a follower refuses a stale snapshot only while its log still holds that index, so it "
       "installs an older snapshot over newer state once it has compacted past it",
       "a follower never installs a snapshot at or below its commit index (Raft §7, etcd restore)"),
    _m("conf-skip-joint", "raft", MEMBERSHIP,
       "self.quorum: Quorum = m.quorum() if latest == m else AllOf((m.quorum(), latest.quorum()))",
       "self.quorum: Quorum = m.quorum().outgoing if m.joint else m.quorum()  # type: ignore[union-attr]",
       "no joint phase: while a change is under way only the old voters decide (the new voters' "
       "majority is never asked, nor the configuration pending in the log), so the change is "
       "committed under the old majority alone, and members that applied it and members that did "
       "not yet can elect two leaders of one term from disjoint majorities",
       "joint consensus: old and new majorities both decide while the configuration changes (thesis §4.3)"),
    _m("rejoin-votes-at-once", "raft", CORE,
       "if self.rejoining and committed > 0 and self.log.term(committed) == self.term:",
       "if self.rejoining:",
       "a member repaired empty votes again at the first append or heartbeat of a leader, before it "
       "caught up with the entries it may have acknowledged before losing its data",
       "an emptied member votes only once it holds an entry of the current term as committed (its "
       "lost acknowledgements are then covered: leader completeness)"),
    _m("snapshot-fast-forward-unmatched", "raft", SNAPSHOTS,
       "if (m.offset == 0 or m.done) and log.match_term(m.index, m.log_term):",
       "if (m.offset == 0 or m.done) and m.index <= log.last_index():",
       "a follower offered a snapshot its log already reaches commits through the snapshot's index "
       "without checking that its entry there has the snapshot's term",
       "commit only a prefix that matches the leader's log (Raft §5.3; §7: keep the log only if it "
       "holds the snapshot's last entry)"),
    # --- storage -----------------------------------------------------------------------------
    _m("snapshot-drops-dirs", "storage", SNAPSHOT_FORMAT,
       '"dirs": list(image.dirs),', '"dirs": [""],',
       "a snapshot keeps every value but only the root directory",
       "a snapshot is the whole replicated state at its index (Raft §7)"),
    _m("wal-truncate-memory-only", "storage", WAL,
       "        os.ftruncate(self._fd, off)\n", "",
       "truncating a conflicting suffix changes memory but not the segment file",
       "the durable log equals the in-memory log (recovery sees what was acknowledged)"),
    _m("wal-reopen-no-append", "storage", WAL,
       "self._fd = os.open(self._segments[-1], os.O_WRONLY | os.O_APPEND)\n            self._size",
       "self._fd = os.open(self._segments[-1], os.O_WRONLY)\n            self._size",
       "after recovery the last segment is reopened without O_APPEND and overwritten from its start",
       "recovery never destroys persisted entries"),
    _m("meta-vote-forgotten", "storage", META,
       "return HardState(term=term, vote=vote, commit=commit)",
       "return HardState(term=term, vote=0, commit=commit)",
       "the stored vote is not restored on restart",
       "votedFor is persistent state (Raft Figure 2)"),
    # --- wire codec --------------------------------------------------------------------------
    _m("codec-reject-lost", "codec", CODEC,
       "commit=_int(commit, \"commit\"), reject=reject,", "commit=_int(commit, \"commit\"), reject=False,",
       "decoding drops the reject flag, so a refused append reads as an acknowledgement",
       "the leader counts only real acknowledgements (Raft §5.3)"),
    _m("codec-commit-from-index", "codec", CODEC,
       "commit=_int(commit, \"commit\"),", "commit=_int(index, \"commit\"),",
       "decoding takes the commit index from the index field",
       "a follower commits only what the leader committed"),
    # --- node machine (impl/machine.py: what the node decides between sockets and core) ------
    _m("node-ack-other-term", "node", MACHINE,
       "if term == entry.term and result is not None:", "if result is not None:",
       "a proposal whose slot went to another term's entry is answered with that entry's result",
       "acknowledge a write only when its own entry committed"),
    _m("node-read-before-apply", "node", MACHINE,
       "while confirmed and confirmed[0][0] <= applied:", "while confirmed:",
       "serves a confirmed read before the tree has applied the read index",
       "ReadIndex: wait until applied >= read index (thesis §6.4 step 4)"),
    _m("node-read-context-reuse", "node", MACHINE,
       "            self._read_seq += 1\n", "",
       "every read round uses the same ReadIndex context",
       "a confirmation answers only the reads it was asked for"),
)


def by_id(ids: list[str] | tuple[str, ...] | None = None) -> tuple[Mutant, ...]:
    """The mutants with these ids (all when None), in catalogue order; ValueError names an unknown id."""
    if not ids:
        return CATALOGUE
    known = {m.id: m for m in CATALOGUE}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown mutant {', '.join(unknown)} (see raftlab mutate --list)")
    return tuple(m for m in CATALOGUE if m.id in set(ids))
