"""Where runs live on disk: ``store/<workload>/<timestamp>/``, and ``store/latest``.

Layout of one run directory (each file written by the step named)::

    campaign.json   every option and the seed, written before anything runs (replay reads it)
    history.jsonl   one event per line, appended as it happens (raftlab.history.HistoryWriter)
    results.json    the verdict per checker, counts, seed, versions (written after checking)
    report.html     the self-contained report (raftlab.report)
    nodes/<host>/   the node logs collected from each host

``store/latest`` is a relative symlink to the newest run directory, replaced atomically. A run
directory is never reused: two runs in the same second get ``-1``, ``-2`` suffixes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STORE = "store"


class StoreError(Exception):
    """A run directory that cannot be created or read; the message names the path."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDir:
    """The paths of one stored run."""

    path: Path

    @property
    def campaign(self) -> Path:
        return self.path / "campaign.json"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def node_dir(self, host: str) -> Path:
        return self.path / "nodes" / host

    def read_campaign(self) -> dict[str, Any]:
        return _read_json(self.campaign)

    def read_results(self) -> dict[str, Any]:
        return _read_json(self.results)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.results, results)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist (is {path.parent} a run directory?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise StoreError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (temp file, fsync, rename) so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def new_run(store: str | os.PathLike[str], workload: str, campaign: dict[str, Any],
            *, now: float | None = None) -> RunDir:
    """Create ``store/<workload>/<timestamp>/`` and write ``campaign.json`` into it."""
    if not workload or "/" in workload or workload.startswith("."):
        raise StoreError(f"workload name {workload!r} cannot name a directory")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(time.time() if now is None else now))
    parent = Path(store) / workload
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            path = parent / (stamp if n == 0 else f"{stamp}-{n}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise StoreError(f"too many runs named {stamp} in {parent}")
    except OSError as e:
        raise StoreError(f"cannot create a run directory under {parent}: {e.strerror or e}") from None
    run = RunDir(path=path)
    write_json(run.campaign, campaign)
    return run


def set_latest(store: str | os.PathLike[str], run: RunDir) -> Path:
    """Point ``store/latest`` at ``run`` (a relative link, replaced atomically)."""
    link = Path(store) / "latest"
    tmp = Path(store) / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run.path, Path(store)), tmp)
    tmp.replace(link)
    return link


def open_run(path: str | os.PathLike[str]) -> RunDir:
    """An existing run directory (``store/latest`` works too); StoreError if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise StoreError(f"{p} is not a directory")
    run = RunDir(path=p.resolve())
    if not run.campaign.exists():
        raise StoreError(f"{p} is not a run directory (no campaign.json)")
    return run
