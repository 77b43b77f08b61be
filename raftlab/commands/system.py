"""``raftlab system check MODULE``: try a system module's every claimed capability before a campaign.

Prints one line per step (``ok`` or ``FAIL``, the capability, what was seen) and exits 0 when
every step passed, 1 when one failed (the line names the capability and what was wrong), 2 for
bad usage. The work is ``raftlab.systems.check``.
"""

from __future__ import annotations

import asyncio
import sys

import click

from raftlab.commands.run import _key_values


@click.group()
def system() -> None:
    """Work with system modules (the --system of raftlab run)."""


@system.command()
@click.argument("module")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True, help="Hosts in the check's lab.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=17000, show_default=True,
              help="First port the system may use.")
@click.option("--system-opt", "system_opt", multiple=True, help="KEY=VALUE passed to the system (options.extra).")
@click.option("--lab-opt", "lab_opt", multiple=True, help="KEY=VALUE for the local lab (net=proxy or ns).")
def check(module: str, nodes: int, base_port: int, system_opt: tuple[str, ...], lab_opt: tuple[str, ...]) -> None:
    """Run MODULE (dtkv, etcd or pkg.module) on a fresh local lab through start, kill, restart, pause,
    resume, leader detection and log collection, as far as it claims them; say what is wrong."""
    from raftlab.systems.check import check_module

    findings = asyncio.run(check_module(module, nodes=nodes, base_port=base_port,
                                        system_opts=_key_values(system_opt, "--system-opt"),
                                        lab_opts=_key_values(lab_opt, "--lab-opt"),
                                        on_finding=lambda f: click.echo(f.describe())))
    failed = [f for f in findings if not f.ok]
    if failed:
        click.echo(f"{len(failed)} of {len(findings)} checks failed: {', '.join(f.capability for f in failed)}")
        sys.exit(1)
    click.echo(f"all {len(findings)} checks passed")
