"""A local cluster: N ``raftlab node`` processes on loopback, started, killed and restarted.

This is the "run it on my machine" path (``raftlab node cluster``) and what the process-level
tests and ``bench/node.py`` stand on: real processes, real sockets, real files, real signals.
Member ``i`` (1..N) listens for peers on ``base_port + i`` and for clients on
``base_port + 100 + i``; its data, log, pid and output (``node.out``) files live in ``workdir/n<i>/``. ``kill`` is
SIGKILL (nothing is flushed, nothing is cleaned up), ``stop`` is SIGTERM and a wait.

With ``auth=True`` (what ``raftlab node cluster`` uses) the cluster gets a fresh cluster key,
``workdir/cluster.key``, passed to every member with ``--secret-file``, and a read-write client
key derived from it, ``workdir/client.key`` (``client_key()``), for clients; so a user who just
wants a local cluster does nothing extra, and ports are never open to anyone on the machine.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from raftlab.impl.net.auth import Key, new_cluster_key, read_key_file, write_key_file


def raftlab_command() -> list[str]:
    """The ``raftlab`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "raftlab"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from raftlab.cli import main; main()"]


class LocalCluster:
    def __init__(self, size: int, workdir: Path, *, base_port: int = 17000, host: str = "127.0.0.1",
                 node_args: tuple[str, ...] = (), quiet: bool = True, command: list[str] | None = None,
                 auth: bool = False) -> None:
        if not 1 <= size <= 99:
            raise ValueError(f"cluster size must be 1..99, not {size}")
        self.size = size
        self.workdir = Path(workdir)
        self.base_port = base_port
        self.host = host
        self.node_args = node_args
        self.quiet = quiet
        self.command = command or raftlab_command()  # another tree's raftlab, to compare two builds
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.auth = auth
        if auth:
            self.workdir.mkdir(parents=True, exist_ok=True)
            key = new_cluster_key()
            write_key_file(self.secret_file, key)
            write_key_file(self.client_key_file, key.derive("rw"))

    @property
    def secret_file(self) -> Path:
        return self.workdir / "cluster.key"

    @property
    def client_key_file(self) -> Path:
        return self.workdir / "client.key"

    def client_key(self) -> Key | None:
        """The read-write client key (None without auth)."""
        return read_key_file(self.client_key_file) if self.auth else None

    @property
    def ids(self) -> list[int]:
        return list(range(1, self.size + 1))

    def peer_port(self, i: int) -> int:
        return self.base_port + i

    def client_port(self, i: int) -> int:
        return self.base_port + 100 + i

    def endpoints(self) -> list[tuple[str, int]]:
        return [(self.host, self.client_port(i)) for i in self.ids]

    def endpoints_arg(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.endpoints())

    def node_dir(self, i: int) -> Path:
        return self.workdir / f"n{i}"

    def log_file(self, i: int) -> Path:
        return self.node_dir(i) / "node.log"

    def argv(self, i: int) -> list[str]:
        peers = ",".join(f"{j}={self.host}:{self.peer_port(j)}" for j in self.ids)
        d = self.node_dir(i)
        return [*self.command, "node", "--id", str(i), "--data-dir", str(d / "data"), "--peers", peers,
                "--client-host", self.host, "--client-port", str(self.client_port(i)),
                "--log-file", str(d / "node.log"), "--pid-file", str(d / "node.pid"),
                *(("--secret-file", str(self.secret_file)) if self.auth else ()), *self.node_args]

    def start(self, i: int, *, wait: bool = True) -> None:
        if i in self.procs and self.procs[i].poll() is None:
            raise RuntimeError(f"node {i} is already running (pid {self.procs[i].pid})")
        self.node_dir(i).mkdir(parents=True, exist_ok=True)
        if self.quiet:  # stdout/stderr (a crash's traceback included) go to node.out
            with open(self.node_dir(i) / "node.out", "ab") as out:
                self.procs[i] = subprocess.Popen(self.argv(i), stdout=out, stderr=out, start_new_session=True)
        else:
            self.procs[i] = subprocess.Popen(self.argv(i), start_new_session=True)
        if wait:
            self.wait_listening(i)

    def start_all(self) -> None:
        for i in self.ids:
            self.start(i, wait=False)
        for i in self.ids:
            self.wait_listening(i)

    def wait_listening(self, i: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs[i]
            if proc.poll() is not None:
                tail = self.log_file(i).read_text()[-2000:] if self.log_file(i).exists() else ""
                raise RuntimeError(f"node {i} exited with {proc.returncode} while starting:\n{tail}")
            try:
                with socket.create_connection((self.host, self.client_port(i)), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {i} did not listen on {self.client_port(i)} within {timeout}s") \
                        from None
                time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL: the process dies at once, with whatever it had not written lost."""
        proc = self.procs[i]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, i: int, timeout: float = 10.0) -> int:
        proc = self.procs[i]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def running(self, i: int) -> bool:
        return i in self.procs and self.procs[i].poll() is None

    def close(self) -> None:
        for i in list(self.procs):
            self.stop(i)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
