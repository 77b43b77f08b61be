"""report.html and history.txt: what a campaign did and what was found, readable by a person.

Built only from a run directory (``history.jsonl``, ``results.json``, ``campaign.json``), so
``raftlab report RUN_DIR`` rebuilds both at any time. No network and no plotting library: the
charts are inline SVG (``raftlab.report_plots``), and the page opens offline from a file:// URL.

The first screen answers "what broke, when, where, under which fault": the verdict, then for each
violating key its earliest bad operation (``raftlab.findings.locate``) with the second it
completed, the node that served it, the faults active then and the nodes they touched, and the
minimal illegal sub-history behind it in seconds. Below: the checker's explanation with its line
breaks; links to every file of the run; under the member nemesis, the membership over time (a
lane per host and a table of changes, ``raftlab.report_members``); latency per operation type,
throughput per type and latency quantiles, each with the faults shaded and the violations marked;
availability per phase counting only what the system failed to answer (a cas refused because the
value differed is an answer); recovery; every checker's verdict; the nemesis events; the
campaign; the replay command.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftlab import report_members as members
from raftlab import report_plots as plots
from raftlab.evidence import WAIT_HEALTHY
from raftlab.findings import BadOp, Interval, answered, fault_intervals, locate, pair, settle
from raftlab.history import NEMESIS, History, HistoryError, Op, OpType
from raftlab.report_plots import esc
from raftlab.store import RunDir, StoreError

__all__ = ["availability", "render", "write", "write_history_text", "write_timeline"]


def _verdict_text(v: object) -> str:
    return {True: "valid", False: "INVALID", "unknown": "unknown"}.get(v, "no verdict")  # type: ignore[arg-type]


def _verdict_class(v: object) -> str:
    return {True: "ok", False: "bad", "unknown": "unk"}.get(v, "unk")  # type: ignore[arg-type]


def availability(pairs: plots.Pairs, history: Sequence[Op],
                 intervals: Sequence[Interval]) -> list[tuple[str, int, int, int]]:
    """(phase, answered, unanswered, total) for: the faulty period, with / without a fault active, after healing.

    Answered: ok, or a definite answer such as a cas mismatch (``findings.answered``);
    unanswered: fail for any other reason, info, or never completed.
    """
    heal_start = next((op.time for op in history if op.process == NEMESIS and op.type is OpType.INVOKE
                       and op.f == WAIT_HEALTHY), None)
    final_start = next((op.time for op in history if op.process == NEMESIS and op.type is not OpType.INVOKE
                        and op.f == WAIT_HEALTHY), None)

    def active(t: int) -> bool:
        return any(a <= t <= b for _, _, a, b in intervals)

    phases: dict[str, list[int]] = {"workload (faults running)": [0, 0], "  while a fault was active": [0, 0],
                                    "  while no fault was active": [0, 0], "final (after healing)": [0, 0]}
    for i, c in pairs:
        k = 0 if answered(c) else 1
        if final_start is not None and i.time >= final_start:
            phases["final (after healing)"][k] += 1
        elif heal_start is None or i.time < heal_start:
            phases["workload (faults running)"][k] += 1
            phases["  while a fault was active" if active(i.time) else "  while no fault was active"][k] += 1
    return [(name, yes, no, yes + no) for name, (yes, no) in phases.items()]


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px auto;max-width:1000px;color:#222}
h1{font-size:21px;margin:4px 0} h2{font-size:17px;margin-top:26px;border-bottom:1px solid #ddd}
.ok{color:#2a7a2a}.bad{color:#c02020}.unk{color:#b07000}
.badge{font-size:19px;font-weight:bold;padding:3px 10px;border-radius:4px;background:#f4f4f4}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
svg text{font-size:11px;fill:#555} pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;margin:4px 0}
.legend span{margin-right:14px} iframe{width:100%;height:560px;border:1px solid #ccc}
#found{border:2px solid #c02020;border-radius:6px;padding:6px 12px;background:#fff6f6;margin:10px 0}
#found h2{margin-top:4px;border:none;color:#a01010} #found td{background:#fff}
.meta{color:#444} .files a{margin-right:12px;white-space:nowrap}
"""


