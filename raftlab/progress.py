"""Progress that survives being off a terminal: ``run.log`` in the run directory, status lines in CI logs.

A live progress bar is only for a terminal; a CI log used to show nothing until the end of a 60 s
campaign. ``RunLog`` writes every stage message to ``run.log`` in the run directory (flushed per
line, with the seconds since the run began) and, between stages, a status line at most every
``every`` seconds, driven by the events themselves (no timer task: an idle run has nothing new
to say). ``status`` is the same text for ``raftlab run`` to print on stderr off a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from raftlab.history import Op
from raftlab.interpreter import Stats

STATUS_EVERY = 10.0
"""Seconds between status lines in run.log (and on stderr off a terminal)."""


def status(stats: Stats) -> str:
    return (f"ops {stats.invokes}: {stats.ok} ok, {stats.fail} fail, {stats.info} info; "
            f"faults {stats.faults}")


class RunLog:
    """Appends stage messages and periodic status lines to ``path``; closed by ``close``."""

    def __init__(self, path: Path, *, every: float = STATUS_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.every = every
        self.clock = clock
        self.started = clock()
        self.last_status = self.started
        self.stage_name = "starting"
        self.stats = Stats()
        self._fh: IO[str] = path.open("a", encoding="utf-8")

    def _line(self, text: str) -> None:
        if not self._fh.closed:
            self._fh.write(f"[{self.clock() - self.started:7.1f}s] {text}\n")
            self._fh.flush()

    def stage(self, message: str) -> None:
        self.stage_name = message
        self._line(message)

    def event(self, op: Op) -> None:
        self.stats.count(op)
        now = self.clock()
        if now - self.last_status >= self.every:
            self.last_status = now
            self._line(f"status: {self.stage_name}; {status(self.stats)}")

    def note(self, message: str) -> None:
        self._line(message)

    def wrap(self, on_stage: Callable[[str], None] | None,
             on_event: Callable[[Op], None] | None) -> tuple[Callable[[str], None], Callable[[Op], None]]:
        """Callbacks that log here and then call the caller's own (either may be None)."""
        def stage(message: str) -> None:
            self.stage(message)
            if on_stage is not None:
                on_stage(message)

        def event(op: Op) -> None:
            self.event(op)
            if on_event is not None:
                on_event(op)

        return stage, event

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
