"""raftlab: a Jepsen-style verification toolkit with a reference Raft + DtKV node."""

__version__ = "0.1.0"
