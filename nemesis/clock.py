"""Clock faults: bump, strobe, fast and slow clocks for the node processes, then reset.

Two mechanisms; ``clock_host`` says which a lab uses (``--nemesis-opt clock-mechanism=``) and
builds the host clock's commands. The default, on every lab, is libfaketime (Debian
``libfaketime``; the containers lab's rootfs and vagrant/provision.sh install it), preloaded
into every node process through the DB's ``HasStartEnv`` (``LD_PRELOAD``,
``FAKETIME_TIMESTAMP_FILE=<node_dir>/clock.rc``, ``FAKETIME_NO_CACHE=1``: the file is read again
on every clock call, so a change applies at once). ``setup`` writes ``+0 x1`` (no skew) and restarts each node under it (the DB must be
``Killable``). It works for any dynamically linked program on any lab where the library is
installed on the host, root or not; a statically linked node (Go) ignores it, and ``setup`` says
so when the library is missing. What it moves, measured by tests/nemesis/test_clock.py:

* ``CLOCK_REALTIME`` (``time.time()``) and ``CLOCK_MONOTONIC`` (``time.monotonic()``, asyncio's
  clock) both: an offset moves both, a rate makes both run fast or slow, and asyncio's timeouts
  follow the faked clock. So a backward bump makes the node's monotonic clock go back, which no
  kernel does: bumps here are harsher than Jepsen's ``date -s`` (that moves realtime only).

libfaketime computes ``fake = start + offset + (now - start) * rate`` from the process's start,
so changing the rate alone would jump the clock by ``(now - start) * (old - new)``. The pure
``FakeClock`` keeps the fake clock continuous instead: a rate change also moves the offset by
that amount, with ``start`` read from /proc (the node's pid is the process whose environment
names this host's file). Faults (op ``clock-skew``, value ``{"mode", "target"}``), healed by
``clock-reset`` (``+0 x1``: the clock is the real one again, a jump forward or back):

* ``bump``: offset += a seeded draw in ±[0.5, 1] x ``clock_offset`` seconds (default 5);
* ``strobe``: for ``clock_strobe_seconds`` (2) flip between +``clock_strobe`` (1 s) and the
  current offset every ``clock_strobe_period`` (0.1 s), inside the op (as Jepsen's strobe);
* ``fast`` / ``slow``: rate ``clock_fast`` (2.0) / ``clock_slow`` (0.5).

With ``clock-mechanism=host`` (vagrant and ssh labs only) the same offsets step the host's own
system clock with ``date -s`` instead (``CLOCK_REALTIME`` of every process there, never monotonic;
``fast``/``slow`` are refused: it only steps), and the DB needs nothing.

Options come from ``--nemesis-opt`` (``clock-slow=0.1``). The faults are in lane ``clock``, so a
skewed clock stays skewed while the main lane's partitions and kills come and go.
"""

from __future__ import annotations

import asyncio
import random
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from raftlab.nemesis import clock_host
from raftlab.nemesis.clock_host import HostClock
from raftlab.nemesis.package import Family, Fault, number_options
from raftlab.nemesis.targets import TargetError, choose, completion, failure, on_each

from raftlab.history import Op
from raftlab.protocols import HasStartEnv, Host, Killable, Lab

LIBRARY_PATHS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/"
                 "libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1")
DEFAULTS: Mapping[str, float] = {"clock_offset": 5.0, "clock_strobe": 1.0, "clock_strobe_period": 0.1,
                                 "clock_strobe_seconds": 2.0, "clock_fast": 2.0, "clock_slow": 0.5}
MODES = ("bump", "strobe", "fast", "slow")


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeClock:
    """libfaketime's setting for one process: ``fake = start + offset + (now - start) * rate``."""

    offset: float = 0.0
    rate: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"a clock rate must be positive, not {self.rate}")

    def spec(self) -> str:
        """The timestamp file's one line (libfaketime reads fractional seconds)."""
        return f"{self.offset:+.6f} x{self.rate:.6g}"

    def bumped(self, seconds: float) -> FakeClock:
        return replace(self, offset=self.offset + seconds)

    def at_rate(self, rate: float, elapsed: float) -> FakeClock:
        """The same fake time now (``elapsed`` real seconds since the process started), running at ``rate``."""
        return FakeClock(offset=self.offset + elapsed * (self.rate - rate), rate=rate)

    def skew(self, elapsed: float) -> float:
        """How far the fake clock is ahead of the real one, ``elapsed`` seconds after the start."""
        return self.offset + elapsed * (self.rate - 1.0)


