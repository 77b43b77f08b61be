"""Skips, with the reason, for campaign tests whose parts are not in this build."""

from __future__ import annotations

import pytest


def need_checker() -> None:
    """Verdict tests need raftlab.checker's check(); skip, naming why, in a build without it."""
    try:
        from raftlab.checker import check  # noqa: F401
    except ImportError as e:
        pytest.skip(f"needs raftlab.checker.check ({e})")


def need_raft_core() -> None:
    """Campaigns against the reference node need its Raft core."""
    try:
        from raftlab.impl.raft import RaftCore  # noqa: F401
    except ImportError as e:
        pytest.skip(f"needs the Raft core raftlab.impl.raft.RaftCore ({e})")
