"""RaftConfig: every knob of the core, validated before a core is built (PySyncObj's lesson)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    id: int
    voters: tuple[int, ...]  # the bootstrap configuration (a snapshot's, then the log's, take over)
    learners: tuple[int, ...] = ()  # bootstrap learners
    peers: tuple[int, ...] = ()  # other ids the shell can reach (a member added later may lead)
    election_tick: int = 10  # ticks without a leader before campaigning (randomized in [e, 2e))
    heartbeat_tick: int = 1  # ticks between a leader's heartbeats
    pre_vote: bool = True  # thesis 9.6: no term inflation from a partitioned node
    check_quorum: bool = True  # a leader that has not heard from a quorum for election_tick steps down
    max_inflight_msgs: int = 256  # pipelined MsgApps per follower in replicate state
    max_inflight_bytes: int = 64 << 20
    max_size_per_msg: int = 1 << 20  # entries per MsgApp, in bytes (at least one entry is sent)
    max_committed_per_ready: int = 8192
    read_only: Literal["safe", "lease"] = "safe"
    applied: int = 0  # entries already applied by the state machine (0: replay the whole log)
    snapshot_chunk_bytes: int = 256 << 10  # bytes of snapshot per SNAP message
    snapshot_window: int = 4  # SNAP chunks in flight beyond the follower's acknowledgement
    rejoin: bool = False  # repaired as an empty member: no vote, no campaign until caught up with a leader

    def __post_init__(self) -> None:
        if self.id <= 0:
            raise ConfigError(f"id must be a positive int, not {self.id}")
        if not self.voters or any(v <= 0 for v in self.voters) or len(set(self.voters)) != len(self.voters):
            raise ConfigError(f"voters must be distinct positive ids, not {self.voters}")
        if any(v <= 0 for v in self.learners + self.peers) or set(self.learners) & set(self.voters):
            raise ConfigError(f"learners must be positive ids apart from the voters, not {self.learners}")
        if self.heartbeat_tick <= 0:
            raise ConfigError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0 or self.max_inflight_bytes <= 0 or self.max_size_per_msg <= 0:
            raise ConfigError("max_inflight_msgs, max_inflight_bytes and max_size_per_msg must be positive")
        if self.read_only not in ("safe", "lease"):
            raise ConfigError(f"read_only must be 'safe' or 'lease', not {self.read_only!r}")
        if self.read_only == "lease" and not self.check_quorum:
            raise ConfigError("read_only='lease' needs check_quorum (the lease is the check-quorum window)")
        if self.applied < 0:
            raise ConfigError("applied must be >= 0")
        if self.snapshot_chunk_bytes <= 0 or self.snapshot_window <= 0:
            raise ConfigError("snapshot_chunk_bytes and snapshot_window must be positive")
