"""Render a violation's timeline page in headless Chromium and save a PNG, to look at it as a user would.

Usage: .venv/bin/python bench/report_screenshot.py [HISTORY] [--model M] [--out PNG]
(default: Knossos's cas-register/bad/cas-failure.edn from ../shared/histories).
Needs Debian's `chromium`; nothing in the test suite depends on it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from raftlab.checker import check
from raftlab.checker.visualize import render_html

from raftlab import formats

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "histories" / "knossos" / "cas-register" / "bad" / "cas-failure.edn"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("history", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--model", default="cas-register")
    ap.add_argument("--out", type=Path, default=Path("timeline.png"))
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("needs chromium (apt-get install chromium)")
    history = formats.read_history(args.history)
    opts = {"initial_value": 0, "nil_reads_unknown": True} if args.model == "cas-register" else {}
    result = check(history, args.model, **opts)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "timeline.html"
        page.write_text(render_html(history, result, title=args.history.name), encoding="utf-8")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp}/profile", "--window-size=1200,900",
                        f"--screenshot={args.out.resolve()}", page.as_uri()],
                       check=True, capture_output=True, timeout=60)
    print(f"{args.history.name}: {result.valid}; screenshot in {args.out}")


if __name__ == "__main__":
    main()
