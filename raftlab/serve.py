"""``raftlab serve``: browse a store of runs in a web browser (Jepsen's ``serve``), standard library only.

``/`` lists every run directory under the store (``<workload>/<timestamp>/campaign.json``), newest
first, with its workload, system, nemesis, seed, verdict, duration and start time; a filter box
and a verdict chooser narrow the list in the page. ``/runs/<workload>/<timestamp>/<file>`` serves
any file of a run (the report, the timeline, the history, node logs); a directory URL lists its
files.

Safety: it binds to loopback unless told otherwise, serves only GET and HEAD, and serves nothing
outside the store: every path is resolved (symlinks included) and must stay inside the store's
resolved root, else 404 (``..`` in a URL is refused with 400 before any lookup).
"""

from __future__ import annotations

import html
import json
import mimetypes
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TEXT_SUFFIXES = {".jsonl", ".log", ".txt", ".out", ".json", ".edn"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRow:
    """One run as the index shows it."""

    path: str  # relative to the store, with "/"
    workload: str
    system: str
    nemesis: str
    seed: str
    verdict: str
    duration: str
    started: str


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs(store: Path) -> list[RunRow]:
    """Every run directory under ``store`` (``store/latest`` is a link to one, so it is skipped)."""
    rows = []
    for campaign_file in store.glob("*/*/campaign.json"):
        run = campaign_file.parent
        if run.parent.name == "latest" or campaign_file.parent.is_symlink():
            continue
        c, r = _read(campaign_file), _read(run / "results.json")
        verdict = {True: "valid", False: "INVALID", "unknown": "unknown"}.get(r.get("valid"), "no verdict")  # type: ignore[arg-type]
        if r.get("error"):
            verdict = "incomplete"
        rows.append(RunRow(path=run.relative_to(store).as_posix(), workload=str(c.get("workload", run.parent.name)),
                           system=str(c.get("system", "dtkv")), nemesis=",".join(c.get("nemesis", [])) or "none",
                           seed=str(c.get("seed", "")), verdict=verdict,
                           duration=f"{r['duration_seconds']:.1f}s" if isinstance(r.get("duration_seconds"), int | float) else "",
                           started=str(r.get("started", run.name))))
    return sorted(rows, key=lambda row: (row.started, row.path), reverse=True)


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222} table{border-collapse:collapse}
td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left} .INVALID{color:#c02020;font-weight:bold}
.valid{color:#2a7a2a} .unknown,.incomplete{color:#b07000} #bar{margin:8px 0} input{width:320px}"""

_FILTER_JS = """
const q = document.getElementById('q'), v = document.getElementById('verdict');
function apply() {
  const words = q.value.toLowerCase().split(/\\s+/).filter(Boolean); let shown = 0;
  for (const tr of document.querySelectorAll('tbody tr')) {
    const text = tr.textContent.toLowerCase();
    const ok = words.every((w) => text.includes(w)) && (!v.value || tr.dataset.verdict === v.value);
    tr.style.display = ok ? '' : 'none'; shown += ok;
  }
  document.getElementById('count').textContent = shown + ' shown';
}
q.addEventListener('input', apply); v.addEventListener('change', apply); apply();
"""


def index_html(store: Path) -> str:
    rows = list_runs(store)
    e = html.escape
    body = "".join(
        f"<tr data-verdict='{e(r.verdict)}'><td><a href='/runs/{e(urllib.parse.quote(r.path))}/report.html'>{e(r.path)}</a>"
        f"</td><td>{e(r.workload)}</td><td>{e(r.system)}</td><td>{e(r.nemesis)}</td><td>{e(r.seed)}</td>"
        f"<td class='{e(r.verdict)}'>{e(r.verdict)}</td><td>{e(r.duration)}</td><td>{e(r.started)}</td>"
        f"<td><a href='/runs/{e(urllib.parse.quote(r.path))}/'>files</a></td></tr>" for r in rows)
    verdicts = "".join(f"<option>{v}</option>" for v in ("INVALID", "valid", "unknown", "incomplete", "no verdict"))
    return (f"<!doctype html><meta charset=utf-8><title>raftlab runs</title><style>{_CSS}</style>"
            f"<h1>raftlab runs in {e(str(store))}</h1><div id=bar><input id=q placeholder='filter: workload, "
            f"system, nemesis, seed, date...' autofocus> <select id=verdict><option value=''>any verdict</option>"
            f"{verdicts}</select> <span id=count></span> of {len(rows)}</div><table><thead><tr><th>run</th>"
            "<th>workload</th><th>system</th><th>nemesis</th><th>seed</th><th>verdict</th><th>duration</th>"
            f"<th>started</th><th></th></tr></thead><tbody>{body}</tbody></table><script>{_FILTER_JS}</script>")


def listing_html(directory: Path, url: str) -> str:
    e = html.escape
    items = "".join(f"<li><a href='{e(urllib.parse.quote(p.name))}{'/' if p.is_dir() else ''}'>{e(p.name)}"
                    f"{'/' if p.is_dir() else ''}</a></li>" for p in sorted(directory.iterdir()))
    return f"<!doctype html><meta charset=utf-8><title>{e(url)}</title><h1>{e(url)}</h1><p><a href='/'>all runs</a></p><ul>{items}</ul>"


def resolve(store: Path, url_path: str) -> Path | None:
    """The file or directory ``/runs/<url_path>`` names, or None when it is outside the store."""
    root = store.resolve()
    target = (root / url_path).resolve()
    return target if target.is_relative_to(root) and target.exists() else None


class Handler(BaseHTTPRequestHandler):
    store: Path  # set on the subclass made by make_server
    server_version = "raftlab-serve"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per request
        return

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, "text/html; charset=utf-8", index_html(self.store).encode(), head)
        if ".." in path.split("/") or "\\" in path:
            return self._send(HTTPStatus.BAD_REQUEST, "text/plain; charset=utf-8", b"'..' is not allowed\n", head)
        if not path.startswith("/runs/"):
            return self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n", head)
        target = resolve(self.store, path[len("/runs/"):])
        if target is None:
            return self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found in the store\n", head)
        if target.is_dir():
            if not path.endswith("/"):
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", urllib.parse.quote(path) + "/")
                self.end_headers()
                return None
            page = listing_html(target, path)
            return self._send(HTTPStatus.OK, "text/html; charset=utf-8", page.encode(), head)
        kind = "text/plain; charset=utf-8" if target.suffix in TEXT_SUFFIXES else (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        if kind == "text/html":
            kind += "; charset=utf-8"
        return self._send(HTTPStatus.OK, kind, target.read_bytes(), head)

    def _send(self, status: HTTPStatus, kind: str, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def make_server(store: Path, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for ``store`` (not started: call ``serve_forever``); port 0 picks a free one."""
    handler = type("StoreHandler", (Handler,), {"store": store})
    return ThreadingHTTPServer((host, port), handler)
