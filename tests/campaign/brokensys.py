"""A deliberately broken system module for ``raftlab system check``: its kill forgets the process.

It is the toy system (toysys.py) except that ``kill`` only removes the pid file and returns, the
mistake of a kill that does not wait for the pid to be gone: the check must name ``Killable.kill``.
"""

from __future__ import annotations

from toysys import ToyClient, ToyDB

from raftlab.protocols import Host, HostLab
from raftlab.systems import System, SystemOptions


class ForgetfulDB(ToyDB):
    async def kill(self, host: Host) -> None:
        await self.lab.remote(host).run(f"rm -f {self.pid_file(host)}")


def system(lab: HostLab, options: SystemOptions) -> System:
    db = ForgetfulDB(lab, options)
    return System(name="broken", db=db, client=ToyClient(db, options.op_timeout))
