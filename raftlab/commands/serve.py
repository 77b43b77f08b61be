"""``raftlab serve [STORE]``: browse stored runs at http://127.0.0.1:PORT/ (see ``raftlab.serve``)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click


@click.command()
@click.argument("store", default="store", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default: the store may hold logs you do not want shared).")
def serve(store: Path, port: int, host: str) -> None:
    """List every run in STORE with its verdict, and open its report and files, in a browser."""
    from raftlab.serve import make_server

    if not store.is_dir():
        click.echo(f"error: {store} is not a directory (a store made by raftlab run --store)", err=True)
        sys.exit(2)
    try:
        server = make_server(store, host, port)
    except OSError as e:
        click.echo(f"error: cannot listen on {host}:{port}: {e.strerror or e}", err=True)
        sys.exit(2)
    click.echo(f"serving {store.resolve()} at http://{host}:{server.server_address[1]}/  (Ctrl-C stops)", err=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
