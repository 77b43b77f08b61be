"""Checker speed and memory, against porcupine's figures on this machine class.

Prints: the check time of every porcupine etcd history and their total (in this process), the
whole etcd set as ONE `raftlab check` process (wall clock, start-up included), kv c50-ok and
c50-bad, and the time and peak RSS of a generated 100k-operation kv history.

Porcupine (Go, 2 threads) on this machine class: 102 etcd logs in 0.43 s in all (slowest
etcd_002, 0.16 s), kv c50-ok 0.15 s, c50-bad 4-20 ms.

Usage: flock /tmp/raftlab-bench.lock .venv/bin/python bench/checker.py [--histories DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
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


def run_cli(*args: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (with its workers) and exit code of one `raftlab check` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "raftlab", "check", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--histories", type=Path, default=DEFAULT)
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
    print(f"etcd: {len(etcd)} histories, check time {total:.3f} s in all, slowest {slowest[1]} {slowest[0]:.3f} s "
          "(porcupine: 0.43 s, slowest 0.16 s)")
    wall, cpu, code = run_cli("--model", "cas-register", *map(str, etcd))
    print(f"etcd as one `raftlab check` process: {wall:.3f} s wall, {cpu:.3f} s CPU (exit {code}; "
          f"target <= 3x porcupine = 1.29 s)")
    wall, cpu, code = run_cli("--model", "cas-register", "--no-minimise", *map(str, etcd))
    print(f"  the same with --no-minimise (porcupine's work: no shrinking): {wall:.3f} s wall, {cpu:.3f} s CPU")
    for name in ("c50-ok", "c50-bad", "c10-ok", "c10-bad"):
        path = root / "porcupine" / "kv" / f"{name}.txt"
        history = formats.read_history(path)
        t = time.perf_counter()
        result = check(history, "kv-append")
        dt = time.perf_counter() - t
        wall, cpu, code = run_cli("--model", "kv-append", str(path))
        print(f"kv {name}: {result.valid} in {dt:.3f} s; as a `raftlab check` process {wall:.3f} s wall "
              f"(reading included, exit {code})")
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