def options(opts: Mapping[str, Any]) -> dict[str, float]:
    """The clock options, defaults filled in; a bad value is named (offsets may be 0)."""
    return number_options(opts, DEFAULTS, may_be_zero=("clock_offset", "clock_strobe"))


class ClockNemesis:
    """``clock-skew`` {mode, target} and ``clock-reset`` through libfaketime timestamp files, or
    through the host clocks (``clock-mechanism=host``)."""

    def __init__(self, db: object, rng: random.Random, opts: Mapping[str, Any]) -> None:
        self.db = db
        self.rng = rng
        self.opts = options(opts)
        self.want = clock_host.wanted(opts)
        self.mechanism = self.want
        self.lab: Lab | None = None
        self.hosts: list[Host] = []
        self.clocks: dict[Host, FakeClock] = {}
        self.host_clocks: dict[Host, HostClock] = {}
        self.unavailable: str | None = None

    def fs(self) -> frozenset[str]:
        return frozenset({"clock-skew", "clock-reset"})

    def rc_file(self, host: Host) -> str:
        return f"{self.lab.node_dir(host)}/clock.rc"  # type: ignore[union-attr, attr-defined]

    async def setup(self, lab: Lab) -> None:
        self.lab, self.hosts = lab, list(lab.hosts)
        try:
            self.mechanism = clock_host.choose(str(getattr(lab, "kind", "local")), self.want, await self._boot_ids(),
                                               _own_boot_id())
        except ValueError as e:
            self.unavailable = str(e)
            return
        if self.mechanism == "host":
            self.host_clocks = {h: HostClock(node_dir=lab.node_dir(h)) for h in self.hosts}  # type: ignore[attr-defined]
            return
        if not isinstance(self.db, HasStartEnv) or not isinstance(self.db, Killable):
            self.unavailable = "clock faults need a DB that can restart its nodes with an environment " \
                               "(Killable and HasStartEnv)"
            return
        db = self.db
        paths = " ".join(shlex.quote(p) for p in LIBRARY_PATHS)

        async def prepare(host: Host) -> None:
            r = await lab.remote(host).run(f"for p in {paths}; do [ -e \"$p\" ] && echo \"$p\" && exit 0; done; exit 1",
                                           check=False)
            if r.exit_status != 0:
                raise RuntimeError("no libfaketime (Debian: apt-get install libfaketime)")
            await self._write(host, FakeClock())
            db.set_start_env(host, {"LD_PRELOAD": r.stdout.split()[0], "FAKETIME_TIMESTAMP_FILE": self.rc_file(host),
                                    "FAKETIME_NO_CACHE": "1"})
            await db.kill(host)  # type: ignore[attr-defined]
            await db.start(host)  # type: ignore[attr-defined]

        _, failed = await on_each(self.hosts, prepare)
        if failed:
            self.unavailable = "clock faults unavailable: " + "; ".join(f"{h}: {r}" for h, r in sorted(failed.items()))

    async def _boot_ids(self) -> dict[Host, str]:
        """Each host's kernel boot id, read only when the host clock is asked for."""
        if self.want != "host":
            return {}
        out: dict[Host, str] = {}
        for h in self.hosts:
            out[h] = (await self.lab.remote(h).run(f"cat {clock_host.BOOT_ID}")).stdout  # type: ignore[union-attr]
        return out

    async def _write(self, host: Host, clock: FakeClock, *, heal: bool = False) -> None:
        if self.mechanism == "host":  # offsets only: invoke refuses rates before they get here
            self.host_clocks[host] = await clock_host.move(self.lab.remote(host), self.host_clocks[host],  # type: ignore[union-attr]
                                                           clock.offset, heal=heal)
            self.clocks[host] = clock
            return
        rc = shlex.quote(self.rc_file(host))
        await self.lab.remote(host).run(f"printf '%s\\n' {shlex.quote(clock.spec())} > {rc}.new && mv {rc}.new {rc}")  # type: ignore[union-attr]
        self.clocks[host] = clock

    def _syncing_stopped(self, host: Host) -> bool:
        return host in self.host_clocks and self.host_clocks[host].stopped

    async def _elapsed(self, host: Host) -> float:
        """Real seconds since the host's faked node process started (libfaketime's ``start``)."""
        rc = self.rc_file(host)
        # Both from boot: /proc/uptime (10 ms) and the start tick in /proc/PID/stat; btime is whole
        # seconds, and an error e here jumps the clock by e x (old rate - new rate).
        # The node is the process whose environment names this host's file (-z: NUL-separated entries).
        script = (f"e=$(grep -lzxF {shlex.quote('FAKETIME_TIMESTAMP_FILE=' + rc)} /proc/[0-9]*/environ 2>/dev/null "
                  "| head -1) && [ -n \"$e\" ] && d=${e%/environ} && "
                  "echo $(getconf CLK_TCK) $(sed 's/.*) //' $d/stat | cut -d' ' -f20) $(cut -d' ' -f1 /proc/uptime)")
        r = await self.lab.remote(host).run(script, check=False)  # type: ignore[union-attr]
        if r.exit_status != 0:
            raise RuntimeError("no running node under libfaketime")
        ticks, started, uptime = r.stdout.split()
        return float(uptime) - int(started) / int(ticks)

    async def invoke(self, op: Op) -> Op:
        if self.unavailable:
            return failure(op, self.unavailable)
        if op.f == "clock-reset":
            hosts = sorted(h for h, c in self.clocks.items() if c != FakeClock() or self._syncing_stopped(h))
            done, failed = await on_each(hosts, lambda h: self._write(h, FakeClock(), heal=True))
            return completion(op, {"targets": hosts, "done": done}, failed)
        value = op.value if isinstance(op.value, dict) else {}
        mode = value.get("mode")
        if mode not in MODES:
            return failure(op, f"unknown clock mode {mode!r} (known: {', '.join(MODES)})")
        try:
            targets = await choose(value.get("target", "one"), self.hosts, self.rng, self.db)
        except TargetError as e:
            return failure(op, str(e))
        bump = self.opts["clock_offset"] * self.rng.uniform(0.5, 1.0) * self.rng.choice((-1, 1))
        applied: dict[Host, str] = {}

        async def skew(host: Host) -> None:
            clock = self.clocks.get(host, FakeClock())
            if mode == "bump":
                await self._write(host, clock.bumped(bump))
            elif mode == "strobe":
                await self._strobe(host, clock)
            elif self.mechanism == "host":
                raise RuntimeError(f"clock-{mode} needs clock-mechanism=faketime (the host clock only steps)")
            else:
                rate = self.opts["clock_fast" if mode == "fast" else "clock_slow"]
                await self._write(host, clock.at_rate(rate, await self._elapsed(host)))
            applied[host] = self.clocks[host].spec()

        done, failed = await on_each(targets, skew)
        return completion(op, {"mode": mode, "targets": targets, "done": done, "clocks": applied}, failed)

    async def _strobe(self, host: Host, base: FakeClock) -> None:
        """Up, back, up, ...: a fixed number of flips (seconds / period, at least one), so the
        commands sent depend on the options only, never on how fast the writes went."""
        high = base.bumped(self.opts["clock_strobe"])
        flips = max(1, round(self.opts["clock_strobe_seconds"] / self.opts["clock_strobe_period"]))
        for flip in range(flips):
            await self._write(host, high if flip % 2 == 0 else base)
            await asyncio.sleep(self.opts["clock_strobe_period"])
        await self._write(host, base)

    async def teardown(self) -> None:
        if self.lab is not None and not self.unavailable:
            await on_each(sorted(self.clocks), lambda h: self._write(h, FakeClock(), heal=True))


