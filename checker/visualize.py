"""The interactive timeline: one self-contained HTML page per history, porcupine's visualizer as the bar.

Python turns a history and the checker's ``Result`` into one JSON document; ``timeline.js`` (next
to this module, inlined into the page, so the page works offline from a ``file://`` URL) draws it
on a canvas. A canvas, not one DOM node per operation, so a 100k-operation history opens quickly:
the script walks the chosen key's operations per frame and draws only those in view.

What the page shows, one partition (key) at a time, chosen from a list with the violating keys
first: a time axis in seconds (event positions for a history without clock readings, such as
Jepsen's EDN); each operation as a bar from invoke to completion, on the first lane
free at its invoke; fault intervals shaded across all lanes; on hover, the operation's words, its
place in the linearization and the model state after it (``PartitionResult.longest_prefix`` and
``states``, which the checker keeps for every partition it settled); the point where it took effect
as a tick (the earliest moment consistent with the order: the later of its invoke and the previous
point, never after its completion). Unknown-outcome operations (``info``) are hatched and drawn
only as long as the key's longest known operation, ending in "?", so they do not cover the view.
For a violation: the operations that could not be placed next are red, the minimal illegal
sub-history is outlined, and "jump to error" zooms to them. Wheel zooms, drag pans, double-click
resets.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

from raftlab.history import NEMESIS, History, Operation, OpType

from .result import PartitionResult, Result

Fault = tuple[str, str, int, int]
"""(name, colour, start ns, stop ns): a fault interval, as ``raftlab.findings.fault_intervals`` gives."""

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:17px;margin:4px 0} .v-false{color:#b00020} .v-true{color:#1b7f3b} .v-unknown{color:#a66b00}
#bar{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:6px 0}
#bar select{min-width:260px} #tl{border:1px solid #ccc;display:block;width:100%;cursor:grab}
#tip{position:fixed;pointer-events:none;background:#fffff4;border:1px solid #999;padding:4px 6px;
 font:12px monospace;white-space:pre;display:none;max-width:700px;z-index:2}
pre{background:#f6f6f6;padding:8px;overflow:auto;white-space:pre-wrap} .legend i{display:inline-block;
 width:12px;height:12px;vertical-align:middle;margin:0 3px 0 10px}
"""


def _points(span: dict[int, tuple[float, float | None]], order: Sequence[int]) -> dict[int, float]:
    """Operation id -> where it took effect, for the linearization ``order``; ``span``: id -> (call, return).

    The later of its invoke and the previous point; a linearization never puts an operation
    before one invoked after it returned, so the point is never after its own completion.
    """
    out: dict[int, float] = {}
    t = 0.0
    for op_id in order:
        call, ret = span[op_id]
        t = max(t, call)
        if ret is not None:
            t = min(t, ret)
        out[op_id] = t
    return out


def _partition_name(op: Operation, names: set[str]) -> str:
    return str(op.key) if str(op.key) in names else "all"


def _nemesis(history: History) -> list[list[Any]]:
    """Every nemesis completion as [time s, f, value words], for the markers above the lanes."""
    return [[op.time / 1e9, op.f, json.dumps(op.value, default=str)[:200]]
            for op in history if op.process == NEMESIS and op.type is not OpType.INVOKE]


