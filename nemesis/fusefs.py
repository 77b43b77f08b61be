"""labfs: a FUSE passthrough over a node's data directory that can stall and forget writes.

Run on the host (``python -m raftlab.nemesis.fusefs``)::

    mount BACKING MOUNTPOINT --ctl SOCKET [--lazy]   # foreground; unmount with fusermount3 -u
    ctl SOCKET pause|resume|crash|status            # prints the daemon's answer

* ``pause`` makes every operation on the mount (reads, writes, stat, fsync, ...) wait until
  ``resume``, like a hung disk. A process blocked in a paused operation is in state D and ignores
  SIGKILL until the operation is answered (LAB-NOTES): resume before (or right after) killing.
* ``--lazy`` keeps written data in this daemon's memory until the file is fsynced (fsync,
  fdatasync): ``crash``, or the death of the daemon, drops every un-fsynced write, as LazyFS does.
  Only file contents and sizes are cached; creating, renaming and removing files reach the backing
  directory at once (always durable), so lost directory entries are not modelled. ``--lazy`` mounts
  with ``direct_io`` and zero attribute timeouts, so the kernel page cache never hides a drop.
* Control goes over a Unix socket outside the mount (operations inside it would block too), served
  by one thread: libfuse owns the main thread's loop, so this daemon cannot use asyncio.

Only the standard library and mfusepy (pure ctypes, one file) are needed on the host.
"""

from __future__ import annotations

import argparse
import os
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass
from typing import Any

COMMANDS = ("pause", "resume", "crash", "status")
_STAT_KEYS = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid",
              "st_blocks", "st_ino", "st_dev", "st_rdev", "st_blksize")


@dataclass(slots=True)
class _Dirty:
    """Un-fsynced contents of one file: the whole file, and the lowest offset changed since the last sync."""

    data: bytearray
    dirty_from: int


