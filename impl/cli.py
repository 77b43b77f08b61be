"""``raftlab node`` (run or inspect a member) and ``raftlab kv`` (talk to a cluster).

Both are thin: flags are parsed and validated here, then handed to ``node.run_node`` or
``client.KvClient``. Every failure a user can cause (a bad flag, an unusable data directory, a
port in use, no reachable node) ends in one line on stderr and an exit code, never a
traceback. Exit codes: 0 success; 1 the cluster answered with a definite failure (key not found,
cas mismatch, ...; ``kv get`` of an absent key); 2 bad input or usage (including an unusable data
directory or port); 3 unknown outcome (a write that timed out after being sent, or no node
reachable).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from raftlab.impl.client import (
    DefiniteError,
    IndeterminateError,
    KvClient,
    TooLarge,
    Unavailable,
    ValidationError,
)
from raftlab.impl.dtkv.commands import MAX_TTL_MS, MIN_TTL_MS
from raftlab.impl.net.auth import AuthError, Key, new_cluster_key, read_key_file, write_key_file
from raftlab.impl.storage.compaction import (
    DEFAULT_MARGIN,
    DEFAULT_SNAPSHOT_ENTRIES,
    DEFAULT_WAL_BYTES,
    SnapshotPolicy,
)
from raftlab.impl.storage.wal import SEGMENT_BYTES


def parse_endpoint(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{what} {text!r} is not HOST:PORT")
    return host, int(port)


def parse_endpoints(_ctx: click.Context | None, _param: click.Parameter | None, text: str) -> list[tuple[str, int]]:
    if not text:
        raise click.BadParameter("give at least one HOST:PORT")
    return [parse_endpoint(part, "endpoint") for part in text.split(",") if part.strip()]


def parse_peers(_ctx: click.Context | None, _param: click.Parameter | None,
                text: str | None) -> tuple[tuple[int, str, int], ...] | None:
    if text is None:
        return None
    peers = []
    for part in text.split(","):
        ident, sep, address = part.strip().partition("=")
        if not sep or not ident.isdigit() or int(ident) < 1:
            raise click.BadParameter(f"{part!r} is not ID=HOST:PORT with a positive integer id")
        host, port = parse_endpoint(address, f"peer {ident} address")
        peers.append((int(ident), host, port))
    return tuple(peers)


def parse_ids(text: str, what: str) -> tuple[int, ...]:
    """``1,2,3`` -> (1, 2, 3); ValueError naming ``what`` for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of positive ids")
    return tuple(int(p) for p in parts)


