"""report.html is rebuilt from a run directory alone and shows faults, outcomes and verdicts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from raftlab import findings, report, store
from raftlab.history import NEMESIS, History, Op, OpType


def ev(process: object, type_: str, f: str, t: float, value: object = None, error: str | None = None) -> Op:
    return Op(type=OpType(type_), process=process, f=f, value=value, error=error, time=int(t * 1e9))  # type: ignore[arg-type]


def make_run(tmp_path: Path) -> store.RunDir:
    run = store.new_run(tmp_path, "register", {"seed": 3, "workload": "register"})
    events = [ev(0, "invoke", "write", 0.1, 1), ev(0, "ok", "write", 0.12, 1),
              ev(NEMESIS, "invoke", "kill", 1.0, "one"), ev(NEMESIS, "info", "kill", 1.1, {"done": ["n2"]}),
              ev(1, "invoke", "read", 1.5), ev(1, "fail", "read", 1.6),
              ev(4, "invoke", "cas", 1.62, [3, 4]), ev(4, "fail", "cas", 1.63, error="cas mismatch: found 1"),
              ev(2, "invoke", "write", 1.7, 2), ev(2, "info", "write", 2.7, error="timeout"),
              ev(NEMESIS, "invoke", "start", 3.0), ev(NEMESIS, "info", "start", 3.2, {"done": ["n2"]}),
              ev(NEMESIS, "invoke", "wait-healthy", 3.3),
              ev(NEMESIS, "info", "wait-healthy", 3.9, {"healthy": True, "seconds": 0.6}),
              ev(3, "invoke", "read", 4.0), ev(3, "ok", "read", 4.01, 1)]
    History(events).write(run.history)
    run.write_results({"valid": False, "reasons": ["workload: read 1 is stale"], "perf": [
        {"name": "kill", "start": ["kill"], "stop": ["start"], "color": "#E9A4A0"}],
        "checkers": {"workload": {"valid": False, "explanation": "read 1 is stale"},
                     "recovery": {"valid": True, "explanation": "", "healthy": True, "seconds": 0.6}}})
    (run.path / "timeline.html").write_text("<html><body>TIMELINE-MARKER</body></html>")
    return run


def test_report_shows_faults_outcomes_verdicts_and_the_timeline(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    html = Path(report.write(run)).read_text()
    assert "INVALID" in html and "read 1 is stale" in html
    shaded = re.findall(r'<rect x="[\d.]+" y="\d+" width="[\d.]+" height="\d+" fill="#E9A4A0"', html)
    assert len(shaded) == 5  # the kill interval on latency (write, read, cas), quantiles and throughput
    assert html.count('fill="#3a9b3a"') >= 2 and 'fill="#d03a3a"' in html and 'fill="#e8a33a"' in html
    assert '<iframe src="timeline.html">' in html and "0.6 s" in html
    assert '<pre>workload: read 1 is stale</pre>' in html  # explanations keep their line breaks
    for name in ("history.jsonl", "history.txt", "results.json", "campaign.json", "timeline.html"):
        assert f'href="{name}"' in html
    assert (run.path / "history.txt").read_text().count("\n") == 2 + 16
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script src" not in html


def test_availability_splits_faulty_and_final_phases(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    history = list(History.read(run.history))
    pairs = findings.pair(history)
    rows = {name.strip(): (yes, no) for name, yes, no, _ in
            report.availability(pairs, history, findings.fault_intervals(history, [
                {"name": "kill", "start": ["kill"], "stop": ["start"]}], 5 * 10**9))}
    # the refused cas is an answer; the failed read and the timed-out write are not
    assert rows["workload (faults running)"] == (2, 2)
    assert rows["while a fault was active"] == (1, 2)
    assert rows["final (after healing)"] == (1, 0)


def test_report_command_rebuilds_and_names_a_bad_directory(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    cli = [str(Path(sys.executable).parent / "raftlab"), "report"]
    done = subprocess.run([*cli, str(run.path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and run.report.exists()
    bad = subprocess.run([*cli, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no campaign.json" in bad.stderr and "Traceback" not in bad.stderr


def test_the_first_section_places_each_violation_in_time(tmp_path: Path) -> None:
    from tests.campaign.test_findings import PERF, history

    run = store.new_run(tmp_path, "register", {"seed": 4, "workload": "register", "nemesis": ["partition"]})
    history().write(run.history)
    run.write_results({"valid": False, "reasons": ["workload: not linearizable: partition a\n  p2 a: read() -> 1"],
                       "perf": PERF, "checkers": {"workload": {
                           "valid": False, "model": "kv", "explanation": "not linearizable: partition a",
                           "counterexample": {"partition": "a"}, "unsettled": {"b": "x", "c": "y"}}}})
    html = Path(report.write(run)).read_text()
    found = html[html.index("<div id=found>"):html.index("</div>", html.index("<div id=found>"))]
    rows = re.findall(r"<tr><td><b>(\w+)</b></td><td><code>(.*?)</code></td><td>completed at <b>([\d.]+)s</b>"
                      r".*?served by <b>(\w+)</b></td><td>(.*?)</td></tr>", found)
    assert [(k, w, s, n) for k, w, s, n, _ in rows] == [("a", "a: read() -&gt; 1", "3.200", "n3"),
                                                        ("c", "c: read() -&gt; null", "6.100", "n3")]
    assert "<b>partition</b> n3 | n1 n2" in rows[0][4] and rows[1][4] == "no fault active"
    assert html.count('class="violation"') == 2 * (3 + 2)  # both marked on 3 latency, quantile, throughput plots
    assert "<pre>workload: not linearizable: partition a\n  p2 a: read() -&gt; 1</pre>" in html
