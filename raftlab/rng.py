"""One seed per run, split into named random streams.

A campaign records exactly one seed. Each part that makes random choices (the workload, the
nemesis schedule, the interpreter's choice of free process, the simulator) gets its own
``random.Random`` derived from that seed and the part's name, so adding draws in one part never
shifts the choices of another, and ``raftlab replay`` reproduces every choice from the seed alone.
"""

from __future__ import annotations

import hashlib
import random

SEED_BITS = 32


def new_seed() -> int:
    """A fresh seed from the OS (the only place a seed is not given): printed and recorded."""
    return random.SystemRandom().randrange(2**SEED_BITS)


def parse_seed(text: str) -> int:
    """A seed as typed on a command line; ValueError names the problem."""
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"seed must be a non-negative integer, not {text!r}") from None
    if value < 0:
        raise ValueError(f"seed must be a non-negative integer, not {value}")
    return value


class RunRandom:
    """The random streams of one run, each derived from (seed, name) and created once."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, not {seed}")
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def stream(self, name: str) -> random.Random:
        """The stream called ``name``; the same object every time it is asked for in this run."""
        if name not in self._streams:
            digest = hashlib.sha256(f"raftlab:{self.seed}:{name}".encode()).digest()
            self._streams[name] = random.Random(int.from_bytes(digest[:8], "big"))
        return self._streams[name]
