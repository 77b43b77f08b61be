"""`raftlab kv refresh | lock | unlock | watch`: the lease and watch commands of the kv CLI.

Kept apart from impl/cli.py (the node and plain kv commands) so each stays a readable size;
importing this module registers its commands on the ``kv`` group. Every command prints one
``ok ...`` line (or, for ``watch``, one line per event) and exits 0; a definite failure prints
its error and exits with the kv CLI's usual code (impl/cli.py ``_with_client``).

``lock`` queues for the lock for up to ``--wait`` seconds; with ``--hold SECONDS`` it then keeps
the lease refreshed (every third of it) for that long and unlocks, so two shells can show the
hand-off. ``watch`` streams ``INDEX KIND KEY [VALUE]`` lines, following leader changes, until
``--count`` events or Ctrl-C; ``--from`` resumes from an index printed earlier (+1).
"""

from __future__ import annotations

import asyncio

import click
from raftlab.impl.cli import DEFAULT_OWNER, _run, _show, kv, ttl_options
from raftlab.impl.client import KvClient
from raftlab.impl.dtkv.commands import MAX_TTL_MS, MIN_TTL_MS

LEASE = click.IntRange(MIN_TTL_MS, MAX_TTL_MS)


@kv.command()
@click.argument("key")
@ttl_options
@click.pass_context
def refresh(ctx: click.Context, key: str, ttl_ms: int | None, owner: str) -> None:
    """Restart the TTL of temp node/dir KEY, or the lease of lock KEY, by its owner."""
    if ttl_ms is None:
        raise click.UsageError("refresh needs --ttl MS")

    async def action(c: KvClient) -> int:
        click.echo(f"ok index={await c.refresh(key, owner, ttl_ms)}")
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key")
@click.option("--owner", default=DEFAULT_OWNER, show_default=True, help="Who takes the lock.")
@click.option("--lease", "lease_ms", type=LEASE, default=10_000, show_default=True,
              help="Lease in milliseconds: the lock is freed (or handed on) if not refreshed within it.")
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait in the lock's queue when another owner holds it.")
@click.option("--hold", type=click.FloatRange(min=0), default=None,
              help="Keep the lease refreshed for this many seconds, then unlock.")
@click.pass_context
def lock(ctx: click.Context, key: str, owner: str, lease_ms: int, wait: float, hold: float | None) -> None:
    """Take lock KEY; prints its fencing token (the raft index of the acquisition)."""
    async def action(c: KvClient) -> int:
        token = await c.lock(key, owner, lease_ms, wait=wait)
        click.echo(f"ok token={token} owner={owner} lease_ms={lease_ms}")
        if hold is None:
            return 0
        loop = asyncio.get_running_loop()
        until = loop.time() + hold
        while loop.time() < until:
            await asyncio.sleep(min(lease_ms / 3000, max(0.0, until - loop.time())))
            await c.refresh(key, owner, lease_ms)
        click.echo(f"ok unlocked index={await c.unlock(key, owner)}")
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key")
@click.option("--owner", default=DEFAULT_OWNER, show_default=True, help="The holder (or a waiter leaving the queue).")
@click.pass_context
def unlock(ctx: click.Context, key: str, owner: str) -> None:
    """Release lock KEY (its holder only; the next waiter gets it)."""
    async def action(c: KvClient) -> int:
        click.echo(f"ok index={await c.unlock(key, owner)}")
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key", default="")
@click.option("--from", "from_index", type=click.IntRange(min=0), default=0,
              help="First raft index to report (0: changes from now on).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.pass_context
def watch(ctx: click.Context, key: str, from_index: int, count: int | None) -> None:
    """Stream the changes at or under KEY as `INDEX KIND KEY [VALUE]` lines."""
    async def action(c: KvClient) -> int:
        seen = 0
        async for event in c.watch(key, from_index):
            value = "" if event.value is None else f" {_show(event.value)}"
            click.echo(f"{event.index} {event.kind} {event.key}{value}")
            seen += 1
            if count is not None and seen >= count:
                break
        return 0
    _run(ctx, action)
