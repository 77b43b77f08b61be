"""A system module with a bug in its client: ``open()`` raises AttributeError (the toy system otherwise).

The run must stop at once naming the call, the exception and the stage, with the traceback kept in
the run, instead of waiting out the recovery timeout as if the cluster were down.
"""

from __future__ import annotations

from toysys import ToyClient, ToyDB

from raftlab.protocols import Host, HostLab
from raftlab.systems import System, SystemOptions


class BuggyClient(ToyClient):
    async def open(self, host: Host) -> ToyClient:
        return self.no_such_attribute  # type: ignore[attr-defined, no-any-return]


def system(lab: HostLab, options: SystemOptions) -> System:
    db = ToyDB(lab, options)
    return System(name="badopen", db=db, client=BuggyClient(db, options.op_timeout))