class LabFs:
    """The passthrough operations (mfusepy calls them from libfuse's worker threads)."""

    use_ns = True

    def __init__(self, backing: str, *, lazy: bool) -> None:
        self.root = os.path.realpath(backing)
        self.lazy = lazy
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self._cache: dict[str, _Dirty] = {}
        self._append: set[int] = set()
        self.paused_ops = 0

    # --- control ------------------------------------------------------------------------------

    def control(self, command: str) -> str:
        if command == "pause":
            self._running.clear()
        elif command == "resume":
            self._running.set()
        elif command == "crash":
            with self._lock:
                lost = sum(len(d.data) - d.dirty_from for d in self._cache.values())
                self._cache.clear()
            return f"ok dropped {lost} unsynced bytes"
        elif command != "status":
            return f"error unknown command {command!r} (known: {', '.join(COMMANDS)})"
        with self._lock:
            dirty = sum(len(d.data) - d.dirty_from for d in self._cache.values())
        state = "running" if self._running.is_set() else "paused"
        return f"ok {state} lazy={int(self.lazy)} unsynced_bytes={dirty}"

    def _gate(self) -> None:
        if not self._running.is_set():
            self.paused_ops += 1
            self._running.wait()

    def _full(self, path: str) -> str:
        return self.root + path

    # --- metadata -----------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        self._gate()
        st = os.lstat(self._full(path))
        attrs: dict[str, Any] = {k: getattr(st, k) for k in _STAT_KEYS}
        for k in ("st_atime", "st_ctime", "st_mtime"):
            attrs[k] = getattr(st, k + "_ns")
        with self._lock:
            dirty = self._cache.get(path)
            if dirty is not None:
                attrs["st_size"] = len(dirty.data)
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        self._gate()
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path: str) -> str:
        self._gate()
        return os.readlink(self._full(path))

    def statfs(self, path: str) -> dict[str, int]:
        self._gate()
        st = os.statvfs(self._full(path))
        return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                           "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def chmod(self, path: str, mode: int) -> int:
        self._gate()
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self._gate()
        os.chown(self._full(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._gate()
        if times is None:
            os.utime(self._full(path))
        else:
            os.utime(self._full(path), ns=times)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._gate()
        os.mkdir(self._full(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        self._gate()
        os.rmdir(self._full(path))
        return 0

    def unlink(self, path: str) -> int:
        self._gate()
        os.unlink(self._full(path))
        with self._lock:
            self._cache.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        self._gate()
        os.rename(self._full(old), self._full(new))
        with self._lock:
            moved = self._cache.pop(old, None)
            self._cache.pop(new, None)
            if moved is not None:
                self._cache[new] = moved
        return 0

    def symlink(self, target: str, source: str) -> int:
        self._gate()
        os.symlink(source, self._full(target))
        return 0

    def link(self, target: str, source: str) -> int:
        self._gate()
        os.link(self._full(source), self._full(target))
        return 0

    # --- files --------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        self._gate()
        if self.lazy and flags & os.O_TRUNC:  # an un-fsynced truncation is cached like any write
            flags &= ~os.O_TRUNC
            self.truncate(path, 0)
        fd = os.open(self._full(path), flags & ~os.O_APPEND)
        if flags & os.O_APPEND:
            with self._lock:
                self._append.add(fd)
        return fd

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        self._gate()
        fd = os.open(self._full(path), (flags & ~os.O_APPEND) | os.O_CREAT, mode)
        if flags & os.O_APPEND:
            with self._lock:
                self._append.add(fd)
        return fd

    def _load(self, path: str) -> _Dirty:
        """The cached contents of ``path``, read from the backing file on first use (caller holds the lock)."""
        dirty = self._cache.get(path)
        if dirty is None:
            with open(self._full(path), "rb") as f:  # the node's own fd may be write-only
                data = bytearray(f.read())
            dirty = self._cache[path] = _Dirty(data=data, dirty_from=len(data))
        return dirty

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._gate()
        with self._lock:
            dirty = self._cache.get(path)
            if dirty is not None:
                return bytes(dirty.data[offset:offset + size])
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._gate()
        if not self.lazy:
            if fh in self._append:
                offset = os.fstat(fh).st_size
            return os.pwrite(fh, data, offset)
        with self._lock:
            dirty = self._load(path)
            if fh in self._append:
                offset = len(dirty.data)
            if offset > len(dirty.data):
                dirty.data.extend(bytes(offset - len(dirty.data)))
            dirty.data[offset:offset + len(data)] = data
            dirty.dirty_from = min(dirty.dirty_from, offset)
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._gate()
        if not self.lazy:
            os.truncate(self._full(path), length)
            return 0
        with self._lock:
            dirty = self._load(path)
            if length < len(dirty.data):
                del dirty.data[length:]
            else:
                dirty.data.extend(bytes(length - len(dirty.data)))
            dirty.dirty_from = min(dirty.dirty_from, length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._gate()
        with self._lock:
            dirty = self._cache.pop(path, None)
            if dirty is not None:
                fd = os.open(self._full(path), os.O_WRONLY)
                try:
                    os.pwrite(fd, bytes(dirty.data[dirty.dirty_from:]), dirty.dirty_from)
                    os.ftruncate(fd, len(dirty.data))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return 0
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self._gate()
        fd = os.open(self._full(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        self._gate()
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._append.discard(fh)
        os.close(fh)
        return 0


class _Control(socketserver.StreamRequestHandler):
    fs: LabFs

    def handle(self) -> None:
        line = self.rfile.readline().decode(errors="replace").strip()
        self.wfile.write((self.server.fs.control(line) + "\n").encode())  # type: ignore[attr-defined]


class _ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def ctl(sock_path: str, command: str, *, timeout: float = 5.0) -> str:
    """Send one command to a running labfs and return its answer (``ok ...`` or ``error ...``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace").strip()


def mount(backing: str, mountpoint: str, ctl_path: str, *, lazy: bool) -> None:
    try:
        import mfusepy
    except (ImportError, OSError) as e:
        raise SystemExit(f"labfs: FUSE is not usable here: {e}") from None
    fs = LabFs(backing, lazy=lazy)
    if os.path.exists(ctl_path):
        os.unlink(ctl_path)
    server = _ControlServer(ctl_path, _Control)
    server.fs = fs  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="labfs-ctl", daemon=True)
    thread.start()
    options: dict[str, Any] = {"foreground": True, "fsname": "labfs", "default_permissions": True}
    if os.geteuid() == 0:
        options["allow_other"] = True
    if lazy:
        options.update(direct_io=True, attr_timeout=0, entry_timeout=0, negative_timeout=0)
    try:
        mfusepy.FUSE(fs, mountpoint, **options)
    finally:
        server.shutdown()
        server.server_close()
        if os.path.exists(ctl_path):
            os.unlink(ctl_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftlab.nemesis.fusefs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mount", help="mount BACKING at MOUNTPOINT (foreground)")
    m.add_argument("backing")
    m.add_argument("mountpoint")
    m.add_argument("--ctl", required=True, help="Unix socket for pause/resume/crash/status")
    m.add_argument("--lazy", action="store_true", help="keep un-fsynced data in memory; crash drops it")
    c = sub.add_parser("ctl", help="send a command to a mounted labfs")
    c.add_argument("socket")
    c.add_argument("command", choices=COMMANDS)
    args = parser.parse_args(argv)
    if args.cmd == "mount":
        for label, path in (("backing", args.backing), ("mountpoint", args.mountpoint)):
            if not os.path.isdir(path):
                print(f"labfs: {label} {path} is not a directory", file=sys.stderr)
                return 2
        mount(args.backing, args.mountpoint, args.ctl, lazy=args.lazy)
        return 0
    try:
        answer = ctl(args.socket, args.command)
    except OSError as e:
        print(f"labfs: cannot reach {args.socket}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(answer)
    return 0 if answer.startswith("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
