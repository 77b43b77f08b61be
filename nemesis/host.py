"""The host fault family: faults only the containers lab (or a hypervisor) can do.

``host-pause`` freezes every process of a host through its cgroup freezer (like pausing its VM);
``power-cut`` SIGKILLs the host's PID 1 and boots it again. The component lives with the lab it
drives (``raftlab/lab/containers_faults.py``) and is imported only when a campaign names one of
these faults, because it needs the containers lab's modules (paramiko). Heal ranks:
``host-resume`` before anything (a frozen host blocks every other heal on it), ``power-on`` after
the network and before ``start``.
"""

from __future__ import annotations

from raftlab.nemesis.package import BuildContext, Family, Fault

from raftlab.protocols import Nemesis


def _build(ctx: BuildContext) -> Nemesis:
    from raftlab.nemesis.disk import DiskNemesis

    from raftlab.lab.containers_faults import HostNemesis

    disk = ctx.built.get("disk")  # power-on mounts the disk-fault layer again when the campaign has one
    return HostNemesis(ctx.db, ctx.rng, disk=disk if isinstance(disk, DiskNemesis) else None)


FAMILY = Family(
    name="host",
    needs="the containers lab (root, systemd-nspawn); power-cut restarts the node when the DB is Killable",
    heal_ranks={"host-resume": 10, "power-on": 60},
    build=_build,
    uses=("disk",),
    faults=(
        Fault(name="host-pause", start="host-pause", stop="host-resume", values=("one", "minority", "leader"),
              color="#8E7CC3", doc="freeze every process of a host (cgroup freezer), like pausing its VM"),
        Fault(name="power-cut", start="power-cut", stop="power-on", values=("one", "minority", "leader"),
              color="#CC4125", doc="SIGKILL a host's PID 1 (all its processes at once), then boot it"),
    ),
)