def _own_boot_id() -> str:
    try:
        with open(clock_host.BOOT_ID) as f:
            return f.read()
    except OSError:
        return ""


def _values(mode: str) -> tuple[dict[str, str], ...]:
    return tuple({"mode": mode, "target": t} for t in ("one", "minority", "leader"))


def _fault(name: str, values: tuple[dict[str, str], ...], doc: str) -> Fault:
    return Fault(name=name, start="clock-skew", stop="clock-reset", values=values, color="#9FD3C7", doc=doc,
                 lane="clock")


FAMILY = Family(
    name="clock",
    needs="a Killable DB with HasStartEnv (dtkv) and libfaketime on the hosts (Debian: libfaketime); "
          "or clock-mechanism=host on vagrant/ssh hosts (root or sudo, GNU date)",
    heal_ranks={"clock-reset": 35},
    build=lambda ctx: ClockNemesis(ctx.db, ctx.rng, ctx.opts),
    faults=(
        _fault("clock", tuple(v for m in MODES for v in _values(m)), "any clock fault: bump, strobe, fast or slow"),
        _fault("clock-bump", _values("bump"), "move node clocks by ±clock-offset seconds (realtime and monotonic)"),
        _fault("clock-strobe", _values("strobe"), "flip node clocks back and forth for clock-strobe-seconds"),
        _fault("clock-fast", _values("fast"), "make node clocks run clock-fast times as fast"),
        _fault("clock-slow", _values("slow"), "make node clocks run at clock-slow of real speed"),
        _fault("clock-slow-leader", ({"mode": "slow", "target": "leader"},), "slow the leader's clock"),
    ),
)
