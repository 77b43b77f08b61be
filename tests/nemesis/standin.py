"""A stand-in DB for nemesis tests: each host runs `sleep` under a pid file (no Raft node needed)."""

from __future__ import annotations

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
