"""How long the timeline page of a big history takes to open and to answer a hover in headless Chromium.

Usage: .venv/bin/python bench/timeline_open.py [--ops 100000] [--out DIR]
Prints the page size, the checker's time, the seconds to the load event and to the hover's
tooltip. Needs Debian's chromium. The history is linearizable by construction: ``big_history``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raftlab.history import History, Op, OpType  # noqa: E402


def big_history(n_ops: int, keys: int = 10) -> History:
    """``n_ops`` operations on ``keys`` keys, three at a time (a write and two reads), linearizable:
    the first read returns the value before the write, the second the value written."""
    events: list[Op] = []
    last: dict[str, int | None] = {}
    for b in range(n_ops // 3):
        key, t = f"k{b % keys}", 1000 * (b + 1)
        p = [3 * (b % 4) + j for j in range(3)]
        events += [Op(type=OpType.INVOKE, process=p[0], f="write", key=key, value=b, time=t),
                   Op(type=OpType.INVOKE, process=p[1], f="read", key=key, time=t + 100),
                   Op(type=OpType.INVOKE, process=p[2], f="read", key=key, time=t + 200),
                   Op(type=OpType.OK, process=p[0], f="write", key=key, value=b, time=t + 600),
                   Op(type=OpType.OK, process=p[1], f="read", key=key, value=last.get(key), time=t + 700),
                   Op(type=OpType.OK, process=p[2], f="read", key=key, value=b, time=t + 800)]
        last[key] = b
    return History(events)


def main() -> None:
    from raftlab.checker import check
    from raftlab.checker.visualize import render_html

    from tests.browser import SKIP_REASON, Browser

    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=None, help="keep the page and a screenshot here")
    args = ap.parse_args()
    binary = Browser.find()
    if binary is None:
        sys.exit(SKIP_REASON)
    history = big_history(args.ops)
    started = time.monotonic()
    result = check(history, "kv", time_limit=300)
    checked = time.monotonic() - started
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        page = out / "timeline.html"
        page.write_text(render_html(history, result, title=f"{args.ops} operations"), encoding="utf-8")
        size = page.stat().st_size
        browser = Browser(binary, Path(tmp) / "profile")
        try:
            opened = browser.goto(page.as_uri())
            started = time.monotonic()
            at = browser.js("window.raftlabTimeline.opCenter(0)")
            browser.hover(at["x"], at["y"])
            tip = browser.js("document.getElementById('tip').textContent")
            hovered = time.monotonic() - started
            browser.screenshot(out / "timeline.png")
        finally:
            browser.close()
    print(f"{result.operations} operations, {len(result.partitions)} keys, verdict {result.valid}, checked in {checked:.2f}s")
    print(f"page {size / 1e6:.1f} MB: opened in {opened:.2f}s; hover answered in {hovered:.3f}s "
          f"({'tooltip shown' if 'linearized #' in tip else 'NO tooltip'})")


if __name__ == "__main__":
    main()