def timeline_data(history: History, result: Result | None, *, faults: Sequence[Fault] = (),
                  title: str = "raftlab history") -> dict[str, Any]:
    """The JSON the page's script draws: keys (violating first), their operations, faults."""
    ops = history.operations()
    parts: dict[str, PartitionResult] = {p.name: p for p in (result.partitions if result else [])}
    names = set(parts)
    grouped: dict[str, list[Operation]] = {}
    for op in ops:
        grouped.setdefault(_partition_name(op, names) if names else str(op.key), []).append(op)
    rank = {False: 0, "unknown": 1, True: 2}
    # Histories without clock readings are drawn on event positions: all times equal, or times
    # that are only the positions (the EDN importer numbers events 1, 2, 3...).
    timed = len({op.time for op in history}) > 1 and any(op.time not in (op.index, op.index + 1) for op in history)
    span = {op.id: ((op.call_time / 1e9, None if op.ret_time is None else op.ret_time / 1e9) if timed else
                    (float(op.call), None if op.ret == math.inf else float(op.ret))) for op in ops}
    keys = []
    for name, key_ops in grouped.items():
        part = parts.get(name)
        order = part.longest_prefix if part else []
        position = {op_id: k for k, op_id in enumerate(order)}
        points = _points(span, order)
        stuck = set(part.stuck) if part else set()
        minimal = set(part.minimal) if part else set()
        words = part.described if part else {}
        rows = []
        for op in key_ops:
            k = position.get(op.id)
            state = part.states[k] if part is not None and k is not None and k < len(part.states) else ""
            flag = 2 if op.id in stuck else 1 if op.id in minimal else 0
            rows.append([*span[op.id], op.process, words.get(op.id) or op.describe(), -1 if k is None else k + 1,
                         state, None if k is None else points[op.id], flag])
        valid = part.valid if part else "unknown"
        keys.append({"name": name, "valid": valid, "reason": part.reason if part else "not checked",
                     "ops": rows})
    keys.sort(key=lambda k: (rank.get(k["valid"], 1), k["name"]))
    t_end = max([op.time for op in history] + [1]) / 1e9 if timed else float(len(history))
    return {"title": title, "valid": None if result is None else result.valid, "unit": "s" if timed else "event",
            "model": result.model if result else "", "explanation": result.explanation if result else "",
            "end": t_end, "keys": keys, "nemesis": _nemesis(history),
            "faults": [[name, color, a / 1e9, b / 1e9] for name, color, a, b in faults]}


def render_html(history: History, result: Result | None = None, *, faults: Sequence[Fault] = (),
                title: str = "raftlab history") -> str:
    """The whole page: header, key chooser, canvas, explanation; data and script inlined."""
    data = timeline_data(history, result, faults=faults, title=title)
    script = resources.files("raftlab.checker").joinpath("timeline.js").read_text(encoding="utf-8")
    verdict = "no check" if result is None else str(result.valid).lower()
    word = {"true": "linearizable", "false": "NOT linearizable", "unknown": "unknown"}.get(verdict, verdict)
    summary = ""
    if result is not None:
        summary = (f"model <b>{html.escape(result.model)}</b>, {result.operations} operations, "
                   f"{len(result.partitions)} partitions, checked in {result.elapsed:.3f}s")
    explanation = ""
    if result is not None and result.explanation:
        explanation = f"<h2>Explanation</h2><pre id='explanation'>{html.escape(result.explanation)}</pre>"
    payload = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}: <span class='v-{verdict}'>{html.escape(word)}</span></h1><p>{summary}</p>"
            "<div id='bar'><label>key <select id='key'></select></label>"
            "<button id='jump'>jump to error</button><button id='reset'>reset zoom</button>"
            "<span id='keyinfo'></span></div>"
            "<div class='legend'><i style='background:#7cc48a'></i>linearized (tick: where it took effect)"
            "<i style='background:#9bbbe0'></i>not placed (search stopped)<i style='background:#e05a5a'></i>"
            "could not be placed next<i style='border:2px solid #000'></i>minimal illegal sub-history"
            "<i style='background:repeating-linear-gradient(45deg,#f0b860 0 3px,#fff 3px 6px)'></i>"
            "outcome unknown (?)<i style='background:#f3d9a4'></i>fault active</div>"
            "<canvas id='tl' height='400'></canvas><div id='tip'></div>"
            "<p style='color:#666'>wheel: zoom at the pointer · drag: pan · double-click: reset · "
            "hover an operation for its linearization and the state after it</p>"
            f"{explanation}<script id='data' type='application/json'>{payload}</script>"
            f"<script>{script}</script></body></html>")
