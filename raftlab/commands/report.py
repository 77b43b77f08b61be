"""``raftlab report RUN_DIR``: rebuild a stored run's report.html from its files alone."""

from __future__ import annotations

import sys

import click

from raftlab import report as report_module
from raftlab.store import StoreError, open_run


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir: str) -> None:
    """Rebuild RUN_DIR/report.html (store/latest works too) and print its path."""
    try:
        run = open_run(run_dir)
        path = report_module.write(run)
    except StoreError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(path)
