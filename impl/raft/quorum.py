"""Majority arithmetic, kept apart from messages (etcd's quorum/ package).

``committed_index`` is the largest index acknowledged by a majority; ``vote_result`` decides an
election from the votes so far. Joint configurations (a later issue) are two majorities on top.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum(voters: int) -> int:
    return voters // 2 + 1


def committed_index(voters: Iterable[int], acked: Mapping[int, int]) -> int:
    """The highest index that a majority of ``voters`` has acknowledged (missing voters count 0)."""
    ids = list(voters)
    matched = sorted((acked.get(v, 0) for v in ids), reverse=True)
    return matched[quorum(len(ids)) - 1]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    ids = list(voters)
    granted = sum(1 for v in ids if votes.get(v) is True)
    rejected = sum(1 for v in ids if votes.get(v) is False)
    q = quorum(len(ids))
    if granted >= q:
        return VoteResult.WON
    if len(ids) - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING
