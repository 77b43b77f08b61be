"""A deliberately broken system module for ``raftlab system check``: its membership change does nothing.

It is the reference node (raftlab/systems/dtkv.py) except that ``set_members`` returns at once
without asking for the change, the mistake of a change that is sent but never awaited or never
sent: the check must name ``Reconfigurable.set_members (shrink)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftlab.protocols import Host, HostLab
from raftlab.systems import System, SystemOptions, dtkv


class ForgetfulMembersDB(dtkv.DtkvDB):
    async def set_members(self, hosts: Sequence[Host]) -> None:
        return None


def system(lab: HostLab, options: SystemOptions) -> System:
    base = dtkv.system(lab, options)
    assert isinstance(base.db, dtkv.DtkvDB)
    db = ForgetfulMembersDB(lab, base.db.options, seed=base.db.seed)
    return System(name="brokenmembers", db=db, client=dtkv.DtkvClient(db, options.op_timeout))
