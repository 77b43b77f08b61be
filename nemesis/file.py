"""File faults: bit-flip or truncate a node's WAL or snapshot files while it is down (Jepsen's
``bitflip-wal``, ``bitflip-snap``, ``truncate-wal``), then start it and see what it does.

The system says which files are which through the optional ``HasDataFiles`` capability
(raftlab.protocols): ``data_files(host)`` maps a kind (``wal``, ``snapshot``) to a shell glob.
``file-corrupt`` {kind, target} kills each target (a minority, so the cluster keeps a quorum),
copies its data directory aside, damages one file of that kind (the choice of file, offsets and
length come from the nemesis rng, and the damage is done by ``DAMAGE`` on the host, the standard
library only), and starts the node again. Exactly one of two things must follow, and the
completion says which, per host:

* ``recovered``: the node started and serves (it detected and cut a torn tail, say, or the
  damage was in bytes it never reads again);
* ``refused``: the node would not start; the reason is its own last output (dtkv names the file
  and the byte offset: ``StorageError: .../wal/...seg: offset 1234: corrupt entry ...``).

A refusing node is reported as such in the history, never as a silent loss. ``file-heal`` puts
the saved copy back on every refusing node and starts it (a node that recovered keeps its data:
restoring it would throw away what it wrote since), so the replicas can be compared afterwards.
"""

from __future__ import annotations

import json
import random
import shlex
from collections.abc import Mapping
from typing import Any

from raftlab.nemesis.package import Family, Fault, number_options
from raftlab.nemesis.targets import TargetError, choose, completion, failure, on_each

from raftlab.history import Op
from raftlab.protocols import HasDataFiles, Host, Killable, Lab

KINDS = {"bitflip-wal": ("wal", "bitflip"), "bitflip-snap": ("snapshot", "bitflip"),
         "truncate-wal": ("wal", "truncate")}
BACKUP = ".file-fault-backup"

DAMAGE = r"""
import glob, json, os, random, sys
pattern, how, seed, bits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f) and os.path.getsize(f) > 0)
if not files:
    print(json.dumps({"error": "no file matches " + pattern})); sys.exit(0)
path = rng.choice(files)
size = os.path.getsize(path)
if how == "truncate":
    cut = rng.randint(1, min(size, 4096))
    os.truncate(path, size - cut)
    done = {"file": path, "size": size, "truncated_to": size - cut}
else:
    offsets = sorted(rng.randrange(size) for _ in range(bits))
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off); b = f.read(1)[0]; f.seek(off); f.write(bytes([b ^ (1 << rng.randrange(8))]))
    done = {"file": path, "size": size, "flipped": offsets}
with open(path, "rb+") as f:
    os.fsync(f.fileno())
print(json.dumps(done))
"""


def options(opts: Mapping[str, Any]) -> dict[str, int]:
    bits = number_options(opts, {"file_bits": 1.0})["file_bits"]
    if bits != int(bits):
        raise ValueError(f"nemesis option file-bits must be a whole number, not {bits:g}")
    return {"file_bits": int(bits)}


