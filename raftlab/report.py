"""report.html: one self-contained page that shows what a campaign did and what was found.

Built only from a run directory (``history.jsonl``, ``results.json``, ``campaign.json`` and, for a
violation, the checker's ``timeline.html``), so ``raftlab report RUN_DIR`` rebuilds it at any
time. No network and no plotting library: the charts are SVG written here.

Sections: the verdict with its reasons; latency over time (a point per operation at its invoke
time, coloured ok / fail / info, info drawn at the top as "never answered") with each fault's
intervals shaded in its colour; throughput per second by outcome; availability per phase (while
faults ran, while any fault was active, after healing); recovery time; each checker's verdict and
explanation; the faults injected; for a violation, the checker's timeline of the counterexample.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

from raftlab.evidence import WAIT_HEALTHY
from raftlab.history import NEMESIS, History, HistoryError, Op, OpType
from raftlab.store import RunDir, StoreError

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 960, 300, 60, 20, 14, 34
COLORS = {"ok": "#3a9b3a", "fail": "#d03a3a", "info": "#e8a33a"}
MAX_POINTS = 20000


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _verdict_text(v: object) -> str:
    return {True: "valid", False: "INVALID", "unknown": "unknown"}.get(v, "no verdict")  # type: ignore[arg-type]


def _verdict_class(v: object) -> str:
    return {True: "ok", False: "bad", "unknown": "unk"}.get(v, "unk")  # type: ignore[arg-type]


def pair(history: Sequence[Op]) -> list[tuple[Op, Op | None]]:
    """Client invokes with their completions (None when never completed)."""
    open_: dict[object, Op] = {}
    out: list[tuple[Op, Op | None]] = []
    slot: dict[object, int] = {}
    for op in history:
        if not op.is_client:
            continue
        if op.type is OpType.INVOKE:
            open_[op.process] = op
            slot[op.process] = len(out)
            out.append((op, None))
        elif op.process in open_:
            out[slot.pop(op.process)] = (open_.pop(op.process), op)
    return out


def fault_intervals(history: Sequence[Op], perf: Sequence[dict[str, Any]], end: int) -> list[tuple[str, str, int, int]]:
    """(fault name, colour, start ns, stop ns) for every fault that took effect."""
    starts = {f: p for p in perf for f in p.get("start", ())}
    stops = {f: p for p in perf for f in p.get("stop", ())}
    active: dict[str, int] = {}
    out: list[tuple[str, str, int, int]] = []
    for op in history:
        if op.process != NEMESIS or op.type is OpType.INVOKE:
            continue
        if op.f in starts and not op.error:
            active.setdefault(starts[op.f]["name"], op.time)
        elif op.f in stops:
            name = stops[op.f]["name"]
            if name in active:
                out.append((name, stops[op.f].get("color", "#ccc"), active.pop(name), op.time))
    for name, t in active.items():
        color = next((p.get("color", "#ccc") for p in perf if p["name"] == name), "#ccc")
        out.append((name, color, t, end))
    return out


class _Axes:
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
        step = max(1, round(self.t_max / 10))
        t = 0
        while t <= self.t_max:
            x = self.x(t)
            parts.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" text-anchor="middle">{t:g}</text>')
            t += step
        parts.append(f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle">seconds</text>'
                     f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{y_label}</text>')
        return "".join(parts)


def _shading(axes: _Axes, intervals: Sequence[tuple[str, str, int, int]]) -> str:
    parts = []
    for name, color, a, b in intervals:
        x0, x1 = axes.x(a / 1e9), axes.x(b / 1e9)
        parts.append(f'<rect x="{x0:.1f}" y="{PAD_T}" width="{max(x1 - x0, 1):.1f}" height="{H - PAD_T - PAD_B}" '
                     f'fill="{_esc(color)}" opacity="0.35"><title>{_esc(name)} {a / 1e9:.2f}-{b / 1e9:.2f}s</title></rect>')
    return "".join(parts)


def latency_svg(pairs: Sequence[tuple[Op, Op | None]], intervals: Sequence[tuple[str, str, int, int]],
                t_end: int) -> str:
    lat = [((c.time - i.time) / 1e6) for i, c in pairs if c is not None and c.type is not OpType.INFO]
    top = max([*lat, 10.0]) * 1.5
    axes = _Axes(t_end / 1e9, 0.1, top, log=True)
    ticks = [v for v in (0.1, 1, 10, 100, 1000, 10000) if v <= top]
    stride = max(1, len(pairs) // MAX_POINTS)
    dots = []
    for i, c in pairs[::stride]:
        kind = "info" if c is None else c.type.value
        ms = top if c is None or c.type is OpType.INFO else max((c.time - i.time) / 1e6, 0.1)
        dots.append(f'<circle cx="{axes.x(i.time / 1e9):.1f}" cy="{axes.y(ms):.1f}" r="1.6" fill="{COLORS[kind]}"/>')
    return (f'<svg viewBox="0 0 {W} {H}" width="100%">{_shading(axes, intervals)}{axes.frame("latency (ms, log)", ticks)}'
            f'{"".join(dots)}</svg>')


def throughput_svg(pairs: Sequence[tuple[Op, Op | None]], intervals: Sequence[tuple[str, str, int, int]],
                   t_end: int) -> str:
    seconds = max(1, math.ceil(t_end / 1e9))
    buckets = {k: [0] * seconds for k in COLORS}
    for _, c in pairs:
        if c is not None:
            buckets[c.type.value][min(seconds - 1, int(c.time / 1e9))] += 1
    top = max([max(b) for b in buckets.values()] + [1]) * 1.1
    axes = _Axes(seconds, 0, top, log=False)
    ticks = [round(top * k / 4) for k in range(5)]
    lines = []
    for kind, counts in buckets.items():
        pts = " ".join(f"{axes.x(s + 0.5):.1f},{axes.y(n):.1f}" for s, n in enumerate(counts))
        lines.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[kind]}" stroke-width="1.5"/>')
    return (f'<svg viewBox="0 0 {W} {H}" width="100%">{_shading(axes, intervals)}{axes.frame("completions / s", ticks)}'
            f'{"".join(lines)}</svg>')


def availability(pairs: Sequence[tuple[Op, Op | None]], history: Sequence[Op],
                 intervals: Sequence[tuple[str, str, int, int]]) -> list[tuple[str, int, int, int, int]]:
    """(phase, ok, fail, info, total) for: the faulty period, while a fault was active, after healing."""
    heal_start = next((op.time for op in history if op.process == NEMESIS and op.type is OpType.INVOKE
                       and op.f == WAIT_HEALTHY), None)
    final_start = next((op.time for op in history if op.process == NEMESIS and op.type is not OpType.INVOKE
                        and op.f == WAIT_HEALTHY), None)

    def active(t: int) -> bool:
        return any(a <= t <= b for _, _, a, b in intervals)

    phases: dict[str, list[int]] = {"workload (faults running)": [0, 0, 0], "  while a fault was active": [0, 0, 0],
                                    "  while no fault was active": [0, 0, 0], "final (after healing)": [0, 0, 0]}
    for i, c in pairs:
        k = 2 if c is None else {"ok": 0, "fail": 1, "info": 2}[c.type.value]
        if final_start is not None and i.time >= final_start:
            phases["final (after healing)"][k] += 1
        elif heal_start is None or i.time < heal_start:
            phases["workload (faults running)"][k] += 1
            phases["  while a fault was active" if active(i.time) else "  while no fault was active"][k] += 1
    return [(name, ok, fail, info, ok + fail + info) for name, (ok, fail, info) in phases.items()]


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.ok{color:#2a7a2a}.bad{color:#c02020}.unk{color:#b07000}
.badge{font-size:20px;font-weight:bold;padding:4px 10px;border-radius:4px;background:#f4f4f4}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
svg text{font-size:11px;fill:#555} pre{background:#f7f7f7;padding:8px;white-space:pre-wrap}
.legend span{margin-right:14px} iframe{width:100%;height:640px;border:1px solid #ccc}
"""


