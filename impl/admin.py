"""`raftlab admin`: the operator's membership commands (SOFAJRaft's CliService, etcd's member API).

Theory of operation. Every command is one ``admin`` request (impl/net/codec.py) sent like a write
to the leader (``KvClient.admin`` follows leader hints). A membership command reads the leader's
configuration, computes the target one locally (so an unknown member or a promotion of a
non-learner is refused here, naming it, before anything is proposed), and asks for it as one
joint change (confchange.py); the leader answers once the ``enter`` is applied, and the command
then waits, up to ``--timeout``, until the leader has also left the joint configuration (unless
``--no-auto-leave``: the change stays prepared until ``admin leave`` or ``admin abort``).
``transfer`` asks the leader to hand over and waits until the target leads or the timeout ends.

With ``--group G`` every command addresses Raft group G of nodes started with ``--groups``
(impl/groups.py): each group has its own configuration and leader, so a change or a transfer in
one group leaves the others alone; ``show`` without ``--group`` lists every group each endpoint
serves (the ``groups`` request), one row per endpoint and group.

Exit codes, as the rest of the CLI: 0 done; 1 a definite refusal (not leader after retries,
dropped); 2 an invalid request (unknown member, a change in progress, no voters left); 3 no
answer or an unknown outcome (no quorum: the change may still complete).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from raftlab.impl.cli import _with_client as with_client
from raftlab.impl.cli import client_key, endpoints_option, key_option, parse_ids, timeout_option
from raftlab.impl.client import KvClient, Unavailable, ValidationError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@endpoints_option
@timeout_option
@key_option
@click.option("--group", type=click.IntRange(min=0), default=None,
              help="The Raft group to change or show (nodes started with --groups); changes default to group 0, "
                   "`show` shows every group.")
@click.pass_context
def admin(ctx: click.Context, endpoints: list[tuple[str, int]], timeout: float, key_file: Path | None,
          group: int | None) -> None:
    """Change a cluster's membership, move its leader, show its configuration."""
    ctx.obj = (endpoints, timeout, client_key(key_file), group)


def _run(ctx: click.Context, action: Any) -> None:
    endpoints, timeout, key, group = ctx.obj
    sys.exit(with_client(endpoints, timeout, action, key, group or 0))


def _describe(m: dict[str, Any]) -> str:
    text = f"voters={m['voters']}"
    if m.get("outgoing"):
        text += f" outgoing={m['outgoing']} (joint{'' if m.get('auto_leave', True) else ', prepared'})"
    if m.get("learners"):
        text += f" learners={m['learners']}"
    return text


async def _settle(c: KvClient, deadline: float) -> dict[str, Any]:
    """The leader's configuration once it is no longer joint (Unavailable past the deadline)."""
    while True:
        body = await c.admin("membership")
        if not body["membership"]["outgoing"]:
            return body["membership"]
        if time.monotonic() > deadline:
            raise Unavailable(f"still joint after the timeout: {_describe(body['membership'])} (the change "
                              "completes once the new voters' majority answers; or run `admin abort`)")
        await asyncio.sleep(0.1)


def _change(ctx: click.Context, target: Any, auto_leave: bool = True) -> None:
    """Propose the configuration ``target(voters, learners)`` computes from the current one."""
    timeout = ctx.obj[1]

    async def action(c: KvClient) -> int:
        deadline = time.monotonic() + timeout
        current = (await c.admin("membership"))["membership"]
        voters, learners = target(set(current["voters"]), set(current["learners"]))
        body = await c.admin("change", voters=sorted(voters), learners=sorted(learners), auto_leave=auto_leave)
        click.echo(f"entered joint at index {body['index']}: {_describe(body['membership'])}")
        if auto_leave:
            click.echo(f"ok: {_describe(await _settle(c, deadline))}")
        return 0
    _run(ctx, action)


def _member(ident: int, where: set[int], what: str) -> None:
    if ident not in where:
        raise click.exceptions.Exit(_refuse(f"unknown member: {ident} is not {what}"))


def _refuse(message: str) -> int:
    click.echo(f"validation: {message}", err=True)
    return 2


auto_leave_option = click.option("--no-auto-leave", "prepared", is_flag=True,
                                 help="Stop in the joint configuration; finish with `admin leave` or `admin abort`.")


@admin.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """Every endpoint's id, role and configuration in every group (or in --group); the members of
    a group agree once its latest change is applied."""
    endpoints, timeout, key, only = ctx.obj

    async def one(ep: tuple[str, int], group: int) -> dict[str, Any]:
        c = KvClient([ep], timeout=timeout, key=key, group=group)
        try:
            return {"endpoint": f"{ep[0]}:{ep[1]}", "group": group, **await c.admin("membership")}
        except Exception as e:  # one row per endpoint and group, the failures too
            return {"endpoint": f"{ep[0]}:{ep[1]}", "group": group, "error": str(e) or type(e).__name__}
        finally:
            await c.close()

    async def groups_of(ep: tuple[str, int]) -> list[int]:
        if only is not None:
            return [only]
        c = KvClient([ep], timeout=timeout, key=key)
        try:
            return list((await c.groups())[0].get("groups", [0]))  # unreachable: its group 0 row says so
        finally:
            await c.close()

    async def action(_c: KvClient) -> int:
        served = await asyncio.gather(*(groups_of(ep) for ep in endpoints))
        groups = sorted(set().union(*served))
        rows = await asyncio.gather(*(one(ep, g) for g in groups for ep in endpoints))
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        for r in [] if as_json else rows:
            where = f"{r['endpoint']:<22} " + (f"group={r['group']} " if len(groups) > 1 else "")
            if "error" in r:
                click.echo(f"{where}error: {r['error']}")
            else:
                click.echo(f"{where}id={r['id']} {r['role']:<13} leader={r['leader']} "
                           f"applied={r['applied']} {_describe(r['membership'])}")
        return 0 if all("error" not in r for r in rows) else 3
    _run(ctx, action)


