"""A stand-in DB for nemesis tests: each host runs `sleep` under a pid file (no Raft node needed)."""

from __future__ import annotations

import shlex

from raftlab.nemesis.process import signal_pid_file

from raftlab.protocols import Host


class SleepDB:
    """Killable, Pausable and HasPrimaries over any lab, with `sleep` as the node."""

    def __init__(self, lab: object, leader: Host | None = "n2") -> None:
        self.lab = lab
        self.leader = leader

    def pid_file(self, host: Host) -> str:
        return f"{self.lab.node_dir(host)}/node.pid"  # type: ignore[attr-defined]

    async def start(self, host: Host) -> None:
        d = self.lab.node_dir(host)  # type: ignore[attr-defined]
        await self.lab.remote(host).run(  # type: ignore[attr-defined]
            f"cd {d}; nohup sleep 600 >/dev/null 2>&1 </dev/null & echo $! > {self.pid_file(host)}")

    async def kill(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "KILL", wait_gone=5)  # type: ignore[attr-defined]

    async def pause(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "STOP")  # type: ignore[attr-defined]

    async def resume(self, host: Host) -> None:
        await signal_pid_file(self.lab.remote(host), self.pid_file(host), "CONT")  # type: ignore[attr-defined]

    async def primaries(self) -> list[Host]:
        return [self.leader] if self.leader else []


CLOCK_NODE = ("import time, sys\n"
              "out = open(sys.argv[1], 'a', buffering=1)\n"
              "while True:\n"
              "    out.write(f'{time.time():.6f} {time.monotonic():.6f}\\n')\n"
              "    time.sleep(0.02)\n")


class ClockDB(SleepDB):
    """A node that writes its own clocks (``time.time()`` and ``time.monotonic()``) to ``clock.out``
    every 20 ms: Killable and HasStartEnv, so the clock faults can run it under libfaketime."""

    def __init__(self, lab: object, python: str) -> None:
        super().__init__(lab)
        self.python = python
        self.env: dict[Host, dict[str, str]] = {}

    def set_start_env(self, host: Host, env: dict[str, str]) -> None:
        self.env[host] = dict(env)

    def clock_file(self, host: Host) -> str:
        return f"{self.lab.node_dir(host)}/clock.out"  # type: ignore[attr-defined]

    async def start(self, host: Host) -> None:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.get(host, {}).items()))
        run = f"env {env} {shlex.quote(self.python)} -c {shlex.quote(CLOCK_NODE)} {shlex.quote(self.clock_file(host))}"
        await self.lab.remote(host).run(  # type: ignore[attr-defined]
            f"rm -f {self.clock_file(host)}; nohup {run} >/dev/null 2>&1 </dev/null & echo $! > {self.pid_file(host)}")
