"""The sans-I/O Raft core: a deterministic state machine with no asyncio, sockets, files or clock.

Drive it with ``tick``/``step``/``propose``/``read_index``; collect its work with ``ready()`` and
acknowledge it with ``advance()`` (the contract is in ``messages.Ready``). The asyncio node
(``impl/node.py``) and the simulator (``raftlab/sim``) are two shells around the same core.
"""

from .config import ConfigError, RaftConfig
from .core import NotLeader, RaftCore, Status
from .messages import NONE, Entry, EntryType, HardState, Message, MsgType, ReadState, Ready, Role, SoftState

__all__ = [
    "NONE", "ConfigError", "Entry", "EntryType", "HardState", "Message", "MsgType", "NotLeader", "RaftConfig",
    "RaftCore", "ReadState", "Ready", "Role", "SoftState", "Status",
]
