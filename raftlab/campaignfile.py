"""Campaign files: a campaign as TOML you can review like config, a matrix of them, and repeats.

``raftlab run --campaign FILE.toml`` reads a file whose keys are the ``raftlab run`` flags
(``time-limit = 30`` or ``time_limit = 30``; ``nemesis = ["kill", "partition"]`` or
``"kill,partition"``; ``node-args`` a list; the ``*-opt`` flags are tables ``[workload-opts]``,
``[system-opts]``, ``[lab-opts]``, ``[nemesis-opts]``), plus the run-level keys ``repeat``,
``until-fail``, ``swarm``, ``quiet`` and ``junit``. A flag given on the command line overrides the
file. A ``[matrix]`` table lists values for ``workload`` and/or ``nemesis`` (a list of fault
lists): every combination is run, as Jepsen's ``test-all``, with one summary.

Everything here is pure: ``load`` parses and validates (an unknown key or a bad value is one
error naming the file and the key), ``expand`` turns a ``Plan`` into the campaigns to run in
order (matrix x repeats, seeds ``seed, seed + 1, ...`` for each combination), and ``summarize``
folds outcomes into a verdict table with the failing seeds (``write_summary`` stores it as
``<store>/summaries/<timestamp>.json``). Each run stores its resolved
campaign (``campaign.json``, every field) and the file it came from (``campaign-file.toml``), so
``raftlab replay RUN_DIR`` runs exactly it again.
"""

from __future__ import annotations

import itertools
import json
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from raftlab.checker import merge_valid
from raftlab.runner import EXIT, EXIT_INCOMPLETE, Campaign, CampaignError

RUN_KEYS = ("repeat", "until_fail", "swarm", "quiet", "junit")
TABLES = ("workload_opts", "system_opts", "lab_opts", "nemesis_opts")
LISTS = ("nemesis", "node_args")


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A campaign file, resolved: the campaign's fields, the matrix axes, and how often to run."""

    fields: Mapping[str, Any]
    matrix: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    repeat: int = 1
    until_fail: bool = False
    swarm: bool = False
    quiet: bool = False
    junit: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise CampaignError(f"repeat must be at least 1, not {self.repeat}")


def _key(raw: str) -> str:
    return raw.replace("-", "_")


def _as_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "none")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v != "none")
    raise CampaignError(f"{name.replace('_', '-')} must be a list of strings or a comma-separated string")


def resolve(data: Mapping[str, Any], *, where: str = "the campaign") -> Plan:
    """A Plan from parsed TOML (or any mapping); names the key that is wrong."""
    known = {f.name for f in fields(Campaign)}
    values: dict[str, Any] = {}
    run: dict[str, Any] = {}
    matrix: dict[str, tuple[Any, ...]] = {}
    for raw, value in data.items():
        key = _key(raw)
        if key == "matrix":
            if not isinstance(value, dict):
                raise CampaignError(f"{where}: [matrix] must be a table")
            for axis, options in value.items():
                axis = _key(axis)
                if axis not in ("workload", "nemesis") or not isinstance(options, list) or not options:
                    raise CampaignError(f"{where}: matrix.{axis} must be a non-empty list, and only workload "
                                        "and nemesis can vary")
                matrix[axis] = tuple(_as_list("nemesis", o) if axis == "nemesis" else str(o) for o in options)
        elif key in RUN_KEYS:
            run[key] = value
        elif key in TABLES:
            if not isinstance(value, dict):
                raise CampaignError(f"{where}: {raw} must be a table")
            values[key] = {_key(k): v for k, v in value.items()}
        elif key in LISTS:
            values[key] = _as_list(key, value)
        elif key in known:
            values[key] = value
        else:
            raise CampaignError(f"{where}: unknown key {raw!r} (keys are the `raftlab run` flags)")
    try:
        return Plan(fields=values, matrix=matrix, repeat=int(run.get("repeat", 1)),
                    until_fail=bool(run.get("until_fail", False)), swarm=bool(run.get("swarm", False)),
                    quiet=bool(run.get("quiet", False)), junit=run.get("junit"))
    except (TypeError, ValueError) as e:
        raise CampaignError(f"{where}: {e}") from None


