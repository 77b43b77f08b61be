"""Majority arithmetic, kept apart from messages (etcd's quorum/ package).

``MajorityConfig.committed_index`` is the largest index acknowledged by a majority (the same
function decides lease starts from echoed stamps); ``vote_result`` decides an election from the
votes so far. Both are pure. Joint consensus (confchange.py) is two majorities on top: a
``JointConfig`` whose committed index is the minimum of the two and whose vote is won only when
both are won (lost as soon as either is lost), with the same two methods, so the core asks one
``Quorum`` either way (etcd's quorum/joint.go); ``AllOf`` is the same over any number of them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum(voters: int) -> int:
    return voters // 2 + 1


@dataclass(frozen=True, slots=True)
class MajorityConfig:
    voters: tuple[int, ...]

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def committed_index(self, acked: Mapping[int, int]) -> int:
        """The highest index that a majority of voters has acknowledged (missing voters count 0)."""
        matched = sorted((acked.get(v, 0) for v in self.voters), reverse=True)
        return matched[self.quorum() - 1]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        granted = rejected = 0
        for v in self.voters:
            vote = votes.get(v)
            if vote is True:
                granted += 1
            elif vote is False:
                rejected += 1
        q = self.quorum()
        if granted >= q:
            return VoteResult.WON
        if len(self.voters) - rejected < q:
            return VoteResult.LOST
        return VoteResult.PENDING


@dataclass(frozen=True, slots=True)
class JointConfig:
    """The quorum of a joint configuration: a majority of ``incoming`` and one of ``outgoing``."""

    incoming: MajorityConfig
    outgoing: MajorityConfig

    @property
    def voters(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.incoming.voters) | set(self.outgoing.voters)))

    def committed_index(self, acked: Mapping[int, int]) -> int:
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        a, b = self.incoming.vote_result(votes), self.outgoing.vote_result(votes)
        if a is b:
            return a
        if VoteResult.LOST in (a, b):
            return VoteResult.LOST
        return VoteResult.PENDING


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every one of several quorums: the applied configuration and the one a membership change
    still pending in the log leads to (membership.py), each a majority or a joint one."""

    parts: tuple[MajorityConfig | JointConfig, ...]

    @property
    def voters(self) -> tuple[int, ...]:
        return tuple(sorted({v for p in self.parts for v in p.voters}))

    def committed_index(self, acked: Mapping[int, int]) -> int:
        return min(p.committed_index(acked) for p in self.parts)

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        results = {p.vote_result(votes) for p in self.parts}
        if results == {VoteResult.WON}:
            return VoteResult.WON
        return VoteResult.LOST if VoteResult.LOST in results else VoteResult.PENDING


Quorum = MajorityConfig | JointConfig | AllOf


def committed_index(voters: Iterable[int], acked: Mapping[int, int]) -> int:
    return MajorityConfig(tuple(voters)).committed_index(acked)


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    return MajorityConfig(tuple(voters)).vote_result(votes)
