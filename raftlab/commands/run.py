"""``raftlab run`` and ``raftlab replay``: a campaign from the command line, with live progress.

``run`` builds a ``Campaign`` from its flags (drawing and printing a seed when none is given),
``replay`` loads one from a stored ``campaign.json``; both hand it to ``runner.run_campaign``,
show a progress line (stage, elapsed, ops, faults) while it runs, and end with the verdict, the
reasons, the membership over time (under the member nemesis) and the report's path. Exit codes: 0 valid, 1 violation, 2 bad usage or a run that could
not complete, 3 unknown; 130 when interrupted (after healing, teardown and results).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import click
from click.core import ParameterSource

from raftlab.history import Op
from raftlab.interpreter import Stats
from raftlab.progress import STATUS_EVERY, status
from raftlab.rng import new_seed, parse_seed
from raftlab.runner import Campaign, CampaignError, Outcome, load_campaign, run_campaign
from raftlab.store import StoreError


def _key_values(values: tuple[str, ...], flag: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        opts[key.replace("-", "_")] = value
    return opts


class _Progress:
    """A one-line live status on stderr (rich), refreshed by a ticker task and on every event."""

    def __init__(self, time_limit: float, enabled: bool) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.stats = Stats()
        self.stage = "starting"
        self.time_limit = time_limit
        self.started = time.monotonic()
        self.running_since: float | None = None
        self.live = Live(console=self.console, auto_refresh=False, transient=True) if self.enabled else None
        self.muted = False

    def say(self, text: str) -> None:
        """A progress line on stderr. A reader that went away (a closed pipe: the parent of a
        ``raftlab mutate`` campaign killed) mutes the lines, never the run: the heal and the
        teardown that follow must not fail on a line nobody reads (they did: nodes were left)."""
        if self.muted:
            return
        try:
            click.echo(text, err=True)
        except OSError:
            self.muted = True

    def on_event(self, op: Op) -> None:
        self.stats.count(op)

    def on_stage(self, stage: str) -> None:
        self.stage = stage
        if stage == "running":
            self.running_since = time.monotonic()
        if not self.enabled:
            self.say(f"[{time.monotonic() - self.started:6.1f}s] {stage}")
        self.refresh()

    def line(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        s = self.stats
        elapsed = time.monotonic() - (self.running_since or self.started)
        grid = Table.grid(padding=(0, 1))
        done = min(elapsed, self.time_limit) if self.running_since else 0.0
        grid.add_row(f"[bold]{self.stage}[/]", ProgressBar(total=self.time_limit, completed=done, width=20),
                     f"{elapsed:5.1f}s", f"ops {s.invokes}: [green]{s.ok}[/]/[red]{s.fail}[/]/[yellow]{s.info}[/] "
                     "ok/fail/info", f"faults {s.faults}")
        return grid

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.line(), refresh=True)

    async def ticker(self) -> None:
        last = time.monotonic()
        while True:
            self.refresh()
            await asyncio.sleep(0.25)
            if not self.enabled and time.monotonic() - last >= STATUS_EVERY:  # a CI log shows where it is
                last = time.monotonic()
                self.say(f"[{last - self.started:6.1f}s] status: {self.stage}; {status(self.stats)}")


async def _with_progress(campaign: Campaign, progress: _Progress) -> Outcome:
    main = asyncio.current_task()
    if main is not None:  # SIGTERM stops a run like Ctrl-C: heal, tear down, write results
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    error: Exception | None = None
    outcome: Outcome | None = None
    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(progress.ticker())
        try:
            outcome = await run_campaign(campaign, on_event=progress.on_event, on_stage=progress.on_stage)
        except (CampaignError, StoreError) as e:  # raised as themselves, not wrapped in a group
            error = e
        finally:
            ticker.cancel()
    if error is not None:
        raise error
    assert outcome is not None
    return outcome


def write_junit(path: Path, outcome: Outcome) -> None:
    """One testsuite, one testcase per checker: invalid -> failure, unknown or incomplete -> error."""
    results = outcome.results
    cases = []
    checkers = dict(results.get("checkers", {}))
    if results.get("error"):
        checkers = {"run": {"valid": "unknown", "explanation": results["error"]["message"]}, **checkers}
    failures = errors = 0
    for name, res in checkers.items():
        body = ""
        if res.get("valid") is False:
            failures += 1
            body = f"<failure message={quoteattr(res.get('explanation') or 'invalid')}/>"
        elif res.get("valid") != True:  # noqa: E712 - the verdict is True, False or "unknown"
            errors += 1
            body = f"<error message={quoteattr(res.get('explanation') or 'unknown')}/>"
        cases.append(f'  <testcase classname="raftlab.{escape(str(outcome.results.get("campaign", {}).get("workload")))}" '
                     f"name={quoteattr(name)}>{body}</testcase>")
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="raftlab campaign" tests="{len(cases)}" '
           f'failures="{failures}" errors="{errors}" time="{results.get("duration_seconds", 0)}">\n'
           f'  <properties><property name="seed" value="{results.get("seed")}"/>'
           f"<property name=\"run\" value={quoteattr(str(outcome.run.path))}/></properties>\n"
           + "\n".join(cases) + "\n</testsuite>\n")
    path.write_text(xml, encoding="utf-8")


def _membership_lines(history: Path) -> list[str]:
    """The membership over time as stored in the history (nothing without the member nemesis)."""
    from raftlab.history import History, HistoryError
    from raftlab.report_members import changes, describe

    try:
        return describe(changes(list(History.read(history, validate=False))))
    except (HistoryError, OSError):  # a run that stopped before its history: nothing to say
        return []


def _execute(campaign: Campaign, junit: Path | None, quiet: bool) -> Outcome:
    """Run one campaign with live progress and print its verdict; exits only on errors and Ctrl-C."""
    click.echo(f"seed {campaign.seed}  (same choices again: --seed {campaign.seed}, or raftlab replay RUN_DIR)")
    progress = _Progress(campaign.time_limit, enabled=not quiet)
    try:
        if progress.live is not None:
            with progress.live:
                outcome = asyncio.run(_with_progress(campaign, progress))
        else:
            outcome = asyncio.run(_with_progress(campaign, progress))
    except CampaignError as e:
        raise click.UsageError(str(e)) from None
    except StoreError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo(f"interrupted (what was stopped is said above); partial results in {Path(campaign.store) / 'latest'}",
                   err=True)
        sys.exit(130)
    verdict = {True: "valid", False: "INVALID", "unknown": "unknown"}.get(outcome.verdict, "no verdict")  # type: ignore[arg-type]
    if outcome.results.get("error"):
        verdict = "could not complete"
    click.echo(f"verdict: {verdict}  ({outcome.results.get('events', 0)} events, "
               f"{outcome.results.get('duration_seconds', 0):.1f}s)")
    for reason in outcome.reasons:
        click.echo(f"  - {reason}")
    for line in _membership_lines(outcome.run.history):
        click.echo(line)
    click.echo(f"report: {outcome.run.report}")
    if outcome.results.get("coverage"):
        from raftlab.coverage import describe

        click.echo(describe(outcome.results["coverage"]))
    if junit is not None:
        write_junit(junit, outcome)
        click.echo(f"junit: {junit}")
    return outcome


@click.command()
@click.option("--workload", default="register", show_default=True, help="register, set, tree, mixed, lock, watch or ttl.")
@click.option("--nemesis", default="none", show_default=True,
              help="Comma-separated faults: kill,pause,partition,kill-leader,pause-leader,partition-leader,"
                   "kill-majority,disk-pause,lose-unfsynced,host-pause,power-cut,clock[-bump|-strobe|-fast|-slow],"
                   "clock-slow-leader,link[-slow|-bandwidth|-oneway|-flap|-reset],file,bitflip-wal,bitflip-snap,"
                   "truncate-wal (or none); docs/campaigns.md lists each with what it needs.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds of workload while faults run.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Client workers.")
@click.option("--lab", default="local", show_default=True, help="local, netns or ssh.")
@click.option("--lab-name", default=None, help="Name of the lab to use or create (default: the lab kind).")
@click.option("--nodes", type=click.IntRange(1, 50), default=5, show_default=True, help="Cluster size.")
@click.option("--nodes-file", type=click.Path(dir_okay=False), default=None, help="Hosts for --lab ssh.")
@click.option("--seed", default=None, help="Seed for every random choice (drawn and printed if absent).")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Mean seconds between nemesis actions.")
@click.option("--rate", type=click.FloatRange(min=0), default=50.0, show_default=True,
              help="Client ops per second overall (0: as fast as the workers go).")
@click.option("--store", "store_dir", default="store", show_default=True, help="Where runs are stored.")
@click.option("--leave-running", is_flag=True, help="Do not tear the cluster down at the end.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JUnit XML here.")
@click.option("--system", default="dtkv", show_default=True, help="dtkv, or pkg.module with system(lab, options).")
@click.option("--node-arg", "node_args", multiple=True,
              help="Extra flag for every node, repeatable (e.g. --node-arg=--unsafe-local-reads).")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=None,
              help="First port; host i uses base+2i (peers) and base+2i+1 (clients). Default: a free block "
                   "in 17000-29999 that this run reserves machine-wide, so concurrent runs never share ports.")
@click.option("--op-timeout", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Client timeout per operation (seconds); a timed-out write is info.")
@click.option("--recovery-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds the healed cluster gets to serve again before that is a finding.")
@click.option("--final-timeout", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Seconds allowed for the final reads.")
@click.option("--min-ok", type=click.IntRange(min=0), default=10, show_default=True,
              help="Fewer successful ops than this while faults run: unknown.")
@click.option("--check-time-limit", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds the linearizability checker may take before saying unknown.")
@click.option("--workload-opt", "workload_opt", multiple=True, help="KEY=VALUE for the workload (keys, ops-per-key).")
@click.option("--lab-opt", "lab_opt", multiple=True,
              help="KEY=VALUE for a lab being created (netns: prefix, subnet, bridge).")
@click.option("--system-opt", "system_opt", multiple=True, help="KEY=VALUE passed to the system (options.extra).")
@click.option("--nemesis-opt", "nemesis_opt", multiple=True,
              help="KEY=VALUE for the fault families (clock-slow=0.1, link-latency=0.05; docs/campaigns.md).")
@click.option("--restart-check", is_flag=True,
              help="After healing, SIGKILL every node at once and start it again before the final reads: they, "
                   "and the replica comparison, then judge what each node recovered from its own files.")
@click.option("--swarm", is_flag=True,
              help="Draw this run's fault mix (a subset of --nemesis) and interval from the seed (raftlab/swarm.py).")
@click.option("--campaign", "campaign_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A campaign file (TOML): every flag as a key, an optional [matrix]; flags given here override it.")
@click.option("--repeat", type=click.IntRange(min=1), default=None,
              help="Run N times (seeds SEED, SEED+1, ...), then print a summary of the verdicts.")
@click.option("--until-fail", is_flag=True,
              help="Repeat (up to --repeat, default 100) until a run finds a violation; stop there.")
@click.option("--quiet", is_flag=True, help="No live progress line.")
def run(workload: str, nemesis: str, time_limit: float, concurrency: int, lab: str, lab_name: str | None,
        nodes: int, nodes_file: str | None, seed: str | None, interval: float, rate: float, store_dir: str,
        leave_running: bool, junit: Path | None, system: str, node_args: tuple[str, ...], base_port: int | None,
        op_timeout: float, recovery_timeout: float, final_timeout: float, min_ok: int, check_time_limit: float,
        workload_opt: tuple[str, ...], lab_opt: tuple[str, ...], system_opt: tuple[str, ...],
        nemesis_opt: tuple[str, ...], restart_check: bool, swarm: bool, campaign_file: str | None, repeat: int | None, until_fail: bool,
        quiet: bool) -> None:
    """Run a workload against a cluster while faults are injected, then check the history.

    With --campaign FILE.toml the flags come from the file (a flag given here overrides it); with
    --repeat N or --until-fail, or a file with a [matrix], several runs and one summary.
    """
    from raftlab import campaignfile

    given = {name for name in click.get_current_context().params
             if click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE}
    flags: dict[str, Any] = {
        "workload": workload, "time_limit": time_limit, "concurrency": concurrency, "lab": lab,
        "lab_name": lab_name, "nodes": nodes, "nodes_file": str(Path(nodes_file).resolve()) if nodes_file else None,
        "interval": interval, "rate": rate, "store": store_dir, "leave_running": leave_running, "system": system,
        "node_args": node_args, "base_port": base_port, "op_timeout": op_timeout,
        "recovery_timeout": recovery_timeout, "final_timeout": final_timeout, "min_ok": min_ok,
        "check_time_limit": check_time_limit, "restart_check": restart_check,
        "nemesis": tuple(f.strip() for f in nemesis.split(",") if f.strip() and f.strip() != "none"),
        "workload_opts": _key_values(workload_opt, "--workload-opt"), "system_opts": _key_values(system_opt, "--system-opt"),
        "lab_opts": _key_values(lab_opt, "--lab-opt"), "nemesis_opts": _key_values(nemesis_opt, "--nemesis-opt")}
    param_of = {"store": "store_dir", "workload_opts": "workload_opt", "system_opts": "system_opt",
                "lab_opts": "lab_opt", "nemesis_opts": "nemesis_opt"}
    try:
        plan = campaignfile.load(campaign_file) if campaign_file else campaignfile.Plan(fields={})
        fields = {**(flags if not campaign_file else {}), **dict(plan.fields)}
        for name, value in flags.items():
            if param_of.get(name, name) in given:
                fields[name] = {**fields.get(name, {}), **value} if name in param_of and name != "store" else value
        file_seed = fields.pop("seed", None)
        chosen_seed = parse_seed(seed) if seed is not None else (parse_seed(str(file_seed)) if file_seed is not None
                                                                 else new_seed())
        plan = campaignfile.Plan(
            fields=fields, matrix=plan.matrix, source=plan.source,
            repeat=repeat if repeat is not None else (plan.repeat if plan.repeat > 1 or not until_fail else 100),
            until_fail=until_fail or plan.until_fail, swarm=swarm or plan.swarm, quiet=quiet or plan.quiet,
            junit=str(junit) if junit else plan.junit)
        campaigns = campaignfile.expand(plan, chosen_seed)
    except ValueError as e:  # CampaignError, and a bad seed
        raise click.UsageError(str(e)) from None
    records = []
    for campaign in campaigns:
        if plan.swarm:
            from raftlab.nemesis import FAMILY_OF
            from raftlab.swarm import draw

            drawn = draw(campaign.seed, campaign.nemesis, campaign.interval,
                         {f: FAMILY_OF[f].name for f in campaign.nemesis if f in FAMILY_OF})
            click.echo(drawn.describe())
            campaign = replace(campaign, nemesis=drawn.faults, interval=drawn.interval)
        if len(campaigns) > 1:
            click.echo(f"--- run {len(records) + 1} of {len(campaigns)}: {campaignfile.combination(campaign)}")
        outcome = _execute(campaign, Path(plan.junit) if plan.junit and len(campaigns) == 1 else None, plan.quiet)
        if plan.source:
            (outcome.run.path / "campaign-file.toml").write_text(plan.source, encoding="utf-8")
        records.append(campaignfile.RunRecord(campaign=campaign, verdict=outcome.verdict, exit_code=outcome.exit_code,
                                              run_dir=str(outcome.run.path)))
        if plan.until_fail and outcome.verdict is False:
            click.echo(f"until-fail: seed {campaign.seed} found a violation; stopping")
            break
    if len(campaigns) == 1:
        sys.exit(records[0].exit_code)
    summary = campaignfile.summarize(records)
    click.echo(campaignfile.describe(summary))
    where = campaignfile.write_summary(plan.fields.get("store", "store"), summary)
    click.echo(f"summary: {where}")
    sys.exit(summary["exit_code"])


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--store", "store_dir", default=None, help="Store the new run here (default: the stored campaign's).")
@click.option("--leave-running", is_flag=True, help="Do not tear the cluster down at the end.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JUnit XML here.")
@click.option("--quiet", is_flag=True, help="No live progress line.")
def replay(run_dir: str, store_dir: str | None, leave_running: bool, junit: Path | None, quiet: bool) -> None:
    """Re-run a stored campaign: same options, same seed, same fault choices."""
    try:
        campaign = load_campaign(run_dir)
    except (StoreError, CampaignError) as e:
        raise click.UsageError(str(e)) from None
    overrides: dict[str, Any] = {"leave_running": leave_running or campaign.leave_running}
    if store_dir is not None:
        overrides["store"] = store_dir
    sys.exit(_execute(Campaign.from_dict({**campaign.to_dict(), **overrides}), junit, quiet).exit_code)