FIRST_SCREEN_KEYS = 5
"""Violating keys listed in "Where it broke" (the earliest ones), so it fits on the first screen."""


def _findings_html(found: Sequence[BadOp]) -> str:
    rows = []
    for b in found[:FIRST_SCREEN_KEYS]:
        node = esc(b.node or "?")
        faults = "<br>".join(f"<b>{esc(f.name)}</b> {esc(f.detail)} (nodes {esc(', '.join(f.nodes) or '?')}; "
                             f"{f.start:.2f}-{f.stop:.2f}s)" for f in b.faults) or "no fault active"
        rows.append(f"<tr><td><b>{esc(b.key)}</b></td><td><code>{esc(b.words)}</code></td>"
                    f"<td>completed at <b>{b.ret:.3f}s</b> (invoked {b.call:.3f}s)</td><td>served by <b>{node}</b></td>"
                    f"<td>{faults}</td></tr>")
    if len(found) > FIRST_SCREEN_KEYS:
        later = ", ".join(f"{b.key} ({b.ret:.2f}s)" for b in found[FIRST_SCREEN_KEYS:])
        rows.append(f"<tr><td colspan=5>and {len(found) - FIRST_SCREEN_KEYS} more keys later: {esc(later)}</td></tr>")
    first = found[0]
    steps = "\n".join(f"  {s.words:<28} {s.call:8.3f}s .. {'?' if s.ret is None else f'{s.ret:.3f}s':>9}  "
                      f"via {s.node or '?'}" for s in first.minimal)
    why = (f"<p>Why {esc(first.key)} is not linearizable at {first.ret:.3f}s: no order of these operations "
           f"(each taking effect between its invoke and its completion) explains what they returned:</p>"
           f"<pre>{esc(steps)}</pre>") if steps else ""
    return ("<div id=found><h2>Where it broke</h2><p>Earliest operation at which each key's history stopped "
            "being linearizable:</p><table><tr><th>key</th><th>bad operation</th><th>when</th><th>node</th>"
            f"<th>faults active then</th></tr>{''.join(rows)}</table>{why}</div>")


def _files_html(run: RunDir) -> str:
    links = []
    for path in sorted(p for p in run.path.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and p.name != "report.html" and not p.name.endswith(".tmp")):
        rel = path.relative_to(run.path).as_posix()
        links.append(f'<a href="{esc(urllib.parse.quote(rel))}">{esc(rel)}</a> <small>({path.stat().st_size:,} B)</small>')
    return "<h2>Files of this run</h2><p class=files>" + " ".join(links) + "</p>"


