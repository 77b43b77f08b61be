"""A user model with a bug, for the CLI test: its step raises on a read."""

from __future__ import annotations

from typing import Any


class Crashing:
    def init(self) -> int:
        return 0

    def step(self, state: int, op: Any) -> tuple[bool, int]:
        if op.f == "read":
            raise TypeError("cannot read")
        return True, state

    def describe_op(self, op: Any) -> str:
        return op.f

    def describe_state(self, state: int) -> str:
        return str(state)
