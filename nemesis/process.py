"""Process faults: kill (SIGKILL, healed by start) and pause (SIGSTOP, healed by SIGCONT).

The nemesis decides *whom* to hit (``raftlab.nemesis.targets``: one, the leader, a minority, a
majority, all) and asks the DB to do it (``Killable.kill/start``, ``Pausable.pause/resume``),
because only the DB knows how its processes run. ``signal_pid_file``, ``pid_file_process`` and
``process_state`` are the shell pieces a DB uses for that on any ``Remote``. Heal ranks:
``resume`` early (a paused process holds up nothing else, but must run before the cluster can
recover), ``start`` last (a node restarts once its disk, network and host are back).
"""

from __future__ import annotations

import random
import shlex

from raftlab.nemesis.package import Family, Fault
from raftlab.nemesis.targets import TargetError, choose, completion, failure, on_each

from raftlab.history import Op
from raftlab.protocols import Host, Killable, Lab, Pausable, Remote


class ProcessNemesis:
    """kill/start and pause/resume through the DB's Killable and Pausable capabilities."""

    def __init__(self, db: object, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        self.hosts: list[Host] = []
        self.killed: set[Host] = set()
        self.paused: set[Host] = set()

    def fs(self) -> frozenset[str]:
        return frozenset({"kill", "start", "pause", "resume"})

    async def setup(self, lab: Lab) -> None:
        self.hosts = list(lab.hosts)

    async def invoke(self, op: Op) -> Op:
        needs = Killable if op.f in ("kill", "start") else Pausable
        if not isinstance(self.db, needs):
            return failure(op, f"the DB cannot {op.f} (it is not {needs.__name__})")
        if op.f in ("kill", "pause"):
            try:
                targets = await choose(op.value, self.hosts, self.rng, self.db)
            except TargetError as e:
                return failure(op, str(e))
            action = self.db.kill if op.f == "kill" else self.db.pause  # type: ignore[attr-defined]
            done, failed = await on_each(targets, action)
            (self.killed if op.f == "kill" else self.paused).update(done)
            return completion(op, {"targets": targets, "done": done}, failed)
        # Healers: the hosts we hit (or the ones named), in any state; "all" restarts every host.
        hit = self.killed if op.f == "start" else self.paused
        hosts = list(self.hosts) if op.value == "all" else sorted(hit)
        action = self.db.start if op.f == "start" else self.db.resume  # type: ignore[attr-defined]
        done, failed = await on_each(hosts, action)
        hit.difference_update(done)
        return completion(op, {"targets": hosts, "done": done}, failed)

    async def teardown(self) -> None:
        if self.paused and isinstance(self.db, Pausable):
            await on_each(sorted(self.paused), self.db.resume)
            self.paused.clear()


# --- shell pieces for DB implementations -----------------------------------------------------


def _owned_pid(pid_file: str) -> str:
    """A shell test that sets ``$p`` to the pid in ``pid_file`` and succeeds only if that process
    is alive and works in the pid file's directory (or below it).

    Why the directory: a pid file outlives its process, and after a power cut or a reboot the
    host's fresh PID namespace hands out the same pids in the same order (measured on the
    containers lab: a node started by the same SSH commands got pid 66 on every boot), so the
    stale pid names whatever runs now, often the very shell that checks it. Every node a DB
    starts runs in its node directory (the rule docs/campaigns.md states and ``raftlab system
    check`` tests), an unrelated process never does; a zombie has no cwd, so it is not alive.
    """
    pf = shlex.quote(pid_file)
    return (f"p=$(cat {pf} 2>/dev/null) && [ -n \"$p\" ] && d=$(cd \"$(dirname {pf})\" && pwd -P) "
            f"&& c=$(readlink \"/proc/$p/cwd\" 2>/dev/null) && case \"$c/\" in \"$d\"/*) true;; *) false;; esac")


async def pid_file_process(remote: Remote, pid_file: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is the one that wrote it, else None."""
    r = await remote.run(f"{_owned_pid(pid_file)} && echo $p", check=False)
    return int(r.stdout.split()[0]) if r.exit_status == 0 and r.stdout.split() else None


async def signal_pid_file(remote: Remote, pid_file: str, signal: str, *, wait_gone: float = 0.0) -> int | None:
    """Send ``signal`` (KILL, STOP, CONT, TERM) to the pid in ``pid_file``; the pid, or None if
    not running (no file, a dead or zombie process, or a pid now used by another process, which
    is never signalled: see ``_owned_pid``).

    With ``wait_gone`` > 0, wait up to that many seconds for the process to disappear (a zombie
    counts as gone) and raise ``TimeoutError`` if it does not.
    """
    r = await remote.run(f"{_owned_pid(pid_file)} && kill -{signal} \"$p\" 2>/dev/null && echo $p", check=False)
    if r.exit_status != 0 or not r.stdout.split():
        return None
    pid = int(r.stdout.split()[0])
    if wait_gone > 0:
        steps = max(1, int(wait_gone / 0.05))
        gone = (f"i=0; while [ $i -lt {steps} ]; do s=$(sed 's/.*) //;s/ .*//' /proc/{pid}/stat 2>/dev/null) || exit 0; "
                f"[ \"$s\" = Z ] && exit 0; sleep 0.05; i=$((i+1)); done; exit 1")
        if (await remote.run(gone, check=False)).exit_status != 0:
            raise TimeoutError(f"pid {pid} still exists {wait_gone}s after SIGKILL (blocked on a paused disk?)")
    return pid


async def process_state(remote: Remote, pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (R, S, D, T, Z, ...), or None if it is gone."""
    r = await remote.run(f"sed 's/.*) //;s/ .*//' /proc/{int(pid)}/stat", check=False)
    return r.stdout.strip() or None if r.exit_status == 0 else None


_KILL, _PAUSE = "#E9A4A0", "#C5A0E9"
FAMILY = Family(
    name="process",
    needs="a DB that is Killable (kill) or Pausable (pause); -leader faults also HasPrimaries",
    heal_ranks={"resume": 30, "start": 70},
    build=lambda ctx: ProcessNemesis(ctx.db, ctx.rng),
    faults=(
        Fault(name="kill", start="kill", stop="start", values=("one", "minority", "leader"), color=_KILL,
              doc="SIGKILL node processes, then start them again"),
        Fault(name="kill-leader", start="kill", stop="start", values=("leader",), color=_KILL,
              doc="SIGKILL the current leader, then start it again"),
        Fault(name="kill-majority", start="kill", stop="start", values=("majority",), color=_KILL,
              doc="SIGKILL a majority at once (the cluster stops until they restart)"),
        # a majority too: resumed together, with their election timeouts overdue, they stand at
        # once, the contested same-term elections a vote bug needs (one node at a time never does)
        Fault(name="pause", start="pause", stop="resume", values=("one", "minority", "leader", "majority"),
              color=_PAUSE, doc="SIGSTOP node processes (one, a minority, the leader or a majority), then SIGCONT"),
        Fault(name="pause-leader", start="pause", stop="resume", values=("leader",), color=_PAUSE,
              doc="SIGSTOP the current leader, then SIGCONT"),
    ),
)
