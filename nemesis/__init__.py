"""raftlab.nemesis: faults, each registered with its healer, composed into a seeded package.

``FAULTS`` is the registry (``--nemesis kill,partition,...`` names its keys); ``package()`` builds
the ``Package`` a campaign runs. Every fault and heal is an op of process ``nemesis`` whose
``info`` completion says what really happened; a fault that did not apply carries an ``error``
and is never assumed to have worked.

| fault | starts (f, value) | heals (f) | needs |
| --- | --- | --- | --- |
| kill | kill one/minority/leader | start | DB Killable |
| kill-leader | kill leader | start | Killable + HasPrimaries |
| kill-majority | kill majority | start | DB Killable |
| pause | pause one/minority/leader | resume | DB Pausable |
| pause-leader | pause leader | resume | Pausable + HasPrimaries |
| partition | start-partition SHAPE | stop-partition | lab.net |
| partition-leader | start-partition leader/leader-minority | stop-partition | lab.net + HasPrimaries |
| disk-pause | disk-pause one/leader | disk-resume | FUSE on the hosts |
| lose-unfsynced | crash one/minority | restart | FUSE + Killable |
| host-pause | host-pause one/minority/leader | host-resume | containers lab |
| power-cut | power-cut one/minority/leader | power-on | containers lab (+ Killable to restart the node) |
| member | shrink one/leader/wipe | grow | DB Reconfigurable (+ HasPrimaries for leader) |
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from raftlab.nemesis.disk import DiskNemesis
from raftlab.nemesis.member import SHRINK_VALUES, MemberNemesis
from raftlab.nemesis.package import (
    ComposedNemesis,
    Fault,
    Package,
    Schedule,
    healing,
    noop,
    perf,
    validated,
)
from raftlab.nemesis.partition import SHAPES, PartitionNemesis
from raftlab.nemesis.process import ProcessNemesis

_SHAPES = tuple(SHAPES)

FAULTS: dict[str, Fault] = {f.name: f for f in [
    Fault(name="kill", start="kill", stop="start", values=("one", "minority", "leader"), component="process",
          color="#E9A4A0", doc="SIGKILL node processes, then start them again"),
    Fault(name="kill-leader", start="kill", stop="start", values=("leader",), component="process",
          color="#E9A4A0", doc="SIGKILL the current leader, then start it again"),
    Fault(name="kill-majority", start="kill", stop="start", values=("majority",), component="process",
          color="#E9A4A0", doc="SIGKILL a majority at once (the cluster stops until they restart)"),
    Fault(name="pause", start="pause", stop="resume", values=("one", "minority", "leader"), component="process",
          color="#C5A0E9", doc="SIGSTOP node processes, then SIGCONT"),
    Fault(name="pause-leader", start="pause", stop="resume", values=("leader",), component="process",
          color="#C5A0E9", doc="SIGSTOP the current leader, then SIGCONT"),
    Fault(name="partition", start="start-partition", stop="stop-partition", values=_SHAPES,
          component="partition", color="#E9DCA0", doc="cut the network in one of Jepsen's shapes, then heal"),
    Fault(name="partition-leader", start="start-partition", stop="stop-partition",
          values=("leader", "leader-minority"), component="partition", color="#E9DCA0",
          doc="isolate the leader, or put it in the minority, then heal"),
    Fault(name="disk-pause", start="disk-pause", stop="disk-resume", values=("one", "leader"), component="disk",
          color="#A0C8E9", doc="stall every operation on a node's data directory, then resume"),
    Fault(name="lose-unfsynced", start="crash", stop="restart", values=("one", "minority"), component="disk",
          color="#A0E9B8", doc="kill a node and drop the writes it had not fsynced, then restart it"),
    # Controller-side host faults of the containers lab (raftlab/lab/containers_faults.py).
    Fault(name="host-pause", start="host-pause", stop="host-resume", values=("one", "minority", "leader"),
          component="host", color="#8E7CC3", doc="freeze every process of a host (cgroup freezer), like pausing its VM"),
    Fault(name="power-cut", start="power-cut", stop="power-on", values=("one", "minority", "leader"),
          component="host", color="#CC4125", doc="SIGKILL a host's PID 1 (all its processes at once), then boot it"),
    Fault(name="member", start="shrink", stop="grow", values=SHRINK_VALUES, component="member", color="#7CC3A8",
          doc="remove a member (the leader too; or wipe it, to be re-added empty), then restore the full membership"),
]}


class UnknownFault(ValueError):
    """A fault name not in FAULTS."""


def parse_faults(spec: str | Sequence[str]) -> list[Fault]:
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    unknown = [n for n in names if n not in FAULTS and n != "none"]
    if unknown:
        raise UnknownFault(f"unknown fault {', '.join(map(repr, unknown))} (known: {', '.join(FAULTS)}, none)")
    return [FAULTS[n] for n in dict.fromkeys(names) if n != "none"]


def package(faults: str | Sequence[str], *, db: object, lab: object, rng: random.Random,
            interval: float = 10.0) -> Package:
    """The nemesis, its schedule, its healing phase and its report hints for ``faults``.

    ``lab`` is only named for symmetry with the runner; the nemesis receives it in ``setup``.
    """
    chosen = parse_faults(faults)
    if interval <= 0:
        raise ValueError(f"interval must be positive, not {interval}")
    components: list[Any] = []
    kinds = {f.component for f in chosen}
    if "process" in kinds:
        components.append(ProcessNemesis(db, rng))
    if "partition" in kinds:
        components.append(PartitionNemesis(db, rng))
    disk = None
    if "disk" in kinds:
        names = {f.name for f in chosen}
        disk = DiskNemesis(db, rng, pause="disk-pause" in names, lose_unfsynced="lose-unfsynced" in names)
        components.append(disk)
    if "member" in kinds:
        components.append(MemberNemesis(db, rng))
    if "host" in kinds:  # imported only when used: it needs the containers lab (paramiko)
        from raftlab.lab.containers_faults import HostNemesis

        components.append(HostNemesis(db, rng, disk=disk))  # power-on remounts the disk layer
    if not chosen:
        return Package(nemesis=validated(noop()), generator=healing([]), final_generator=healing([]), perf=())
    nemesis = validated(ComposedNemesis(components))
    return Package(nemesis=nemesis, generator=Schedule(chosen, rng, interval), final_generator=healing(chosen),
                   perf=perf(chosen))


__all__ = ["FAULTS", "Fault", "Package", "UnknownFault", "package", "parse_faults"]
