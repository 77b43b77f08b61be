"""The report, the timeline and ``raftlab serve`` used in a real headless Chromium (tests/browser.py),
and ``serve``'s own promises (loopback, nothing outside the store) over plain HTTP.

Screenshots are saved under each test's tmp dir (``*.png``) as artefacts to look at. Skips, with
the reason, when Debian's chromium is not installed (``./dev test`` installs it as root).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from raftlab.checker import check
from raftlab.checker.visualize import render_html

from bench.timeline_open import big_history
from raftlab import report, store
from raftlab.findings import fault_intervals
from raftlab.history import NEMESIS, History, OpType
from raftlab.runner import Campaign, run_campaign
from raftlab.serve import make_server
from tests.browser import SKIP_REASON, Browser
from tests.campaign.needs import need_checker, need_raft_core
from tests.campaign.test_report import make_run
from tests.conftest import ctrl_c_reaches

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = Browser.find()
    if binary is None:
        pytest.skip(SKIP_REASON)
    b = Browser(binary, tmp_path / "profile")
    yield b
    b.close()


def test_a_stale_read_is_placed_in_time_on_the_first_screen(tmp_path: Path, lab_name: str, base_port: int,
                                                            browser: Browser) -> None:
    need_checker()
    need_raft_core()
    c = Campaign(seed=3, lab_name=lab_name, base_port=base_port, store=str(tmp_path / "store"), concurrency=6,
                 time_limit=12.0, interval=1.0, rate=60.0, recovery_timeout=20.0, nemesis=("partition",),
                 node_args=("--unsafe-local-reads",), workload_opts={"keys": 1, "ops_per_key": 60})
    out = asyncio.run(run_campaign(c))
    assert out.verdict is False, out.reasons
    browser.goto(out.run.report.as_uri())
    browser.screenshot(tmp_path / "report-first-screen.png")
    box = browser.js("(() => { const r = document.getElementById('found').getBoundingClientRect();"
                     " return [r.top, r.bottom, innerHeight]; })()")
    assert box[0] >= 0 and box[1] <= box[2], "the findings are not on the first screen"
    row = browser.js("[...document.querySelectorAll('#found tr')][1].innerText")
    m = re.search(r"(\S+)\s+\S+: read\(\) -> (\S+)\s+completed at (\d+\.\d{3})s.*served by (n\d)\s+(\w+)", row, re.S)
    assert m, row
    key, _, second, node, fault = m.groups()
    history = list(History.read(out.run.history))
    served = [op for op in history if op.type is OpType.OK and op.f == "read" and op.key == key
              and f"{op.time / 1e9:.3f}" == second]
    assert served and served[0].extra and served[0].extra["node"] == node  # the page names the serving node
    first_fault = next(op.time for op in history if op.process == NEMESIS)
    calm = [op for op in history if op.f == "write" and op.time < first_fault and op.extra]
    assert len({op.extra["node"] for op in calm if op.type is OpType.INVOKE}) > 1  # sent from every worker
    assert len({op.extra["node"] for op in calm if op.type is OpType.OK}) == 1  # answered by the one leader
    perf = out.results["perf"]
    t = served[0].time
    active = [name for name, _, a, b in fault_intervals(history, perf, history[-1].time) if a <= t <= b]
    assert fault in active or (not active and "no fault" in row)
    assert browser.js("document.querySelectorAll('line.violation').length") >= 5  # marked on every plot
    # follow the link to the timeline, choose a key, hover an operation, jump to the error
    browser.click(*browser.center('a[href="timeline.html"]'))
    deadline = time.monotonic() + 20
    while not str(browser.js("location.href")).endswith("timeline.html") or browser.js("document.readyState") != "complete":
        assert time.monotonic() < deadline, "the timeline link did not open"
        time.sleep(0.1)
    exercise_timeline(browser, tmp_path)


def exercise_timeline(browser: Browser, tmp_path: Path) -> None:
    tl = "window.raftlabTimeline"
    keys = browser.js(f"{tl}.keys()")
    first = browser.js(f"{tl}.current()")
    browser.screenshot(tmp_path / "timeline.png")
    if len(keys) > 1:  # the chooser, with the keyboard: focus it and press the down arrow
        browser.click(*browser.center("#key"))
        browser.key("Escape", "Escape", 27)
        browser.js("document.getElementById('key').focus()")
        browser.key("ArrowDown", "ArrowDown", 40)
        assert browser.js(f"{tl}.current()") == keys[1] != first
        browser.js("document.getElementById('key').value = '0'; document.getElementById('key').dispatchEvent(new Event('change'))")
    ops = browser.js("JSON.parse(document.getElementById('data').textContent).keys[0].ops.map((o) => o[4])")
    target = next(i for i, k in enumerate(ops) if k > 0)
    at = browser.js(f"{tl}.opCenter({target})")
    browser.hover(at["x"], at["y"])
    tip = browser.js("document.getElementById('tip').textContent")
    assert "linearized #" in tip and "state after:" in tip, tip
    browser.screenshot(tmp_path / "timeline-hover.png")
    if browser.js("!document.getElementById('jump').disabled"):
        before = browser.js(f"{tl}.view()")
        browser.click(*browser.center("#jump"))
        after = browser.js(f"{tl}.view()")
        assert after[1] - after[0] < before[1] - before[0]
        browser.screenshot(tmp_path / "timeline-error.png")


OPEN_BOUND = 30.0
"""Seconds the 100k-operation timeline may take to open (generous: it takes about 1-2 s here)."""


def test_a_100k_operation_timeline_opens_and_answers_a_hover(tmp_path: Path, browser: Browser) -> None:
    history = big_history(100_000)
    result = check(history, "kv", time_limit=120)
    assert result.valid is True and result.operations >= 99_999
    page = tmp_path / "big.html"
    page.write_text(render_html(history, result, title="100k"), encoding="utf-8")
    opened = browser.goto(page.as_uri(), timeout=OPEN_BOUND)
    started = time.monotonic()
    at = browser.js("window.raftlabTimeline.opCenter(0)")
    browser.hover(at["x"], at["y"])
    tip = browser.js("document.getElementById('tip').textContent")
    answered = time.monotonic() - started
    print(f"100k-op timeline ({page.stat().st_size / 1e6:.1f} MB): opened in {opened:.2f}s, hover answered in {answered:.2f}s")
    assert "linearized #" in tip and "state after:" in tip
    browser.screenshot(tmp_path / "timeline-100k.png")
    assert opened < OPEN_BOUND


@pytest.fixture
def store_of_50(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    template = make_run(tmp_path / "template")
    for i in range(50):
        workload = ("register", "set")[i % 2]
        run = store.new_run(root, workload, {"seed": 100 + i, "workload": workload, "system": "dtkv",
                                             "nemesis": [("kill", "partition", "pause")[i % 3]]}, now=1.7e9 + i * 60)
        for name in ("history.jsonl", "timeline.html"):
            shutil.copy(template.path / name, run.path / name)
        results = json.loads(template.results.read_text())
        results.update({"valid": (True, False, "unknown")[i % 3], "duration_seconds": 10.0 + i,
                        "started": f"2026-01-01T00:{i:02d}:00"})
        run.write_results(results)
        report.write(run)
    (root / "escape").symlink_to("/etc")  # a link out of the store must not be served
    return root


@pytest.fixture
def served(store_of_50: Path) -> Iterator[str]:
    server = make_server(store_of_50, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_serve_refuses_paths_outside_the_store(served: str) -> None:
    assert _status(f"{served}/") == 200
    assert _status(f"{served}/runs/escape/passwd") == 404
    assert _status(f"{served}/runs/%2e%2e/%2e%2e/etc/passwd") == 400
    assert _status(f"{served}/runs/register/nope/report.html") == 404


def test_serve_lists_50_runs_filters_and_opens_a_report(served: str, browser: Browser, tmp_path: Path) -> None:
    browser.goto(f"{served}/")
    assert browser.js("document.querySelectorAll('tbody tr').length") == 50
    browser.screenshot(tmp_path / "serve-index.png")
    browser.click(*browser.center("#q"))
    browser.page("Input.insertText", text="partition")
    visible = browser.js("[...document.querySelectorAll('tbody tr')].filter((r) => r.style.display !== 'none').length")
    assert visible == len([i for i in range(50) if i % 3 == 1])
    browser.js("document.getElementById('verdict').value = 'INVALID';"
               "document.getElementById('verdict').dispatchEvent(new Event('change'))")
    rows = browser.js("[...document.querySelectorAll('tbody tr')].filter((r) => r.style.display !== 'none')"
                      ".map((r) => r.innerText)")
    assert rows and all("partition" in r and "INVALID" in r for r in rows)
    browser.screenshot(tmp_path / "serve-filtered.png")
    browser.click(*browser.center("tbody tr:not([style*='none']) a"))
    deadline = time.monotonic() + 20
    while "report.html" not in str(browser.js("location.href")) or browser.js("document.readyState") != "complete":
        assert time.monotonic() < deadline, "the report link did not open"
        time.sleep(0.1)
    assert "raftlab campaign" in browser.js("document.querySelector('h1').innerText")
    browser.screenshot(tmp_path / "serve-report.png")


def test_the_serve_command_listens_on_loopback_and_names_a_bad_store(store_of_50: Path, tmp_path: Path) -> None:
    cli = [str(Path(sys.executable).parent / "raftlab"), "serve"]
    bad = subprocess.run([*cli, str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
    proc = subprocess.Popen([*cli, str(store_of_50), "--port", "0"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_reaches)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert m, line
        with urllib.request.urlopen(m.group(1) + "/", timeout=10) as r:
            assert r.read().decode().count("<tr data-verdict") == 50
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0  # Ctrl-C stops it cleanly
