"""The safety properties of Raft (Figure 3 of the paper), checked after every simulated event.

* Election safety: at most one leader per term.
* Log matching: two logs with an entry of the same index and term agree on everything before it.
* Leader completeness: an entry applied (so committed) anywhere is in the log of every leader of a
  later term. "Later" is judged against the lowest term any node had when it applied the entry
  (the leader that committed it applies it in the commit term), so a stale leader of an older
  term that has not yet heard of the commit is rightly not required to have it.
* State-machine safety: no two nodes apply different entries at the same index.
* State never rolls back: a running node's applied index never decreases, and a snapshot it
  installs holds exactly the state of the entries applied through its index: its tree digest
  equals the digest any node had when it applied that index (state-machine safety, §5.4.3,
  for state that arrives by InstallSnapshot instead of by entries).
* Nothing acknowledged before persisted: an append or vote response leaves a node only after
  what it promises is synced (the Ready contract), whichever list of the Ready it left in. A
  vote in term T is kept once term T and the vote are synced, or any later term is (a node never
  votes in a term below its own).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from raftlab.impl.raft import Entry, Message, MsgType
from raftlab.impl.storage.snapshot_format import SnapshotImage


class InvariantViolation(AssertionError):
    """A Raft safety property was broken; the message names it and the step."""


class Invariants:
    def __init__(self, ids: tuple[int, ...]) -> None:
        self.ids = ids
        self.leader_of_term: dict[int, int] = {}
        self.applied: dict[int, tuple[int, bytes, int]] = {}  # index -> (entry term, data, lowest apply term)
        # leader completeness is checked incrementally: a leader's log only grows within its term,
        # so each (leader, term, boot) checks each applied entry once; an entry whose lowest apply
        # term drops is queued again
        self._order: list[int] = []
        self._checked: dict[int, tuple[int, int, int]] = {}  # node -> (term, id of its core, position)
        self.digests: dict[int, str] = {}  # applied index -> tree digest there (first node to reach it)
        self.last_applied: dict[int, tuple[object, int]] = {}  # node -> (its machine, applied index)

    def on_leader(self, term: int, node: int, step: int) -> None:
        other = self.leader_of_term.setdefault(term, node)
        if other != node:
            raise InvariantViolation(f"step {step}: election safety: nodes {other} and {node} both lead term {term}")

    def on_apply(self, node: int, e: Entry, step: int, node_term: int) -> None:
        seen = self.applied.get(e.index)
        if seen is None:
            seen = self.applied[e.index] = (e.term, e.data, node_term)
            self._order.append(e.index)
        if seen[:2] != (e.term, e.data):
            raise InvariantViolation(f"step {step}: state-machine safety: node {node} applied {e.describe()} at "
                                     f"index {e.index}, another node applied term {seen[0]} there")
        if node_term < seen[2]:
            self.applied[e.index] = (e.term, e.data, node_term)
            self._order.append(e.index)

    def on_install(self, node: int, image: SnapshotImage, step: int) -> None:
        index = image.meta.index
        seen = self.applied.get(index)
        if seen is not None and seen[0] != image.meta.term:
            raise InvariantViolation(f"step {step}: state-machine safety: node {node} installed a snapshot of "
                                     f"{image.meta.term}/{index}, but term {seen[0]} was applied at {index}")

    def on_send(self, node: Any, m: Message) -> None:
        storage = node.storage
        hs = storage.synced_hard_state()
        if m.type is MsgType.APP_RESP and not m.reject and m.index > storage.synced_last_index():
            raise InvariantViolation(f"node {node.id} acknowledged index {m.index} but synced only "
                                     f"{storage.synced_last_index()}")
        # a synced later term also binds the vote: the node can never vote again in m.term
        if m.type is MsgType.VOTE_RESP and not m.reject and (
                hs.term < m.term or (hs.term == m.term and hs.vote != m.to)):
            raise InvariantViolation(f"node {node.id} granted a vote in term {m.term} before syncing it ({hs.describe()})")

    def check(self, nodes: Mapping[int, Any], step: int, changed: Collection[int] | None = None) -> None:
        """After a step; ``changed`` names the nodes whose log the step changed (None: all)."""
        up = [n for n in nodes.values() if n.up]
        for n in up:
            tree = n.machine.tree
            machine, before = self.last_applied.get(n.id, (None, 0))
            if machine is n.machine and tree.applied < before:
                raise InvariantViolation(f"step {step}: state rolled back: node {n.id} had applied {before}, "
                                         f"now {tree.applied} (an older snapshot installed over newer state?)")
            if machine is not n.machine or tree.applied != before:
                self.last_applied[n.id] = (n.machine, tree.applied)
                digest = self.digests.setdefault(tree.applied, tree.digest())
                if digest != tree.digest():
                    raise InvariantViolation(f"step {step}: state-machine safety: node {n.id}'s tree at applied "
                                             f"index {tree.applied} differs from another node's at that index")
        # log matching: below the last entry two logs share (same index and term) they must be
        # equal. Every step checks the few entries under it for the pairs with a node the step
        # touched (only they can have changed); every 250th step checks every whole common prefix.
        full = step % 250 == 0
        for i, a in enumerate(up):
            la = a.core.log
            for b in up[i + 1:]:
                if not full and changed is not None and a.id not in changed and b.id not in changed:
                    continue  # neither log changed since this pair was last checked
                lb = b.core.log
                hi = min(la.last_index(), lb.last_index())
                if hi == 0:
                    continue
                k = hi
                while k > 0 and la.term(k) != lb.term(k):
                    k -= 1
                # below either log's first index the entries were compacted into a snapshot
                lo = max(1 if full else k - 3, la.first_index(), lb.first_index())
                for ea, eb in zip(la.entries(lo, k + 1), lb.entries(lo, k + 1), strict=False):
                    if (ea.term, ea.data) != (eb.term, eb.data):
                        raise InvariantViolation(f"step {step}: log matching: nodes {a.id} and {b.id} differ at "
                                                 f"index {ea.index} below matching entry {k}")
        # leader completeness: every applied entry is in every current leader's log
        for n in up:
            core = n.core
            if core.role.value != "leader":
                continue
            first = core.log.first_index()
            term_, core_id, pos = self._checked.get(n.id, (0, 0, 0))
            if (term_, core_id) != (core.term, id(core)):
                pos = 0
            self._checked[n.id] = (core.term, id(core), len(self._order))
            for index in self._order[pos:]:
                term, _data, commit_term = self.applied[index]
                if core.term <= commit_term or index < first or (index <= core.log.last_index() and core.log.term(index) == term):
                    continue
                raise InvariantViolation(f"step {step}: leader completeness: leader {n.id} of term {core.term} "
                                         f"lacks applied entry {term}/{index}")

