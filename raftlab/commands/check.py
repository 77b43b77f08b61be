"""``raftlab check``: the checker on any history file, one result line per history.

Several histories are checked in forked worker processes, one per core, and reported in the
order given. Exit codes: 0 every history linearizable, 1 some not, 2 bad input or usage, 3 some unknown
(and none illegal). ``--json`` prints one JSON object per history (JSON Lines).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from raftlab.history import HistoryError

EXIT = {True: 0, False: 1, "unknown": 3}


@click.command()
@click.argument("histories", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default="kv", show_default=True,
              help="register, cas-register, kv, kv-append, mutex, multi-register, set, or pkg.module:Class.")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "edn", "jepsen-log"]), default="auto",
              show_default=True, help="History file format; auto detects it.")
@click.option("--initial-value", default=None, metavar="JSON", help="Initial register value (default null).")
@click.option("--nil-reads-unknown", is_flag=True, help="A read that returned null constrains nothing (Knossos).")
@click.option("--time-limit", type=click.FloatRange(min=0.0), default=None, metavar="S",
              help="Seconds per history; past it the verdict is unknown.")
@click.option("--max-memo", type=click.IntRange(min=1000), default=None, metavar="N",
              help="Memory budget: memoised search states per partition; past it the verdict is unknown.")
@click.option("--minimise/--no-minimise", default=True, show_default=True,
              help="Shrink a counterexample to a faithful minimal illegal sub-history.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per history (JSON Lines).")
@click.option("--html", type=click.Path(path_type=Path), default=None, metavar="OUT",
              help="Write the interactive timeline page (one file; several histories: OUT is a folder); "
                   "keys left unsearched after the first illegal one are checked for it (10 s at most).")
def check(histories: tuple[Path, ...], model: str, fmt: str, initial_value: str | None, nil_reads_unknown: bool,
          time_limit: float | None, max_memo: int | None, minimise: bool, as_json: bool, html: Path | None) -> None:
    """Check HISTORY files for linearizability and explain any violation."""
    from raftlab import formats
    from raftlab.checker import ModelError, Result, check_set, merge_valid
    from raftlab.checker import check as run_check
    from raftlab.checker.parallel import map_ordered

    opts: dict[str, Any] = {}
    if initial_value is not None:
        try:
            opts["initial_value"] = json.loads(initial_value)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"not JSON: {e.msg}", param_hint="--initial-value") from None
    if nil_reads_unknown:
        opts["nil_reads_unknown"] = True
    from raftlab.checker.models import make_model

    try:  # a bad model or option is a usage error, found before any history is read
        model_obj = model if model == "set" else make_model(model, **opts)
    except ModelError as e:
        raise click.BadParameter(str(e), param_hint="--model") from None

    def one(path: Path) -> tuple[Any, Any, str | None]:
        """(result, history or None, error line or None) for one file; runs in a worker process."""
        try:
            history = formats.read_history(path, fmt)
            if model_obj == "set":  # not a linearizability model: its own checker
                result = check_set(history)
            else:
                result = run_check(history, model_obj, time_limit=time_limit, max_memo=max_memo, minimise=minimise,
                                   workers=None if len(histories) == 1 else 1)
        except (HistoryError, ModelError) as e:
            where = "" if isinstance(e, HistoryError) and e.source else f"{path}: "
            return None, None, f"error: {where}{e}"
        except Exception as e:  # a crash in the model (yours?) is an unknown verdict, never a pass
            import traceback

            crash = traceback.format_exception_only(type(e), e)[-1].strip()
            return Result(valid="unknown", model=model, explanation=f"the checker crashed: {crash}"), None, None
        return result, history if html is not None else None, None

    verdicts = []
    bad_input = False
    for path, (result, history, error) in zip(histories, map_ordered(one, histories), strict=True):
        if error is not None:
            click.echo(error, err=True)
            bad_input = True
            continue
        verdicts.append(result.valid)
        if as_json:
            click.echo(json.dumps({"file": str(path), **result.to_dict()}, default=str))
        else:
            word = {True: "linearizable", False: "NOT linearizable", "unknown": "unknown"}[result.valid]
            click.echo(f"{path}: {word} ({result.model}, {result.operations} operations, "
                       f"{len(result.partitions)} partitions, {result.elapsed:.3f}s)")
            if result.valid is not True and result.explanation:
                click.echo("  " + result.explanation.replace("\n", "\n  "))
        if html is not None and history is not None:
            from raftlab.checker.visualize import render_html
            from raftlab.findings import settle

            out = html / (path.name + ".html") if len(histories) > 1 else html
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render_html(history, settle(history, result)), encoding="utf-8")
    if bad_input:
        sys.exit(2)
    sys.exit(EXIT[merge_valid(verdicts)])
