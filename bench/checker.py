"""Checker speed and memory, side by side with porcupine when a porcupine binary is given.

Prints: the check time of every porcupine etcd history and their total (in this process), the
whole etcd set as ONE `raftlab check` process (wall clock, start-up included; with shrinking and
with --no-minimise), kv c50-ok and c50-bad as whole processes, and the time and peak RSS of a
generated 100k-operation kv history.

The machine is shared, so the side-by-side figures are medians of ``--rounds`` rounds (default
3) that alternate the two tools. Every `raftlab check` process runs with its bytecode cached, as
an installed tool has it (pip compiles on install): one untimed run writes it first, whatever
PYTHONDONTWRITEBYTECODE says.

Porcupine. With ``--porcupine BINARY`` (or ``RAFTLAB_PORCUPINE=BINARY``), the binary is run
first, with ``RAFTLAB_HISTORIES`` set to the histories folder; it must print one line
``RESULT <name> <seconds> <verdict>`` per history it checked (``etcd_000.log`` ...,
``kv-c50-ok``, ``kv-c50-bad``), the seconds being porcupine's check time alone (parsing
excluded). raftlab does not ship or build it (build one from porcupine's own test parsers and
models, outside this repository). Without it, raftlab's figures are printed alone.

Usage: flock /tmp/raftlab-bench.lock .venv/bin/python bench/checker.py [--histories DIR] [--porcupine BIN]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raftlab.checker import check

from raftlab import formats
from raftlab.history import History, Op, OpType

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "histories"


def generated_kv(n_ops: int, keys: int, seed: int) -> History:
    """A linearizable kv history: each op takes effect at a random moment inside its interval."""
    rng = random.Random(seed)
    events: list[Op] = []
    state: dict[str, int] = {}
    open_ops: dict[int, tuple[str, str, object]] = {}
    procs = 16
    done = 0
    while done < n_ops or open_ops:
        p = rng.randrange(procs)
        if p in open_ops:
            f, key, value = open_ops.pop(p)
            if f == "read":
                events.append(Op(process=p, type=OpType.OK, f=f, key=key, value=state.get(key)))
            else:
                events.append(Op(process=p, type=OpType.OK, f=f, key=key, value=value))
        elif done < n_ops:
            f = rng.choice(("read", "write"))
            key = f"k{rng.randrange(keys)}"
            value = rng.randrange(100) if f == "write" else None
            events.append(Op(process=p, type=OpType.INVOKE, f=f, key=key, value=value))
            if f == "write":
                state[key] = value  # takes effect between invoke and completion
            open_ops[p] = (f, key, value)
            done += 1
    return History(events)


CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_cli(*args: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (with its workers) and exit code of one `raftlab check` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "raftlab", "check", *args], capture_output=True, text=True,
                          env=CLI_ENV)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, proc.returncode


def porcupine_times(binary: str, root: Path) -> dict[str, float]:
    """name -> porcupine's check seconds, from the binary's RESULT lines."""
    proc = subprocess.run([binary], capture_output=True, text=True, env={**os.environ, "RAFTLAB_HISTORIES": str(root)})
    times = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "RESULT":
            times[parts[1]] = float(parts[2])
    if not times:
        sys.exit(f"{binary} printed no RESULT lines (exit {proc.returncode}): {proc.stderr[-300:]}")
    return times


def ratio(ours: float, theirs: float | None) -> str:
    return "" if theirs is None else f" = {ours / theirs:.2f}x porcupine's {theirs:.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--histories", type=Path, default=DEFAULT)
    ap.add_argument("--porcupine", default=os.environ.get("RAFTLAB_PORCUPINE"), metavar="BIN",
                    help="a porcupine binary printing RESULT lines (see above)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the side-by-side figures")
    args = ap.parse_args()
    root: Path = args.histories
    etcd = sorted((root / "porcupine" / "jepsen").glob("etcd_*.log"))
    if not etcd:
        sys.exit(f"no porcupine etcd histories under {root}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (the machine is shared)")
    print(f"{'history':<18} {'verdict':<8} {'seconds':>8}")
    total, slowest = 0.0, (0.0, "")
    for path in etcd:
        history = formats.read_history(path)
        t = time.perf_counter()
        result = check(history, "cas-register")
        dt = time.perf_counter() - t
        total += dt
        slowest = max(slowest, (dt, path.name))
        print(f"{path.name:<18} {result.valid!s:<8} {dt:8.4f}")
    print(f"etcd: {len(etcd)} histories, check time {total:.3f} s in all (shrinking included), "
          f"slowest {slowest[1]} {slowest[0]:.3f} s")
    kv = {name: root / "porcupine" / "kv" / f"{name}.txt" for name in ("c50-ok", "c50-bad", "c10-ok", "c10-bad")}
    for name, path in kv.items():
        history = formats.read_history(path)
        t = time.perf_counter()
        result = check(history, "kv-append")
        print(f"kv {name}: {result.valid} in {time.perf_counter() - t:.3f} s in this process")
    runs: dict[str, tuple[str, ...]] = {
        "etcd": ("--model", "cas-register", *map(str, etcd)),
        "etcd --no-minimise": ("--model", "cas-register", "--no-minimise", *map(str, etcd)),
        **{f"kv-{name}": ("--model", "kv-append", str(path)) for name, path in kv.items()},
    }
    run_cli(*runs["kv-c10-ok"])  # writes the bytecode cache: every timed process reads it
    walls: dict[str, list[float]] = {what: [] for what in runs}
    cpus: dict[str, list[float]] = {what: [] for what in runs}
    codes: dict[str, int] = {}
    porc: dict[str, list[float]] = {}
    for _ in range(max(1, args.rounds)):
        if args.porcupine:
            for name, seconds in porcupine_times(args.porcupine, root).items():
                porc.setdefault(name, []).append(seconds)
        for what, cli_args in runs.items():
            wall, cpu, codes[what] = run_cli(*cli_args)
            walls[what].append(wall)
            cpus[what].append(cpu)
    rounds = f"medians of {max(1, args.rounds)} alternating rounds"
    theirs: dict[str, float | None] = {what: None for what in runs}
    if porc:
        per_round = [sum(t[r] for name, t in porc.items() if name.startswith("etcd_")) for r in range(len(walls["etcd"]))]
        theirs["etcd"] = theirs["etcd --no-minimise"] = statistics.median(per_round)
        for what in runs:
            if what in porc:
                theirs[what] = statistics.median(porc[what])
        print(f"porcupine: {sum(n.startswith('etcd_') for n in porc)} etcd logs in {theirs['etcd']:.3f} s of "
              f"check time ({rounds})")
    print(f"as one `raftlab check` process each, wall clock, start-up and reading included ({rounds}):")
    for what in runs:
        wall, cpu = statistics.median(walls[what]), statistics.median(cpus[what])
        target = {"etcd": "; target <= 1.5x", "kv-c50-ok": "; target <= 1.5x", "kv-c50-bad": "; target < 0.5 s"}
        print(f"  {what:<20} {wall:.3f} s wall{ratio(wall, theirs[what])}, {cpu:.3f} s CPU "
              f"(exit {codes[what]}{target.get(what, '')})")
    history = generated_kv(100_000, keys=100, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kv100k.jsonl"
        history.write(path)
        del history
        code = ("import resource,time;from raftlab.history import History;from raftlab.checker import check;"
                f"h=History.read({str(path)!r});t=time.perf_counter();r=check(h,'kv');"
                "print(r.valid, round(time.perf_counter()-t,3), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    print(f"generated kv, 100,000 operations on 100 keys: {out[0]} in {out[1]} s, peak RSS {int(out[2]) // 1024} MiB")


if __name__ == "__main__":
    main()