def _to_find(results: dict[str, Any]) -> tuple[str, list[str]]:
    """(model, keys to search): the checker's failing key first, then the ones it left unsettled."""
    wl = results.get("checkers", {}).get("workload", {})
    if wl.get("valid") is not False:
        return "", []
    keys = [wl["counterexample"]["partition"]] if "counterexample" in wl else []
    keys += [k for k in wl.get("unsettled", {}) if k not in keys]
    return str(wl.get("model", "")), keys


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
    model, keys = _to_find(results)
    found = locate(history, model, keys, intervals) if model and keys else []
    marks = [(b.ret, b.key) for b in found]
    verdict = results.get("valid")
    nemesis = ",".join(campaign.get("nemesis", [])) or "none"
    out = [f"<!doctype html><meta charset=utf-8><title>raftlab {esc(campaign.get('workload'))} "
           f"{esc(_verdict_text(verdict))}</title><style>{CSS}</style>",
           f"<h1>raftlab campaign: {esc(campaign.get('workload'))} on {esc(campaign.get('system', 'dtkv'))}</h1>",
           f'<p><span class="badge {_verdict_class(verdict)}">{esc(_verdict_text(verdict))}</span> '
           f"<span class=meta>&nbsp; nemesis <b>{esc(nemesis)}</b> &nbsp; seed <b>{esc(campaign.get('seed'))}</b>"
           f" &nbsp; {esc(results.get('duration_seconds', '?'))} s &nbsp; {len(history)} events"
           f" &nbsp; node args {esc(' '.join(campaign.get('node_args', [])) or 'none')}</span></p>"]
    if results.get("error"):
        out.append(f"<p class=bad>Could not complete: {esc(results['error'].get('message'))}</p>")
    if found:  # first: where it broke must be on the first screen
        out.append(_findings_html(found))
    reasons = results.get("reasons") or []
    wl_text = results.get("checkers", {}).get("workload", {}).get("explanation")
    if wl_text and not any(wl_text in r for r in reasons):  # the workload's own account (lock holds,
        out.append(f"<h2>Workload result</h2><pre>{esc(wl_text)}</pre>")  # watcher lag, expiry delays)
    if reasons:
        out.append("<h2>Reasons</h2>" + "".join(f"<pre>{esc(r)}</pre>" for r in reasons))
    out.append(_files_html(run))
    membership = members.changes(history)
    if membership:  # only under the member nemesis
        out.append(members.section_html(membership, t_end))
    fs = [f for f, _ in Counter(i.f for i, _ in pairs).most_common()]
    legend = "".join(f'<span style="color:{c}">&#9679; {k}</span>' for k, c in plots.COLORS.items())
    legend += "".join(f'<span style="background:{esc(p.get("color"))}">&nbsp;{esc(p["name"])}&nbsp;</span>'
                      for p in perf)
    if marks:
        legend += '<span style="color:#c00000">┆ violation (when its bad operation completed)</span>'
    out.append(f"<h2>Latency by operation</h2><div class=legend>{legend} (answer: a definite no, e.g. cas mismatch)</div>")
    for f in fs:
        out.append(f"<h3>{esc(f)}</h3>" + plots.latency_svg([p for p in pairs if p[0].f == f], intervals, t_end, marks))
    qlegend = "".join(f'<span style="color:{c}">&#9473; {n}</span>' for n, _, c in plots.QUANTILES)
    out.append(f"<h2>Latency quantiles per second</h2><div class=legend>{qlegend}</div>"
               f"{plots.quantiles_svg(pairs, intervals, t_end, marks)}")
    qrows = "".join(f"<tr><td>{esc(f)}</td><td>{n}</td>" + "".join(f"<td>{v:.1f}</td>" for v in q) + "</tr>"
                    for f, n, q in plots.quantile_rows(pairs, fs))
    out.append("<table><tr><th>operation</th><th>completed</th>" + "".join(f"<th>{n} ms</th>" for n, _, _ in plots.QUANTILES)
               + f"</tr>{qrows}</table>")
    flegend = "".join(f'<span style="color:{c}">&#9473; {esc(f)}</span>' for f, c in plots.f_colors(fs).items())
    out.append(f"<h2>Throughput by operation</h2><div class=legend>{flegend}</div>"
               f"{plots.throughput_svg(pairs, intervals, t_end, marks, fs)}")
    rows = "".join(f"<tr><td><pre style='margin:0;background:none;padding:0'>{esc(n)}</pre></td><td>{yes}</td>"
                   f"<td>{no}</td><td>{(100 * yes / t if t else 0):.1f}%</td></tr>"
                   for n, yes, no, t in availability(pairs, history, intervals))
    out.append("<h2>Availability</h2><p>Answered: ok, or a definite answer (a cas refused because the value "
               "differed). Unanswered: any other fail, a timeout or unknown outcome.</p><table><tr><th>phase</th>"
               f"<th>answered</th><th>unanswered</th><th>available</th></tr>{rows}</table>")
    recovery = results.get("checkers", {}).get("recovery", {})
    if "seconds" in recovery:
        out.append(f"<p>Recovery after healing: <b>{esc(recovery['seconds'])} s</b> "
                   f"({'healthy' if recovery.get('healthy') else 'NOT healthy at the timeout'}).</p>")
    out.append("<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>explanation / data</th></tr>")
    for name, res in results.get("checkers", {}).items():
        details = {k: v for k, v in res.items() if k not in ("valid", "explanation")}
        body = f"<pre>{esc(res['explanation'])}</pre>" if res.get("explanation") else ""
        if details:
            body += f"<details><summary>data</summary><pre>{esc(json.dumps(details, indent=1, default=str)[:20000])}</pre></details>"
        out.append(f"<tr><td>{esc(name)}</td><td class={_verdict_class(res.get('valid'))}>"
                   f"{esc(_verdict_text(res.get('valid')))}</td><td>{body}</td></tr>")
    out.append("</table>")
    if (run.path / "timeline.html").exists():
        out.append('<h2>Timeline</h2><p><a href="timeline.html">timeline.html</a>: every key\'s operations, '
                   'one key at a time, with the linearization on hover.</p><iframe src="timeline.html"></iframe>')
    out.append("<h2>Nemesis</h2><table><tr><th>time (s)</th><th>f</th><th>value</th><th>error</th></tr>")
    for op in history:
        if op.process == NEMESIS and op.type is not OpType.INVOKE:
            out.append(f"<tr><td>{op.time / 1e9:.2f}</td><td>{esc(op.f)}</td><td>{esc(json.dumps(op.value, default=str))}</td>"
                       f"<td class=bad>{esc(op.error or '')}</td></tr>")
    out.append("</table><h2>Campaign</h2><table>")
    out.extend(f"<tr><td>{esc(k)}</td><td>{esc(json.dumps(v))}</td></tr>" for k, v in sorted(campaign.items()))
    out.append(f"</table><p>Replay: <code>raftlab replay {esc(run.path)}</code></p>")
    return "\n".join(out)