def target_of(command: str, ident: int, voters: set[int], learners: set[int]) -> tuple[set[int], set[int]]:
    """The configuration a one-member command asks for (exit 2 naming what is wrong)."""
    if command == "remove":
        _member(ident, voters | learners, "a voter or a learner")
        return voters - {ident}, learners - {ident}
    if command == "promote":
        _member(ident, learners, "a learner")
    elif command == "add-learner":
        if ident in voters:
            raise click.exceptions.Exit(_refuse(f"{ident} is already a voter"))
        return voters, learners | {ident}
    return voters | {ident}, learners - {ident}


def _one_member(ctx: click.Context, command: str, ident: int, prepared: bool = False) -> None:
    _change(ctx, lambda v, lr: target_of(command, ident, v, lr), not prepared)


ident_argument = click.argument("ident", metavar="ID", type=click.IntRange(min=1))


@admin.command("add")
@ident_argument
@auto_leave_option
@click.pass_context
def add(ctx: click.Context, ident: int, prepared: bool) -> None:
    """Add ID as a voter (better: add-learner, wait until it caught up, then promote)."""
    _one_member(ctx, "add", ident, prepared)


@admin.command("remove")
@ident_argument
@auto_leave_option
@click.pass_context
def remove(ctx: click.Context, ident: int, prepared: bool) -> None:
    """Remove voter or learner ID (the leader too: it hands over once the change is applied)."""
    _one_member(ctx, "remove", ident, prepared)


@admin.command("add-learner")
@ident_argument
@click.pass_context
def add_learner(ctx: click.Context, ident: int) -> None:
    """Add ID as a learner: it receives the log (a snapshot when it starts empty) and votes never."""
    _one_member(ctx, "add-learner", ident)


@admin.command("promote")
@ident_argument
@auto_leave_option
@click.pass_context
def promote(ctx: click.Context, ident: int, prepared: bool) -> None:
    """Make learner ID a voter."""
    _one_member(ctx, "promote", ident, prepared)


@admin.command("change-peers")
@click.option("--voters", required=True, metavar="ID,...", help="The new voters, all at once.")
@click.option("--learners", default="", metavar="ID,...", help="The new learners.")
@auto_leave_option
@click.pass_context
def change_peers(ctx: click.Context, voters: str, learners: str, prepared: bool) -> None:
    """Replace the whole configuration in one joint step (any number of members in and out)."""
    try:
        new_voters, new_learners = set(parse_ids(voters, "--voters")), set(parse_ids(learners, "--learners"))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    _change(ctx, lambda _v, _lr: (new_voters, new_learners), not prepared)


def _finish(ctx: click.Context, op: str) -> None:
    async def action(c: KvClient) -> int:
        body = await c.admin(op)
        click.echo(f"ok: {op} at index {body['index']}: {_describe(body['membership'])}")
        return 0
    _run(ctx, action)


@admin.command("leave")
@click.pass_context
def leave(ctx: click.Context) -> None:
    """Finish a prepared change: leave the joint configuration for the new one."""
    _finish(ctx, "leave")


@admin.command("abort")
@click.pass_context
def abort(ctx: click.Context) -> None:
    """Give up a prepared change: back to the configuration before it (needs both majorities)."""
    _finish(ctx, "abort")


@admin.command("transfer")
@click.option("--to", "to", required=True, type=click.IntRange(min=1), help="The voter to lead.")
@click.pass_context
def transfer(ctx: click.Context, to: int) -> None:
    """Move leadership to voter --to; exit 3 if it does not lead within --timeout."""
    timeout = ctx.obj[1]

    async def action(c: KvClient) -> int:
        deadline = time.monotonic() + timeout
        while True:
            body = await c.admin("membership")
            if body["leader"] == to and body["id"] == to:
                click.echo(f"ok: {to} leads")
                return 0
            if time.monotonic() > deadline:
                click.echo(f"unavailable: {to} does not lead after {timeout}s (leader {body['leader']})", err=True)
                return 3
            try:
                await c.admin("transfer", to=to)
            except ValidationError:
                raise
            except Exception:  # a transfer under way moves the leader: ask again
                pass
            await asyncio.sleep(0.2)
    _run(ctx, action)


@admin.command("snapshot")
@click.pass_context
def snapshot(ctx: click.Context) -> None:
    """Make every endpoint snapshot its state now (as `raftlab kv snapshot`)."""
    async def action(c: KvClient) -> int:
        rows = await c.snapshot()
        for r in rows:
            click.echo(f"{r['endpoint']:<22} " + (f"failed: {r['error']}" if "error" in r else
                                                  f"snapshot index={r['index']} bytes={r['bytes']}"))
        return 0 if all("error" not in r for r in rows) else 3
    _run(ctx, action)
