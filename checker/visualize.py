"""One self-contained HTML page showing a history and what the checker made of it.

In the spirit of porcupine's visualizer, viewable offline: one row per process, a bar from each
operation's invoke to its completion (open-ended for unknown outcomes), nemesis events as shaded
bands, and for a violation the failing partition highlighted: the longest linearizable prefix in
green with its order number, the operations that could not be placed next in red, and the minimal
illegal sub-history outlined, with the model's descriptions and states in a table below.
"""

from __future__ import annotations

import html
import math

from raftlab.history import History

from .result import Result

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px} .verdict-false{color:#b00020} .verdict-true{color:#1b7f3b} .verdict-unknown{color:#a66b00}
pre{background:#f6f6f6;padding:8px;overflow:auto} table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
.legend span{display:inline-block;margin-right:12px} .sw{width:12px;height:12px;display:inline-block;vertical-align:middle;margin-right:4px}
svg text{font:11px monospace}
"""


def render_html(history: History, result: Result | None = None, *, title: str = "raftlab history") -> str:
    ops = history.operations()
    n_events = max(len(history), 1)
    processes = sorted({str(op.process) for op in ops}, key=lambda p: (len(p), p))
    row = {p: i for i, p in enumerate(processes)}
    failing = result.failing if result is not None else None
    prefix_order = {op_id: k + 1 for k, op_id in enumerate(failing.longest_prefix)} if failing else {}
    stuck = set(failing.stuck) if failing else set()
    minimal = set(failing.minimal) if failing else set()
    words = failing.described if failing else {}
    width, left, row_h = 1100, 70, 22
    scale = (width - left - 20) / n_events
    height = 30 + row_h * max(len(processes), 1)
    parts: list[str] = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    # nemesis bands
    starts: dict[str, int] = {}
    for ev in history:
        if ev.is_client:
            continue
        if ev.type.value == "invoke":
            starts[ev.f] = ev.index
        else:
            s = starts.pop(ev.f, ev.index)
            x = left + s * scale
            parts.append(f'<rect x="{x:.1f}" y="0" width="{max((ev.index - s) * scale, 2):.1f}" height="{height}" '
                         f'fill="#f3d9a4" opacity="0.5"><title>nemesis {html.escape(ev.f)} '
                         f'{html.escape(str(ev.value))}</title></rect>')
    for p in processes:
        y = 20 + row[p] * row_h
        parts.append(f'<text x="4" y="{y + 12}">p{html.escape(p)}</text>')
    for op in ops:
        y = 20 + row[str(op.process)] * row_h
        x0 = left + op.call * scale
        end = n_events if op.ret == math.inf else op.ret
        w = max((end - op.call) * scale, 3)
        color = "#9bbbe0"
        if op.id in prefix_order:
            color = "#7cc48a"
        if op.id in stuck:
            color = "#e05a5a"
        stroke = ' stroke="#000" stroke-width="2"' if op.id in minimal else ""
        dash = ' stroke-dasharray="4 2" stroke="#555"' if op.ret == math.inf and not stroke else ""
        label = html.escape(words.get(op.id) or op.describe())
        order = f" (#{prefix_order[op.id]} in the prefix)" if op.id in prefix_order else ""
        parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" rx="3" fill="{color}"'
                     f'{stroke}{dash} data-op="{op.id}"><title>{label}{order}</title></rect>')
        if op.id in prefix_order:
            parts.append(f'<text x="{x0 + 2:.1f}" y="{y + 12}">{prefix_order[op.id]}</text>')
    parts.append("</svg>")
    verdict = "no check" if result is None else str(result.valid).lower()
    body = [f"<h1>{html.escape(title)}: <span class='verdict-{verdict}'>{html.escape(verdict)}</span></h1>"]
    if result is not None:
        body.append(f"<p>model <b>{html.escape(result.model)}</b>, {result.operations} operations, "
                    f"{len(result.partitions)} partitions, {result.elapsed:.3f}s</p>")
    body.append('<p class="legend"><span><i class="sw" style="background:#7cc48a"></i>linearized prefix</span>'
                '<span><i class="sw" style="background:#e05a5a"></i>could not be placed next</span>'
                '<span><i class="sw" style="border:2px solid #000"></i>minimal illegal sub-history</span>'
                '<span><i class="sw" style="background:#9bbbe0"></i>other operations</span>'
                '<span><i class="sw" style="background:#f3d9a4"></i>nemesis</span></p>')
    body.append("".join(parts))
    if result is not None and result.explanation:
        body.append(f"<h2>Explanation</h2><pre id='explanation'>{html.escape(result.explanation)}</pre>")
    if failing is not None:
        by_id = {op.id: op for op in ops}
        rows = []
        for k, op_id in enumerate(failing.longest_prefix):
            state = failing.states[k] if k < len(failing.states) else ""
            rows.append(f"<tr><td>{k + 1}</td><td>{html.escape(words.get(op_id) or by_id[op_id].describe())}</td>"
                        f"<td>{html.escape(state)}</td></tr>")
        for op_id in failing.stuck:
            rows.append(f"<tr class='stuck'><td>✗</td><td>{html.escape(words.get(op_id) or by_id[op_id].describe())}</td>"
                        "<td>cannot be linearized here</td></tr>")
        body.append(f"<h2>Partition {html.escape(failing.name)}: partial linearization</h2>"
                    f"<table><tr><th>#</th><th>operation</th><th>state after</th></tr>{''.join(rows)}</table>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")