class FileNemesis:
    """``file-corrupt`` {kind, target} and ``file-heal`` on the files ``HasDataFiles`` names."""

    def __init__(self, db: object, rng: random.Random, opts: Mapping[str, Any]) -> None:
        self.db = db
        self.rng = rng
        self.opts = options(opts)
        self.lab: Lab | None = None
        self.hosts: list[Host] = []
        self.refused: dict[Host, str] = {}
        self.backups: set[Host] = set()

    def fs(self) -> frozenset[str]:
        return frozenset({"file-corrupt", "file-heal"})

    async def setup(self, lab: Lab) -> None:
        self.lab, self.hosts = lab, list(lab.hosts)

    def _unsupported(self) -> str | None:
        if not isinstance(self.db, HasDataFiles) or not isinstance(self.db, Killable):
            return "file faults need a DB that is Killable and names its files (HasDataFiles.data_files)"
        return None

    def _data_dir(self, host: Host) -> str:
        return self.db.data_dir(host) if hasattr(self.db, "data_dir") else f"{self.lab.node_dir(host)}/data"  # type: ignore[attr-defined, union-attr]

    async def invoke(self, op: Op) -> Op:
        why = self._unsupported()
        if why or self.lab is None:
            return failure(op, why or "file faults used before setup")
        if op.f == "file-heal":
            hosts = sorted(self.refused)
            done, failed = await on_each(hosts, self._restore)
            return completion(op, {"targets": hosts, "done": done}, failed)
        value = op.value if isinstance(op.value, dict) else {}
        if value.get("kind") not in KINDS:
            return failure(op, f"unknown file fault {value.get('kind')!r} (known: {', '.join(KINDS)})")
        kind, how = KINDS[value["kind"]]
        try:
            targets = await choose(value.get("target", "one"), self.hosts, self.rng, self.db)
        except TargetError as e:
            return failure(op, str(e))
        seeds = {h: self.rng.randrange(2**32) for h in targets}
        damage: dict[Host, Any] = {}
        recovered: list[Host] = []
        refused: dict[Host, str] = {}

        async def hit(host: Host) -> None:
            pattern = self.db.data_files(host).get(kind)  # type: ignore[attr-defined]
            if pattern is None:
                raise RuntimeError(f"the DB names no {kind} files")
            remote = self.lab.remote(host)  # type: ignore[union-attr]
            await self.db.kill(host)  # type: ignore[attr-defined]
            data = shlex.quote(self._data_dir(host))
            await remote.run(f"rm -rf {data}{BACKUP} && cp -a {data} {data}{BACKUP}")
            self.backups.add(host)
            python = self.lab.python(host)  # type: ignore[union-attr, attr-defined]
            r = await remote.run(" ".join(shlex.quote(a) for a in [python, "-c", DAMAGE, pattern, how,
                                                                    str(seeds[host]), str(self.opts["file_bits"])]))
            damage[host] = json.loads(r.stdout.strip().splitlines()[-1])
            if "error" in damage[host]:  # nothing was damaged: start the node as it was, and say so
                await self.db.start(host)  # type: ignore[attr-defined]
                raise RuntimeError(damage[host]["error"])
            try:
                await self.db.start(host)  # type: ignore[attr-defined]
                recovered.append(host)
            except Exception as e:  # the node would not start: that is an answer, recorded as such
                refused[host] = f"{type(e).__name__}: {e}"

        done, failed = await on_each(targets, hit)
        self.refused.update(refused)
        return completion(op, {"kind": value["kind"], "targets": targets, "done": done, "damage": damage,
                               "recovered": sorted(recovered), "refused": refused}, failed)

    async def _restore(self, host: Host) -> None:
        data = shlex.quote(self._data_dir(host))
        await self.lab.remote(host).run(f"rm -rf {data} && mv {data}{BACKUP} {data}")  # type: ignore[union-attr]
        self.backups.discard(host)
        await self.db.start(host)  # type: ignore[attr-defined]
        self.refused.pop(host, None)

    async def teardown(self) -> None:
        if self.lab is None:
            return
        for host in sorted(self.refused):
            await self._restore(host)
        for host in sorted(self.backups):
            await self.lab.remote(host).run(f"rm -rf {shlex.quote(self._data_dir(host) + BACKUP)}", check=False)
        self.backups.clear()


def _fault(name: str, kinds: tuple[str, ...], doc: str) -> Fault:
    return Fault(name=name, start="file-corrupt", stop="file-heal", color="#B0A0E9", doc=doc,
                 values=tuple({"kind": k, "target": t} for k in kinds for t in ("one", "minority")))


FAMILY = Family(
    name="file",
    needs="a Killable DB that names its files (HasDataFiles: dtkv's WAL segments; snapshots once it has them)",
    heal_ranks={"file-heal": 55},
    build=lambda ctx: FileNemesis(ctx.db, ctx.rng, ctx.opts),
    faults=(
        _fault("file", tuple(KINDS), "any file fault: bitflip-wal, bitflip-snap or truncate-wal"),
        _fault("bitflip-wal", ("bitflip-wal",), "flip file-bits bits of a WAL file of a down node, then start it"),
        _fault("bitflip-snap", ("bitflip-snap",), "flip file-bits bits of a snapshot file of a down node, then start it"),
        _fault("truncate-wal", ("truncate-wal",), "cut up to 4 KiB off a WAL file of a down node, then start it"),
    ),
)
