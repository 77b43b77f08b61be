"""Port blocks reserved for one campaign at a time, machine-wide.

Why: a campaign's nodes listen on ``base_port + k`` (docs/campaigns.md). Two campaigns on
different labs that were given the same ``--base-port`` start nodes on each other's ports, and
each reads the other's cluster: false verdicts. So unless the user names a base port, the runner
reserves a block here. The ports from ``FIRST`` are cut into units of ``UNIT``; a block is one or
more consecutive units, and a unit is ours while we hold an ``flock`` on ``<ports dir>/<first>.lock``
(the kernel drops it when the holder exits, so a crashed run leaves nothing to clean). A block is
taken only if every port in it is free right now (probed by binding, which also skips ports other
programs use). Fixed units mean two runs of different sizes agree on what overlaps.

The ports directory is machine-wide (``$RAFTLAB_PORTS_DIR``, else ``/tmp/raftlab-ports``), not
per labs directory: ports are a property of the machine, not of a user's labs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path

from raftlab.lab import LabError
from raftlab.lab.lock import try_flock

FIRST = 17000
LAST = 29999
UNIT = 40


def ports_dir() -> Path:
    return Path(os.environ.get("RAFTLAB_PORTS_DIR") or Path(tempfile.gettempdir()) / "raftlab-ports")


def port_free(port: int) -> bool:
    """Nothing listens on (or holds) ``port`` on any address right now (probed by binding)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class PortBlock:
    """At least ``size`` consecutive ports from ``first``, held until ``release()`` (or the process exits)."""

    def __init__(self, first: int, size: int, fds: list[int]) -> None:
        self.first = first
        self.size = size
        self._fds = fds

    @classmethod
    def reserve(cls, size: int, *, first: int = FIRST, last: int = LAST) -> PortBlock:
        """The lowest free block of ``size`` ports in [first, last]; LabError naming the range if none."""
        if size < 1:
            raise ValueError(f"a port block needs at least one port, not {size}")
        units = -(-size // UNIT)
        span = units * UNIT
        folder = ports_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # shared by every user of the machine
            folder.chmod(0o1777)
        for start in range(first, last - span + 2, UNIT):
            fds = [fd for fd in (try_flock(folder / f"{u}.lock", 0o666) for u in range(start, start + span, UNIT))
                   if fd is not None]
            if len(fds) == units and all(port_free(p) for p in range(start, start + span)):
                for fd in fds:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"pid {os.getpid()}: ports {start}-{start + span - 1}\n".encode())
                return cls(start, span, fds)
            for fd in fds:  # held by another campaign, or a port in use by another program
                os.close(fd)
        raise LabError(f"no block of {size} free ports in {first}-{last} (every block is in use or reserved "
                       f"by another campaign; see {folder}); pass --base-port to choose one")

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing drops the flock; the file stays (deleting it would split the lock)
        self._fds = []

