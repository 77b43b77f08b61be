"""Which clock mechanism a lab uses, and the host-clock mechanism's commands (``date -s``).

Two mechanisms move a node's clock (nemesis/clock.py runs both):

* ``faketime`` (the default, every lab): libfaketime preloaded into the node process, its
  timestamp file rewritten over the lab's ``Remote``. It moves ``CLOCK_REALTIME`` and
  ``CLOCK_MONOTONIC`` of the node process only, by offsets and rates.
* ``host`` (opt-in, ``--nemesis-opt clock-mechanism=host``): the host's own system clock, stepped
  with GNU ``date -s "now +S seconds"`` (read and set in one process, so a step loses well under a
  millisecond). It moves ``CLOCK_REALTIME`` of *every* process on the host and never
  ``CLOCK_MONOTONIC`` (no kernel steps that), as Jepsen's ``date -s``/``settimeofday`` bumps; it
  only steps, so ``fast``/``slow`` need ``faketime``. It needs no restart of the node and works for
  statically linked nodes too.

The host clock is only the node's own where the node runs on its own kernel: ``vagrant`` VMs and
``ssh`` machines. On
``local``, ``netns`` and ``containers`` the "host" shares this machine's kernel, whose
``CLOCK_REALTIME`` no namespace can offset: stepping it would move the controller's clock and
every other program's, so ``host`` is refused there (``choose``). Whatever the kind, a host whose
kernel ``boot_id`` is this machine's (an ``ssh`` nodes file naming this machine) is refused too.

While a host's clock is off, time sync would pull it back: the first step away from the real time
stops whichever of ``TIME_SYNC`` units is active and lists them in ``<node dir>/clock.sync`` on the
host; the heal (``clock-reset``, teardown: back to the real time) restarts exactly those and removes
the file, so a controller that died mid-fault leaves the host a record of what to restart. Every
command string is built by the pure ``HostClock.plan``, which tests/nemesis/testdata/clock_host.txt
drives as a transcript of what is sent over SSH.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftlab.protocols import Host, Remote

MECHANISMS = ("faketime", "host")
HOST_CLOCK_LABS = ("ssh", "vagrant")  # kinds whose hosts run their own kernel
SHARED_KERNEL_LABS = ("local", "netns", "containers")
TIME_SYNC = ("systemd-timesyncd", "chrony", "chronyd", "ntp", "ntpsec", "openntpd", "vboxadd-service")  # VirtualBox guest time sync too
BOOT_ID = "/proc/sys/kernel/random/boot_id"  # one per kernel boot: same value, same clock


def wanted(opts: Mapping[str, Any]) -> str:
    """The ``clock-mechanism`` option (default ``faketime``); an unknown one is named."""
    value = str(opts.get("clock_mechanism", "faketime"))
    if value not in MECHANISMS:
        raise ValueError(f"nemesis option clock-mechanism must be one of {', '.join(MECHANISMS)}, not {value!r}")
    return value


def choose(kind: str, want: str, boot_ids: Mapping[Host, str] | None = None, own_boot_id: str = "") -> str:
    """The mechanism a lab of ``kind`` uses; refuses the host clock where it is not the node's own
    (``boot_ids``: each host's kernel boot id, compared with this machine's)."""
    if want != "host":
        return want
    if kind in SHARED_KERNEL_LABS:
        raise ValueError(f"clock-mechanism=host is refused on the {kind} lab: its hosts share this machine's kernel "
                         "clock, so it would set this machine's clock; use the default (libfaketime)")
    if kind not in HOST_CLOCK_LABS:
        raise ValueError(f"clock-mechanism=host is only for the {' and '.join(HOST_CLOCK_LABS)} labs, not {kind!r}")
    same = sorted(h for h, b in (boot_ids or {}).items() if b.strip() == own_boot_id.strip() != "")
    if same:
        raise ValueError(f"clock-mechanism=host is refused: {', '.join(same)} run on this machine's kernel "
                         "(same boot id), so it would set this machine's clock")
    return want


def _sync_file(node_dir: str) -> str:
    return shlex.quote(f"{node_dir}/clock.sync")


def stop_sync(node_dir: str) -> str:
    """Stop every active time-sync unit, naming each in the host's ``clock.sync`` (appending:
    a second stop before a restore keeps the first list)."""
    units = " ".join(TIME_SYNC)
    return (f"for u in {units}; do systemctl is-active --quiet \"$u\" 2>/dev/null && systemctl stop \"$u\" && "
            f"echo \"$u\" >> {_sync_file(node_dir)}; done; true")


def restore_sync(node_dir: str) -> str:
    """Start again what ``stop_sync`` stopped, then forget it."""
    f = _sync_file(node_dir)
    return f"if [ -f {f} ]; then for u in $(sort -u {f}); do systemctl start \"$u\"; done; rm -f {f}; fi"


def step(seconds: float) -> str:
    """Step ``CLOCK_REALTIME`` by ``seconds`` relative to itself, in one ``date`` process."""
    return f"date -s 'now {seconds:+.6f} seconds' >/dev/null"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostClock:
    """How far one host's system clock has been stepped from the real time (``offset`` seconds),
    and whether raftlab has stopped its time sync (``stopped``; invariant: set while offset != 0)."""

    node_dir: str
    offset: float = 0.0
    stopped: bool = False

    def plan(self, offset: float, *, heal: bool = False) -> tuple[list[str], HostClock]:
        """The commands that take the host clock to ``offset`` from the real time, and the new state.
        The first step stops time sync; only a heal (back to 0) restarts it, so a strobe passing
        through 0 does not restart it between flips."""
        if heal and offset != 0.0:
            raise ValueError(f"a heal puts the clock back to the real time, not {offset:+.6f} s from it")
        commands: list[str] = []
        delta = offset - self.offset
        if delta != 0.0 and not self.stopped:
            commands.append(stop_sync(self.node_dir))
        if delta != 0.0:
            commands.append(step(delta))
        if heal:
            commands.append(restore_sync(self.node_dir))
        return commands, HostClock(node_dir=self.node_dir, offset=offset, stopped=not heal and (self.stopped or delta != 0.0))


async def move(remote: Remote, clock: HostClock, offset: float, *, heal: bool = False) -> HostClock:
    """Run ``clock.plan(offset)`` on the host; the new state once every command succeeded."""
    commands, after = clock.plan(offset, heal=heal)
    for cmd in commands:
        await remote.run(cmd)
    return after