def render(run: RunDir) -> str:
    campaign = run.read_campaign()
    try:
        results = run.read_results()
    except StoreError:
        results = {}
    try:
        history = list(History.read(run.history, validate=False))
    except HistoryError:
        history = []
    perf = results.get("perf", [])
    t_end = max([op.time for op in history] + [1])
    pairs = pair(history)
    intervals = fault_intervals(history, perf, t_end)
    verdict = results.get("valid")
    out = [f"<!doctype html><meta charset=utf-8><title>raftlab {_esc(campaign.get('workload'))} "
           f"{_esc(_verdict_text(verdict))}</title><style>{CSS}</style>",
           f"<h1>raftlab campaign: {_esc(campaign.get('workload'))} on {_esc(campaign.get('system', 'dtkv'))}</h1>",
           f'<p><span class="badge {_verdict_class(verdict)}">{_esc(_verdict_text(verdict))}</span> '
           f"&nbsp; seed <b>{_esc(campaign.get('seed'))}</b> &nbsp; {_esc(run.path)}</p>"]
    if results.get("reasons"):
        out.append("<ul>" + "".join(f"<li>{_esc(r)}</li>" for r in results["reasons"]) + "</ul>")
    if results.get("error"):
        out.append(f"<p class=bad>Could not complete: {_esc(results['error'].get('message'))}</p>")
    legend = "".join(f'<span style="color:{c}">&#9679; {k}</span>' for k, c in COLORS.items())
    legend += "".join(f'<span style="background:{_esc(p.get("color"))}">&nbsp;{_esc(p["name"])}&nbsp;</span>'
                      for p in perf)
    out.append(f"<h2>Latency</h2><div class=legend>{legend}</div>{latency_svg(pairs, intervals, t_end)}")
    out.append(f"<h2>Throughput</h2>{throughput_svg(pairs, intervals, t_end)}")
    rows = "".join(f"<tr><td><pre style='margin:0;background:none;padding:0'>{_esc(n)}</pre></td><td>{ok}</td><td>{f}</td>"
                   f"<td>{i}</td><td>{(100 * ok / t if t else 0):.1f}%</td></tr>"
                   for n, ok, f, i, t in availability(pairs, history, intervals))
    out.append("<h2>Availability</h2><table><tr><th>phase</th><th>ok</th><th>fail</th><th>info</th>"
               f"<th>available</th></tr>{rows}</table>")
    recovery = results.get("checkers", {}).get("recovery", {})
    if "seconds" in recovery:
        out.append(f"<p>Recovery after healing: <b>{_esc(recovery['seconds'])} s</b> "
                   f"({'healthy' if recovery.get('healthy') else 'NOT healthy at the timeout'}).</p>")
    out.append("<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>explanation / data</th></tr>")
    for name, res in results.get("checkers", {}).items():
        details = {k: v for k, v in res.items() if k not in ("valid", "explanation")}
        body = _esc(res.get("explanation") or "")
        if details:
            body += f"<details><summary>data</summary><pre>{_esc(json.dumps(details, indent=1, default=str)[:20000])}</pre></details>"
        out.append(f"<tr><td>{_esc(name)}</td><td class={_verdict_class(res.get('valid'))}>"
                   f"{_esc(_verdict_text(res.get('valid')))}</td><td>{body}</td></tr>")
    out.append("</table>")
    timeline = run.path / "timeline.html"
    if timeline.exists():
        out.append("<h2>Counterexample timeline</h2>"
                   f'<iframe srcdoc="{_esc(timeline.read_text(encoding="utf-8"))}"></iframe>')
    faults = [op for op in history if op.process == NEMESIS and op.type is not OpType.INVOKE]
    out.append("<h2>Nemesis</h2><table><tr><th>time (s)</th><th>f</th><th>value</th><th>error</th></tr>")
    for op in faults:
        out.append(f"<tr><td>{op.time / 1e9:.2f}</td><td>{_esc(op.f)}</td><td>{_esc(json.dumps(op.value, default=str))}</td>"
                   f"<td class=bad>{_esc(op.error or '')}</td></tr>")
    out.append("</table><h2>Campaign</h2><table>")
    out.extend(f"<tr><td>{_esc(k)}</td><td>{_esc(json.dumps(v))}</td></tr>" for k, v in sorted(campaign.items()))
    out.append(f"</table><p>Replay: <code>raftlab replay {_esc(run.path)}</code></p>")
    return "\n".join(out)


def write(run: RunDir) -> str:
    """Render and write ``report.html``; returns its path."""
    run.report.write_text(render(run), encoding="utf-8")
    return str(run.report)
