"""Verdicts and how they combine.

A verdict has three values: ``True``, ``False`` or ``"unknown"``. They merge with
false > unknown > true (Jepsen's ``valid-priorities``): one violation makes the whole answer
false, and a time-out or a checker crash is ``unknown`` with its reason, never rounded up to a
pass (porcupine's ``Unknown``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from raftlab.history import History

Verdict = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"

_RANK = {True: 0, UNKNOWN: 1, False: 2}


def merge_valid(*verdicts: Verdict | Iterable[Verdict]) -> Verdict:
    """false > unknown > true; no verdicts at all is true (nothing was wrong)."""
    flat: list[Verdict] = []
    for v in verdicts:
        if isinstance(v, bool) or v == UNKNOWN:
            flat.append(v)  # type: ignore[arg-type]
        else:
            flat.extend(v)  # type: ignore[arg-type]
    worst: Verdict = True
    for v in flat:
        if v not in _RANK:
            raise ValueError(f"not a verdict: {v!r}")
        if _RANK[v] > _RANK[worst]:
            worst = v
    return worst


@dataclass(slots=True, kw_only=True)
class PartitionResult:
    """The outcome for one independent part of the history (one key, for the kv model)."""

    name: str
    valid: Verdict
    operations: int
    reason: str = ""
    longest_prefix: list[int] = field(default_factory=list)  # operation ids, in linearization order
    states: list[str] = field(default_factory=list)  # state after each prefix step (described)
    stuck: list[int] = field(default_factory=list)  # operation ids that could not be placed next
    minimal: list[int] = field(default_factory=list)  # a small still-illegal subset of operation ids
    minimal_finished: bool = False  # shrinking ran to the end (else its step budget stopped it)
    described: dict[int, str] = field(default_factory=dict)  # operation id -> the model's words (failing only)


@dataclass(slots=True, kw_only=True)
class Result:
    """What a checker decided about one history, with enough detail to explain it."""

    valid: Verdict
    model: str = ""
    explanation: str = ""
    operations: int = 0
    partitions: list[PartitionResult] = field(default_factory=list)
    elapsed: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failing(self) -> PartitionResult | None:
        return next((p for p in self.partitions if p.valid is False), None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "valid": self.valid,
            "model": self.model,
            "operations": self.operations,
            "partitions": len(self.partitions),
            "elapsed": round(self.elapsed, 6),
        }
        unsettled = [p.name for p in self.partitions if p.valid == UNKNOWN]
        if unsettled:
            d["unsettled"] = {p.name: p.reason for p in self.partitions if p.valid == UNKNOWN}
        bad = self.failing
        if bad is not None:
            d["counterexample"] = {
                "partition": bad.name,
                "longest_prefix": bad.longest_prefix,
                "stuck": bad.stuck,
                "minimal": bad.minimal,
                "minimal_finished": bad.minimal_finished,
                "states": bad.states,
                "described": {i: bad.described[i] for i in [*bad.minimal, *bad.stuck] if i in bad.described},
            }
        if self.explanation:
            d["explanation"] = self.explanation
        d.update(self.details)
        return d


def safe_check(checker: Any, history: History, opts: Mapping[str, Any]) -> Result:
    """Run a checker; a crash becomes ``unknown`` naming the exception (Jepsen's ``check-safe``)."""
    try:
        result = checker.check(history, dict(opts))
    except Exception as e:
        import traceback

        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return Result(valid=UNKNOWN, explanation=f"the checker crashed: {tb}")
    if not isinstance(result, Result):
        return Result(valid=UNKNOWN, explanation=f"the checker returned {type(result).__name__}, not a Result")
    return result


@dataclass(slots=True)
class Compose:
    """Named checkers run on the same history; the verdict is their merge."""

    checkers: dict[str, Any]

    def check(self, history: History, opts: dict[str, Any]) -> Result:
        results = {name: safe_check(c, history, opts) for name, c in self.checkers.items()}
        valid = merge_valid(r.valid for r in results.values())
        lines = [f"{name}: {r.explanation}" for name, r in results.items() if r.valid is not True and r.explanation]
        return Result(
            valid=valid,
            model="compose",
            explanation="\n".join(lines),
            details={"checkers": {name: r.to_dict() for name, r in results.items()}},
        )


def compose(checkers: Mapping[str, Any]) -> Compose:
    return Compose(dict(checkers))
