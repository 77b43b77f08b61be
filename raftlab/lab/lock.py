"""One campaign per lab at a time: a lock file beside the lab's record.

Why: a lab's hosts are shared directories (and ports, in the local lab's proxy mode); a second
campaign on the same lab tears down the first one's nodes and gives it a false verdict. So a
campaign holds ``<labs dir>/<name>.lock`` (an ``flock``, released by the kernel if the holder
dies, so a crashed run never leaves a stale lock) from before the lab is opened until the last
teardown. A second campaign on the same lab waits for it, saying once who holds it (a different
``--lab-name`` runs at once); ``raftlab lab down`` refuses while the lab is in use.

The file is never deleted (deleting a lock file while someone waits on it splits the lock); its
text names the holder: pid, what it is doing, since when.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from raftlab.lab import LabError, labs_dir

POLL = 0.2


class LabBusy(LabError):
    """The lab is in use by another campaign (the message names it)."""


def lock_path(name: str) -> Path:
    return labs_dir() / f"{name}.lock"


def try_flock(path: Path, mode: int) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``path`` (created with ``mode``), or None
    if another process holds it. Closing the descriptor (or dying) releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class LabLock:
    """The lock of lab ``name``; ``acquire`` waits (cancellably), ``release`` lets the next run in."""

    def __init__(self, name: str, purpose: str) -> None:
        self.name = name
        self.purpose = purpose
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        path = lock_path(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = try_flock(path, 0o644)
        if fd is None:
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {self.purpose}, since {time.strftime('%H:%M:%S')}\n".encode())
        self._fd = fd
        return True

    async def acquire(self, on_wait: Callable[[str], None] | None = None) -> None:
        told = False
        while not self.try_acquire():
            if not told and on_wait is not None:
                on_wait(f"lab {self.name!r} is in use ({holder(self.name) or 'by another run'}); waiting for it "
                        "(Ctrl-C to stop, or use another --lab-name to run at once)")
                told = True
            await asyncio.sleep(POLL)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder(name: str) -> str | None:
    """Who holds lab ``name``'s lock (its text), or None if nobody does."""
    path = lock_path(name)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return path.read_text().strip() or "another run"
        finally:
            os.close(fd)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None


def refuse_if_busy(name: str, doing: str) -> None:
    """Raise LabBusy if a campaign holds lab ``name`` (for ``lab down`` and friends)."""
    who = holder(name)
    if who is not None:
        raise LabBusy(f"cannot {doing} lab {name!r}: it is in use ({who}); wait for that run or stop it first")
