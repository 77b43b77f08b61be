"""The report's charts, as inline SVG strings: no plotting library, nothing fetched, works offline.

Every chart has the run's time in seconds on x, each fault interval shaded in its colour, and
each violation marked by a red vertical line at the second its bad operation completed (with
the key in the label), so "what was happening when it broke" is read off every plot.

* ``latency_svg``: one point per operation at its invoke time (ok / definite-answer fail / fail /
  info), info drawn along the top as "never answered", for one operation type;
* ``throughput_svg``: completions per second, a line per operation type;
* ``quantiles_svg``: latency p50 / p95 / p99 / max per second, over every operation type;
* ``quantile_rows``: the same quantiles over the whole run, per operation type, for a table.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from raftlab.findings import Interval, answered
from raftlab.history import Op, OpType

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 960, 230, 60, 20, 16, 34
COLORS = {"ok": "#3a9b3a", "answer": "#6a8fd0", "fail": "#d03a3a", "info": "#e8a33a"}
F_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
MAX_POINTS = 20000
Pairs = Sequence[tuple[Op, Op | None]]
Marks = Sequence[tuple[float, str]]  # (seconds, label) of each violation


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


class Axes:
    def __init__(self, t_max: float, y_min: float, y_max: float, log: bool) -> None:
        self.t_max = max(t_max, 1e-9)
        self.log = log
        self.y_min, self.y_max = (math.log10(y_min), math.log10(y_max)) if log else (y_min, y_max)
        if self.y_max <= self.y_min:
            self.y_max = self.y_min + 1

    def x(self, t: float) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * t / self.t_max

    def y(self, v: float) -> float:
        v = math.log10(max(v, 10 ** self.y_min)) if self.log else v
        return H - PAD_B - (H - PAD_T - PAD_B) * (v - self.y_min) / (self.y_max - self.y_min)

    def frame(self, y_label: str, ticks: Sequence[float]) -> str:
        parts = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
                 'fill="none" stroke="#999"/>']
        for v in ticks:
            y = self.y(v)
            parts.append(f'<line x1="{PAD_L - 4}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                         f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        parts.append(self.time_ticks(H - PAD_B + 16))
        parts.append(f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle">seconds</text>'
                     f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{y_label}</text>')
        return "".join(parts)

    def time_ticks(self, y: float) -> str:
        """The seconds along the x axis, about ten of them, at height ``y``."""
        parts = []
        step = max(1, round(self.t_max / 10))
        t = 0
        while t <= self.t_max:
            parts.append(f'<text x="{self.x(t):.1f}" y="{y}" text-anchor="middle">{t:g}</text>')
            t += step
        return "".join(parts)

    def shading(self, intervals: Sequence[Interval]) -> str:
        parts = []
        for name, color, a, b in intervals:
            x0, x1 = self.x(a / 1e9), self.x(b / 1e9)
            parts.append(f'<rect x="{x0:.1f}" y="{PAD_T}" width="{max(x1 - x0, 1):.1f}" height="{H - PAD_T - PAD_B}" '
                         f'fill="{esc(color)}" opacity="0.35"><title>{esc(name)} {a / 1e9:.2f}-{b / 1e9:.2f}s</title></rect>')
        return "".join(parts)

    def marks(self, marks: Marks) -> str:
        parts = []
        for k, (t, label) in enumerate(marks):
            x = self.x(t)
            parts.append(f'<line class="violation" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{H - PAD_B}" '
                         f'stroke="#c00000" stroke-width="1.5" stroke-dasharray="4 2"/>'
                         f'<text x="{x + 3:.1f}" y="{PAD_T + 11 + 12 * (k % 4)}" fill="#c00000" style="fill:#c00000">'
                         f'{esc(label)} {t:.2f}s</text>')
        return "".join(parts)


def _svg(axes: Axes, intervals: Sequence[Interval], frame: str, body: str, marks: Marks) -> str:
    return (f'<svg viewBox="0 0 {W} {H}" width="100%">{axes.shading(intervals)}{frame}{body}'
            f"{axes.marks(marks)}</svg>")


def outcome(done: Op | None) -> str:
    if done is None or done.type is OpType.INFO:
        return "info"
    if done.type is OpType.OK:
        return "ok"
    return "answer" if answered(done) else "fail"


def latency_svg(pairs: Pairs, intervals: Sequence[Interval], t_end: int, marks: Marks) -> str:
    lat = [((c.time - i.time) / 1e6) for i, c in pairs if c is not None and c.type is not OpType.INFO]
    top = max([*lat, 10.0]) * 1.5
    axes = Axes(t_end / 1e9, 0.1, top, log=True)
    ticks = [v for v in (0.1, 1, 10, 100, 1000, 10000) if v <= top]
    stride = max(1, len(pairs) // MAX_POINTS)
    dots = []
    for i, c in pairs[::stride]:
        kind = outcome(c)
        ms = top if kind == "info" or c is None else max((c.time - i.time) / 1e6, 0.1)
        dots.append(f'<circle cx="{axes.x(i.time / 1e9):.1f}" cy="{axes.y(ms):.1f}" r="1.6" fill="{COLORS[kind]}"/>')
    return _svg(axes, intervals, axes.frame("latency (ms, log)", ticks), "".join(dots), marks)


def _polylines(axes: Axes, series: dict[str, list[float]], colors: dict[str, str]) -> str:
    lines = []
    for name, values in series.items():
        pts = " ".join(f"{axes.x(s + 0.5):.1f},{axes.y(v):.1f}" for s, v in enumerate(values) if not math.isnan(v))
        lines.append(f'<polyline points="{pts}" fill="none" stroke="{colors[name]}" stroke-width="1.5"/>')
    return "".join(lines)


def throughput_svg(pairs: Pairs, intervals: Sequence[Interval], t_end: int, marks: Marks,
                   fs: Sequence[str]) -> str:
    seconds = max(1, math.ceil(t_end / 1e9))
    buckets: dict[str, list[float]] = {f: [0.0] * seconds for f in fs}
    for i, c in pairs:
        if c is not None and i.f in buckets:
            buckets[i.f][min(seconds - 1, int(c.time / 1e9))] += 1
    top = max([max(b) for b in buckets.values()] + [1]) * 1.1
    axes = Axes(seconds, 0, top, log=False)
    return _svg(axes, intervals, axes.frame("completions / s", [round(top * k / 4) for k in range(5)]),
                _polylines(axes, buckets, f_colors(fs)), marks)


def f_colors(fs: Sequence[str]) -> dict[str, str]:
    return {f: F_COLORS[k % len(F_COLORS)] for k, f in enumerate(fs)}


QUANTILES = (("p50", 0.5, "#3a9b3a"), ("p95", 0.95, "#e8a33a"), ("p99", 0.99, "#d03a3a"), ("max", 1.0, "#555"))


def _q(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def quantiles_svg(pairs: Pairs, intervals: Sequence[Interval], t_end: int, marks: Marks) -> str:
    seconds = max(1, math.ceil(t_end / 1e9))
    per: list[list[float]] = [[] for _ in range(seconds)]
    for i, c in pairs:
        if c is not None and c.type is not OpType.INFO:
            per[min(seconds - 1, int(i.time / 1e9))].append((c.time - i.time) / 1e6)
    for values in per:
        values.sort()
    series = {name: [_q(v, q) for v in per] for name, q, _ in QUANTILES}
    top = max([x for s in series.values() for x in s if not math.isnan(x)] + [10.0]) * 1.5
    axes = Axes(seconds, 0.1, top, log=True)
    ticks = [v for v in (0.1, 1, 10, 100, 1000, 10000) if v <= top]
    return _svg(axes, intervals, axes.frame("latency (ms, log)", ticks),
                _polylines(axes, series, {name: color for name, _, color in QUANTILES}), marks)


def quantile_rows(pairs: Pairs, fs: Sequence[str]) -> list[tuple[str, int, list[float]]]:
    """(f, answered count, [p50, p95, p99, max] ms) per operation type, over the whole run."""
    rows = []
    for f in fs:
        lat = sorted((c.time - i.time) / 1e6 for i, c in pairs if i.f == f and c is not None and c.type is not OpType.INFO)
        rows.append((f, len(lat), [_q(lat, q) for _, q, _ in QUANTILES]))
    return rows