def make_logger(node_id: int, log_file: Path | None) -> Callable[[str], None]:
    logger = logging.getLogger(f"raftlab.node.{node_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter(f"%(asctime)s.%(msecs)03d n{node_id} %(message)s", "%Y-%m-%dT%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger.info


def run_async(main: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--id", "node_id", type=click.IntRange(min=1), help="This member's id (a key of --peers).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="WAL and meta live here.")
@click.option("--peers", callback=parse_peers,
              help="ID=HOST:PORT,...: every member; our own entry is our peer listen address.")
@click.option("--voters", default="", metavar="ID,...",
              help="Bootstrap voters (default: every peer); the other peers start as non-members that "
                   "`raftlab admin` can add.")
@click.option("--groups", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run this many Raft groups (ids 0..N-1), each with its own log, tree and leader, on the "
                   "same ports (docs/node.md, several groups).")
@click.option("--client-port", type=click.IntRange(1, 65535), help="Port for client requests.")
@click.option("--client-host", default="127.0.0.1", show_default=True, help="Address for client requests.")
@click.option("--fsync", type=click.Choice(["sync", "async"]), default="sync", show_default=True,
              help="sync: durable before acknowledging or voting; async: fsync about once a second.")
@click.option("--read-mode", type=click.Choice(["index", "lease"]), default="index", show_default=True,
              help="Linearizable reads by ReadIndex, or by leader lease (assumes bounded clock drift).")
@click.option("--tick-ms", type=click.IntRange(min=1), default=50, show_default=True, help="Raft tick length.")
@click.option("--election-ticks", type=click.IntRange(min=3), default=10, show_default=True,
              help="Election timeout in ticks (randomised in [n, 2n)).")
@click.option("--seed", type=int, default=None, help="Seed for election jitter (drawn and logged if absent).")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Also log here.")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), help="Write our pid here.")
@click.option("--snapshot-entries", type=click.IntRange(min=0), default=DEFAULT_SNAPSHOT_ENTRIES, show_default=True,
              help="Snapshot the tree every N applied entries (0: off), then compact the WAL.")
@click.option("--snapshot-wal-bytes", type=click.IntRange(min=0), default=DEFAULT_WAL_BYTES, show_default=True,
              help="Also snapshot once the WAL holds more than this many bytes (0: off).")
@click.option("--snapshot-margin", type=click.IntRange(min=0), default=DEFAULT_MARGIN, show_default=True,
              help="Entries kept in the WAL below a snapshot, for followers that lag a little.")
@click.option("--wal-segment-bytes", type=click.IntRange(min=4096), default=SEGMENT_BYTES, show_default=True,
              help="Start a new WAL segment past this size (compaction deletes whole segments).")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster key (`raftlab node secret`): peers and clients must authenticate.")
@click.option("--unsafe-local-reads", is_flag=True, help="BROKEN ON PURPOSE: serve reads from local state.")
@click.option("--unsafe-ack-before-fsync", is_flag=True,
              help="BROKEN ON PURPOSE: acknowledge appends and votes before the WAL fsync.")
@click.option("--unsafe-expiry", is_flag=True,
              help="BROKEN ON PURPOSE: the leader's lease timers ignore refreshes (temp nodes, locks expire early).")
@click.option("--unsafe-watch-skip", is_flag=True,
              help="BROKEN ON PURPOSE: watch answers start one index late (a resumed watch loses an event).")
@click.pass_context
def node(ctx: click.Context, node_id: int | None, data_dir: Path | None,
         peers: tuple[tuple[int, str, int], ...] | None, voters: str, groups: int, client_port: int | None,
         client_host: str, fsync: str,
         read_mode: str, tick_ms: int, election_ticks: int, seed: int | None, log_file: Path | None,
         pid_file: Path | None, snapshot_entries: int, snapshot_wal_bytes: int, snapshot_margin: int,
         wal_segment_bytes: int, secret_file: Path | None, unsafe_local_reads: bool,
         unsafe_ack_before_fsync: bool, unsafe_expiry: bool, unsafe_watch_skip: bool) -> None:
    """Run one Raft + DtKV member until SIGTERM (or use `node status`)."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [flag for flag, value in (("--id", node_id), ("--data-dir", data_dir), ("--peers", peers),
                                        ("--client-port", client_port)) if value is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    assert node_id is not None and data_dir is not None and peers is not None and client_port is not None
    from raftlab.impl.node import NodeConfig, run_node
    from raftlab.impl.storage.meta import StorageError

    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    try:
        key = cluster_key(secret_file)
        config = NodeConfig(id=node_id, data_dir=data_dir, peers=peers, client_port=client_port,
                            client_host=client_host, fsync=fsync, read_mode=read_mode, tick_ms=tick_ms,
                            election_ticks=election_ticks, seed=seed, unsafe_local_reads=unsafe_local_reads,
                            unsafe_ack_before_fsync=unsafe_ack_before_fsync,
                            unsafe_expiry=unsafe_expiry, unsafe_watch_skip=unsafe_watch_skip,
                            snapshots=SnapshotPolicy(entries=snapshot_entries, wal_bytes=snapshot_wal_bytes,
                                                     margin=snapshot_margin),
                            wal_segment_bytes=wal_segment_bytes, key=key, voters=parse_ids(voters, "--voters"),
                            groups=groups)
        data_dir.mkdir(parents=True, exist_ok=True)
        log = make_logger(node_id, log_file)
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    if unsafe_local_reads or unsafe_ack_before_fsync or unsafe_expiry or unsafe_watch_skip:
        log("WARNING: running a deliberately broken variant (unsafe flags); do not keep data here")
    if pid_file is not None:
        pid_file.write_text(f"{os.getpid()}\n")
    started = threading.Event()
    try:
        run_async(run_node(config, log, started))
    except StorageError as e:
        log(f"cannot start: {e}")
        sys.exit(2)
    except OSError as e:  # a port in use, or at run time a full disk (the message names the file)
        log(f"{'stopped' if started.is_set() else 'cannot start'}: {e}")
        sys.exit(2)
    except Exception:  # a bug: keep the evidence in the node's own log, not only on stderr
        import traceback

        log(f"fatal: {traceback.format_exc()}")
        sys.exit(1)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


@node.command("repair")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The data directory the node refused.")
@click.option("--id", "node_id", required=True, type=click.IntRange(min=1), help="The member id it belongs to.")
@click.option("--group", type=click.IntRange(min=0), default=0, show_default=True,
              help="The Raft group whose directory to repair (group G > 0 lives in DATA_DIR/groups/G).")
@click.option("--rebuild-manifest", "mode", flag_value="manifest",
              help="Only the manifest is lost: list the segments as they are (every record is still checked).")
@click.option("--empty", "mode", flag_value="empty",
              help="Move the directory aside and start empty; no vote until a leader caught it up.")
def node_repair(data_dir: Path, node_id: int, group: int, mode: str | None) -> None:
    """Repair a data directory recovery refused (docs/node.md, recovery). One member at a time."""
    from raftlab.impl.groups import GROUPS_DIR, group_dir
    from raftlab.impl.storage.meta import StorageError
    from raftlab.impl.storage.wal import repair_empty, repair_rebuild_manifest

    if mode is None:
        raise click.UsageError("choose --rebuild-manifest or --empty")
    target = group_dir(data_dir, group)
    try:
        click.echo(repair_rebuild_manifest(target, node_id) if mode == "manifest" else
                   repair_empty(target, node_id, keep=(GROUPS_DIR,) if group == 0 else ()))
    except (StorageError, OSError) as e:
        click.echo(f"cannot repair: {e}", err=True)
        sys.exit(2)


def cluster_key(path: Path | None) -> Key | None:
    """The cluster key of --secret-file (ValueError naming the problem)."""
    if path is None:
        return None
    try:
        key = read_key_file(path)
    except AuthError as e:
        raise ValueError(str(e)) from None
    if key.kind != "cluster":
        raise ValueError(f"{path}: a {key.kind} client key; a member needs the cluster key")
    return key


@node.command("secret")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the key here (mode 0600).")
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path),
              help="Derive a client key from this cluster key instead of making a new cluster key.")
@click.option("--kind", type=click.Choice(["rw", "ro"]), default="rw", show_default=True,
              help="With --from: a read-write or a read-only client key.")
def node_secret(out: Path, source: Path | None, kind: str) -> None:
    """Make a cluster key, or derive a client key (rw or ro) from one (docs/node.md, security)."""
    try:
        key = new_cluster_key() if source is None else cluster_key(source).derive(kind)  # type: ignore[union-attr]
        write_key_file(out, key)
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"{out}: {key.kind} key")


def key_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
                        help="A cluster, rw or ro key file, when the members authenticate.")(f)


def client_key(path: Path | None) -> Key | None:
    if path is None:
        return None
    try:
        return read_key_file(path)
    except AuthError as e:
        raise click.UsageError(str(e)) from None


def endpoints_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--endpoints", required=True, callback=parse_endpoints,
                        help="HOST:PORT,... of the members' client ports.")(f)


def group_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--group", type=click.IntRange(min=0), default=0, show_default=True,
                        help="The Raft group to address, on nodes started with --groups.")(f)


def timeout_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--timeout", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
                        help="Seconds per request, leader search included.")(f)


def print_status(rows: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if "error" in row:
                click.echo(f"{row['endpoint']:<22} unreachable: {row['error']}")
            else:
                click.echo(f"{row['endpoint']:<22} id={row['id']} role={row['role']} term={row.get('term')} "
                           f"leader={row['leader']} commit={row.get('commit')} applied={row['applied']} "
                           f"last_index={row.get('last_index')}")
    return 0 if any("error" not in r for r in rows) else 3


@node.command("status")
@endpoints_option
@timeout_option
@key_option
@group_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def node_status(endpoints: list[tuple[str, int]], timeout: float, key_file: Path | None, group: int,
                as_json: bool) -> None:
    """Role, term, commit and apply index, and leader of every member (of one group)."""
    sys.exit(_with_client(endpoints, timeout, lambda c: _status(c, as_json), client_key(key_file), group))


async def _status(client: KvClient, as_json: bool) -> int:
    return print_status(await client.status(), as_json)


def _with_client(endpoints: list[tuple[str, int]], timeout: float,
                 action: Callable[[KvClient], Awaitable[int]], key: Key | None = None, group: int = 0) -> int:
    async def main() -> int:
        client = KvClient(endpoints, timeout=timeout, key=key, group=group)
        try:
            return await action(client)
        except Unavailable as e:
            click.echo(f"unavailable: {e}", err=True)
            return 3
        except (ValidationError, TooLarge) as e:
            click.echo(f"{e.kind}: {e}", err=True)
            return 2
        except DefiniteError as e:
            click.echo(f"{e.kind}: {e}", err=True)
            return 1
        except IndeterminateError as e:
            click.echo(f"unknown outcome: {e}", err=True)
            return 3
        finally:
            await client.close()

    return run_async(main())


@node.command("cluster")
@click.option("--nodes", type=click.IntRange(1, 99), default=3, show_default=True, help="Cluster size.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Each member's data, log and pid file go to WORKDIR/n<i>/.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=17000, show_default=True,
              help="Member i listens on BASE+i (peers) and BASE+100+i (clients).")
@click.argument("node_args", nargs=-1, type=click.UNPROCESSED)
def node_cluster(nodes: int, workdir: Path, base_port: int, node_args: tuple[str, ...]) -> None:
    """Run a local N-member cluster on loopback until Ctrl-C; extra args go to every member."""
    import signal
    import time

    from raftlab.impl.cluster import LocalCluster

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the members too, like Ctrl-C

    signal.signal(signal.SIGTERM, on_term)

    cluster = LocalCluster(nodes, workdir, base_port=base_port, node_args=node_args, quiet=False, auth=True)
    try:
        cluster.start_all()
    except (RuntimeError, TimeoutError) as e:
        cluster.close()
        raise click.ClickException(str(e)) from None
    click.echo(f"cluster of {nodes} running; endpoints: {cluster.endpoints_arg()}", err=True)
    click.echo(f"members authenticate with {cluster.secret_file}; clients use {cluster.client_key_file}", err=True)
    click.echo(f"try: raftlab kv --endpoints {cluster.endpoints_arg()} --key-file {cluster.client_key_file} status",
               err=True)
    try:
        while all(cluster.running(i) for i in cluster.ids):
            time.sleep(0.5)
        click.echo("a member exited; stopping the cluster", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@endpoints_option
@timeout_option
@key_option
@group_option
@click.pass_context
def kv(ctx: click.Context, endpoints: list[tuple[str, int]], timeout: float, key_file: Path | None,
       group: int) -> None:
    """Read and write a DtKV cluster (one Raft group's tree). Keys are '.'-separated paths; values
    are UTF-8 text."""
    ctx.obj = (endpoints, timeout, client_key(key_file), group)


def _run(ctx: click.Context, action: Callable[[KvClient], Awaitable[int]]) -> None:
    endpoints, timeout, key, group = ctx.obj
    sys.exit(_with_client(endpoints, timeout, action, key, group))


def _show(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.hex()


@kv.command()
@click.argument("key")
@click.pass_context
def get(ctx: click.Context, key: str) -> None:
    """Print KEY's value (exit 1 if absent)."""
    async def action(c: KvClient) -> int:
        value = await c.get(key)
        if value is None:
            click.echo(f"{key}: absent", err=True)
            return 1
        click.echo(_show(value))
        return 0
    _run(ctx, action)


DEFAULT_OWNER = "raftlab-cli"


def ttl_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--owner", default=DEFAULT_OWNER, show_default=True,
                     help="Owner id of the temp node or lock (refresh/unlock must give the same).")(f)
    return click.option("--ttl", "ttl_ms", type=click.IntRange(MIN_TTL_MS, MAX_TTL_MS),
                        help="Make it temporary: it expires TTL milliseconds after its owner's last refresh.")(f)


@kv.command()
@click.argument("key")
@click.argument("value")
@ttl_options
@click.pass_context
def put(ctx: click.Context, key: str, value: str, ttl_ms: int | None, owner: str) -> None:
    """Set KEY to VALUE (its parent directory must exist)."""
    async def action(c: KvClient) -> int:
        if ttl_ms is None:
            click.echo(f"ok index={await c.put(key, value.encode())}")
        else:
            click.echo(f"ok index={await c.put_temp(key, value.encode(), owner, ttl_ms)} ttl_ms={ttl_ms} owner={owner}")
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key")
@click.pass_context
def rm(ctx: click.Context, key: str) -> None:
    """Remove KEY (a value or an empty directory)."""
    async def action(c: KvClient) -> int:
        click.echo(f"ok index={await c.remove(key)}")
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key")
@click.argument("new")
@click.option("--expected", help="Current value required for the swap.")
@click.option("--absent", is_flag=True, help="Require KEY to be absent instead.")
@click.pass_context
def cas(ctx: click.Context, key: str, new: str, expected: str | None, absent: bool) -> None:
    """Set KEY to NEW iff it holds --expected (or is --absent)."""
    if (expected is None) == (not absent):
        raise click.UsageError("give exactly one of --expected VALUE or --absent")
    async def action(c: KvClient) -> int:
        index = await c.cas(key, None if absent else (expected or "").encode(), new.encode())
        click.echo(f"ok index={index}")
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key", default="")
@click.pass_context
def ls(ctx: click.Context, key: str) -> None:
    """List the children of directory KEY (the root by default)."""
    async def action(c: KvClient) -> int:
        for child in await c.list(key):
            click.echo(child)
        return 0
    _run(ctx, action)


@kv.command()
@click.argument("key")
@ttl_options
@click.pass_context
def mkdir(ctx: click.Context, key: str, ttl_ms: int | None, owner: str) -> None:
    """Create directory KEY (its parent must exist; no-op if it exists)."""
    async def action(c: KvClient) -> int:
        if ttl_ms is None:
            click.echo(f"ok index={await c.mkdir(key)}")
        else:
            click.echo(f"ok index={await c.mkdir_temp(key, owner, ttl_ms)} ttl_ms={ttl_ms} owner={owner}")
        return 0
    _run(ctx, action)


@kv.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def kv_status(ctx: click.Context, as_json: bool) -> None:
    """Every member's role, term, commit and apply index, and the leader."""
    _run(ctx, lambda c: _status(c, as_json))


@kv.command("snapshot")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def kv_snapshot(ctx: click.Context, as_json: bool) -> None:
    """Make every member snapshot its tree now and compact its WAL (answers once durable)."""
    async def action(c: KvClient) -> int:
        rows = await c.snapshot()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        for row in [] if as_json else rows:
            if "error" in row:
                click.echo(f"{row['endpoint']:<22} failed: {row['error']}")
            else:
                click.echo(f"{row['endpoint']:<22} snapshot index={row['index']} bytes={row['bytes']}")
        return 0 if all("error" not in r for r in rows) else 3
    _run(ctx, action)


from raftlab.impl import cli_leases  # noqa: E402,F401  (registers refresh, lock, unlock, watch on `kv`)