def load(path: str | Path) -> Plan:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as e:
        raise CampaignError(f"cannot read campaign file {p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise CampaignError(f"campaign file {p} is not valid TOML: {e}") from None
    return replace(resolve(data, where=str(p)), source=text)


def expand(plan: Plan, seed: int) -> list[Campaign]:
    """Every campaign the plan runs, in order: each matrix combination, ``repeat`` times."""
    workloads = plan.matrix.get("workload", (plan.fields.get("workload", "register"),))
    nemeses = plan.matrix.get("nemesis", (tuple(plan.fields.get("nemesis", ())),))
    out = []
    for workload, nemesis in itertools.product(workloads, nemeses):
        for i in range(plan.repeat):
            try:
                out.append(Campaign(**{**plan.fields, "workload": workload, "nemesis": tuple(nemesis),
                                       "seed": seed + i}))
            except TypeError as e:
                raise CampaignError(f"bad campaign: {e}") from None
    return out


def combination(c: Campaign) -> str:
    return f"{c.workload} x {','.join(c.nemesis) or 'none'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """What a summary keeps of one run."""

    campaign: Campaign
    verdict: bool | str | None
    exit_code: int
    run_dir: str


def summarize(records: Sequence[RunRecord]) -> dict[str, Any]:
    """Verdicts per combination, the seeds that failed, and the exit code of the whole plan.

    Exit: 1 if any run found a violation, else 2 if any could not complete, else 3 if any was
    unknown, else 0.
    """
    by: dict[str, dict[str, Any]] = {}
    for r in records:
        entry = by.setdefault(combination(r.campaign), {"runs": 0, "valid": 0, "invalid": 0, "unknown": 0,
                                                          "incomplete": 0, "failing_seeds": [], "run_dirs": []})
        entry["runs"] += 1
        entry["run_dirs"].append(r.run_dir)
        kind = ("incomplete" if r.exit_code == EXIT_INCOMPLETE else
                {True: "valid", False: "invalid"}.get(r.verdict, "unknown"))  # type: ignore[arg-type]
        entry[kind] += 1
        if kind == "invalid":
            entry["failing_seeds"].append(r.campaign.seed)
    codes = [r.exit_code for r in records]
    exit_code = (EXIT[False] if EXIT[False] in codes else EXIT_INCOMPLETE if EXIT_INCOMPLETE in codes
                 else EXIT["unknown"] if EXIT["unknown"] in codes else 0)
    verdicts = [r.verdict if r.verdict in (True, False, "unknown") else "unknown" for r in records]
    return {"runs": len(records), "valid": merge_valid(verdicts) if records else "unknown", "exit_code": exit_code,
            "combinations": by,
            "failing_seeds": sorted({r.campaign.seed for r in records if r.verdict is False})}


def describe(summary: Mapping[str, Any]) -> str:
    lines = [f"summary: {summary['runs']} runs"]
    for name, e in summary["combinations"].items():
        seeds = f"; failing seeds {', '.join(map(str, e['failing_seeds']))}" if e["failing_seeds"] else ""
        lines.append(f"  {name}: {e['valid']} valid, {e['invalid']} invalid, {e['unknown']} unknown, "
                     f"{e['incomplete']} incomplete of {e['runs']}{seeds}")
    return "\n".join(lines)


def write_summary(store: str, summary: Mapping[str, Any]) -> Path:
    """``<store>/summaries/<timestamp>.json``: the summary of a repeated or matrix run."""
    folder = Path(store) / "summaries"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = folder / f"{stamp}.json"
    n = 1
    while path.exists():
        path, n = folder / f"{stamp}-{n}.json", n + 1
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path
