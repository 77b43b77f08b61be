"""``raftlab lab up|down|status``: create a lab once, reuse it across runs, remove all of it.

A lab is named (``--name``, default: its kind) and recorded in ``<labs dir>/<name>.json``
(``$RAFTLAB_LABS_DIR``, default ``~/.cache/raftlab/labs``); ``raftlab run --lab KIND`` attaches to
the lab of that name. Errors (no root for netns, an unreachable SSH host, a bad nodes file) print
one line naming the cause and exit 2.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from raftlab.lab import KINDS, LabError, LabState, lab_down, lab_status, lab_up


def _opts(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise click.UsageError(f"--opt takes KEY=VALUE, not {pair!r}")
        out[key.replace("-", "_")] = value
    return out


def _recorded(name: str) -> LabState | None:
    try:
        return LabState.load(name)
    except LabError as e:
        _fail(e)
        return None


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    raise SystemExit(2)


@click.group()
def lab() -> None:
    """Create, inspect and destroy labs (where the nodes run).

    \b
    Kinds: local (default, no root: 127.0.0.1 and a proxy mesh),
           netns (root: network namespaces with sshd, iptables partitions),
           ssh (any hosts from --nodes-file), containers and vagrant.
    See docs/labs.md.
    """


@lab.command()
@click.option("--lab", "kind", type=click.Choice(list(KINDS)), default="local", show_default=True,
              help="Kind of lab.")
@click.option("--name", default=None, help="Name to record the lab under [default: the kind].")
@click.option("--nodes", type=click.IntRange(1, 50), default=5, show_default=True, help="Number of hosts.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the lab keeps its files [default: <labs dir>/<name>].")
@click.option("--nodes-file", type=click.Path(dir_okay=False), default=None,
              help="ssh lab: the hosts (format in docs/labs.md).")
@click.option("--prefix", default=None, help="netns lab: namespace name prefix [rl].")
@click.option("--bridge", default=None, help="netns lab: bridge name [<prefix>br0].")
@click.option("--subnet", default=None, help="netns lab: first three octets of the /24 [10.77.0].")
@click.option("--opt", "extra", multiple=True, metavar="KEY=VALUE", help="Any other option of the lab kind.")
def up(kind: str, name: str | None, nodes: int, workdir: str | None, nodes_file: str | None, prefix: str | None,
       bridge: str | None, subnet: str | None, extra: tuple[str, ...]) -> None:
    """Create a lab and record it, ready for `raftlab run --lab KIND`."""
    existing = _recorded(name or kind)
    if existing is not None and existing.kind == kind:
        click.echo(f"lab {existing.name!r} ({kind}) is already up; files in {existing.workdir}")
        return
    opts: dict[str, Any] = {"nodes_file": nodes_file, "prefix": prefix, "bridge": bridge, "subnet": subnet,
                            **_opts(extra)}
    try:
        state = asyncio.run(lab_up(kind, name=name, nodes=nodes, workdir=workdir, **opts))
    except LabError as e:
        _fail(e)
        return
    click.echo(f"lab {state.name!r} ({state.kind}) is up: {', '.join(state.hosts)}; files in {state.workdir}")


@lab.command()
@click.option("--lab", "kind", type=click.Choice(list(KINDS)), default="local", show_default=True,
              help="Kind of lab (its name, when --name is not given).")
@click.option("--name", default=None, help="Name of the lab [default: the kind].")
def down(kind: str, name: str | None) -> None:
    """Remove everything the lab made: processes, mounts, namespaces, firewall rules, files."""
    try:
        state = asyncio.run(lab_down(name or kind))
    except LabError as e:
        _fail(e)
        return
    if state is None:
        click.echo(f"no lab named {name or kind!r} is recorded; nothing to do")
    else:
        click.echo(f"lab {state.name!r} ({state.kind}) is down")


@lab.command()
@click.option("--lab", "kind", type=click.Choice(list(KINDS)), default="local", show_default=True,
              help="Kind of lab (its name, when --name is not given).")
@click.option("--name", default=None, help="Name of the lab [default: the kind].")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(kind: str, name: str | None, as_json: bool) -> None:
    """Show what a recorded lab has now (hosts, addresses, whether they answer)."""
    try:
        info = asyncio.run(lab_status(name or kind))
    except LabError as e:
        _fail(e)
        return
    if info is None:
        click.echo(f"no lab named {name or kind!r} is recorded (`raftlab lab up --lab {kind}` creates it)")
        raise SystemExit(3)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"lab {info['name']!r}: {info['kind']}, {info['nodes']} hosts, files in {info['workdir']}")
    for host, facts in info.get("hosts", {}).items():
        click.echo(f"  {host}: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