def write_history_text(history: Sequence[Op], path: Path) -> None:
    """history.txt: one aligned line per event, seconds since the start, the node, latency on completions."""
    opened: dict[object, int] = {}
    with path.open("w", encoding="utf-8") as fh:
        fh.write(f"# {len(history)} events; time in seconds since the run started; node: the node that served it\n")
        fh.write(f"{'time':>10}  {'process':<8} {'node':<5} {'type':<7} {'f':<16} {'key':<8} value\n")
        for op in history:
            node = str(op.extra.get("node", "")) if op.extra else ""
            tail = f"  ({op.error})" if op.error else ""
            if op.type is OpType.INVOKE:
                opened[op.process] = op.time
            elif op.process in opened:
                tail += f"  [{(op.time - opened.pop(op.process)) / 1e6:.1f} ms]"
            fh.write(f"{op.time / 1e9:10.3f}  {op.process!s:<8} {node:<5} {op.type.value:<7} {op.f:<16} "
                     f"{'' if op.key is None else str(op.key):<8} {json.dumps(op.value, default=str)}{tail}\n")


def write_timeline(run: RunDir, history: History, result: Any, perf: Sequence[dict[str, Any]], title: str) -> Path:
    """timeline.html for a checked run: every key, with the keys the checker left unsearched settled."""
    from raftlab.checker.visualize import render_html

    faults = fault_intervals(list(history), perf, max([op.time for op in history] + [1]))
    path = run.path / "timeline.html"
    path.write_text(render_html(history, settle(history, result), faults=faults, title=title), encoding="utf-8")
    return path


def write(run: RunDir) -> str:
    """Render and write ``report.html`` (and ``history.txt``); returns the report's path."""
    with contextlib.suppress(HistoryError):
        write_history_text(list(History.read(run.history, validate=False)), run.path / "history.txt")
    html = render(run)
    tmp = run.report.with_name(f".report.{os.getpid()}.html")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(run.report)
    return str(run.report)
