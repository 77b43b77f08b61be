"""A counterexample in words: the part of the history that failed and why.

Users cannot read a search's final paths (jepsen-io/knossos#16); they want the violating
sequence. So the explanation leads with a minimal illegal sub-history (delta debugging), then the
longest prefix that did linearize, the state it reached, and the operations that could not be
placed after it, each described by the model (porcupine's DescribeOperation / DescribeState).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raftlab.history import Operation

from .result import PartitionResult


def _when(op: Operation) -> str:
    end = "?" if op.ret == float("inf") else str(int(op.ret))
    return f"[{op.call}..{end}]"


def describe(model: Any, op: Operation) -> str:
    return f"p{op.process} {model.describe_op(op)} {_when(op)}"


def explain(model: Any, part: PartitionResult, ops: Sequence[Operation]) -> str:
    lines = [f"not linearizable: partition {part.name} ({part.operations} operations)"]
    if part.minimal:
        if part.minimal_finished:
            lines.append(f"a minimal illegal sub-history ({len(part.minimal)} operations, in call order):")
        else:
            lines.append(f"a smaller illegal sub-history ({len(part.minimal)} operations, in call order; "
                         "shrinking stopped at its step budget):")
        lines.extend("  " + describe(model, ops[i]) for i in sorted(part.minimal, key=lambda i: ops[i].call))
    lines.append(f"longest linearizable prefix: {len(part.longest_prefix)} of {part.operations} operations")
    shown = part.longest_prefix[-8:]
    if len(part.longest_prefix) > len(shown):
        lines.append(f"  ... {len(part.longest_prefix) - len(shown)} earlier operations")
    start = len(part.longest_prefix) - len(shown)
    for k, i in enumerate(shown):
        lines.append(f"  {describe(model, ops[i])}  => {part.states[start + k]}")
    final = part.states[-1] if part.states else model.describe_state(model.init())
    lines.append(f"state after the prefix: {final}")
    if part.stuck:
        lines.append("none of these could be linearized next:")
        lines.extend("  " + describe(model, ops[i]) for i in part.stuck[:12])
        if len(part.stuck) > 12:
            lines.append(f"  ... and {len(part.stuck) - 12} more")
    lines.append("(positions in [call..return] are event indexes in the history; ? = outcome unknown)")
    return "\n".join(lines)
