"""Partitions by address with iptables: the ``Net`` of SSH hosts, netns hosts and the local lab's address mode.

Every rule lives in raftlab's own chain ``RAFTLAB``, jumped to from ``INPUT`` on each host, so
healing flushes exactly what raftlab added and no other rule of the host is touched. A host that
holds a grudge against another drops every packet from that host's address on ``INPUT``; a TCP
connection needs both directions, so one rule cuts the link both ways (as the proxy mesh does).
Commands go through each host's ``Remote``, so the same code works over SSH and through
``nsenter`` into a namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from raftlab.lab import LabError, linkshape
from raftlab.protocols import Grudge, Host, Link, LinkShape, Remote

CHAIN = "RAFTLAB"


class IptablesNet:
    """Partitions with iptables rules in raftlab's own chain on each host; link faults (ShapesLinks)
    with tc and iptables (``raftlab.lab.linkshape``)."""

    def __init__(self, remotes: Mapping[Host, Remote], addresses: Mapping[Host, str], *,
                 iptables: str = "iptables -w") -> None:
        self._remotes = remotes
        self._addresses = addresses
        self._iptables = iptables
        self._ready: set[Host] = set()

    def _ensure_chain(self) -> str:
        ipt = self._iptables
        return (f"{{ {ipt} -N {CHAIN} 2>/dev/null || true; }} && "
                f"{{ {ipt} -C INPUT -j {CHAIN} 2>/dev/null || {ipt} -I INPUT 1 -j {CHAIN}; }}")

    async def _on_all(self, commands: Mapping[Host, str]) -> None:
        async with asyncio.TaskGroup() as tg:
            for host, cmd in commands.items():
                tg.create_task(self._remotes[host].run(cmd))

    async def partition(self, grudge: Grudge) -> None:
        for host, enemies in grudge.items():
            unknown = [h for h in (host, *enemies) if h not in self._addresses]
            if unknown:
                raise LabError(f"partition names unknown hosts: {', '.join(sorted(set(unknown)))}")
        commands = {}
        for host in self._remotes:
            parts = [self._ensure_chain(), f"{self._iptables} -F {CHAIN}"]
            parts += [f"{self._iptables} -A {CHAIN} -s {self._addresses[e]} -j DROP"
                      for e in sorted(grudge.get(host, ()))]
            commands[host] = " && ".join(parts)
        await self._on_all(commands)

    async def heal(self) -> None:
        """Flush raftlab's chain on every host; no other rule is touched."""
        await self._on_all({h: f"{self._iptables} -F {CHAIN} 2>/dev/null || true" for h in self._remotes})

    async def remove(self) -> None:
        """Remove the chains and their jumps (for ``lab down``)."""
        ipt = self._iptables
        await self._on_all({h: "; ".join(f"while {ipt} -D INPUT -j {c} 2>/dev/null; do :; done; "
                                         f"{ipt} -F {c} 2>/dev/null; {ipt} -X {c} 2>/dev/null"
                                         for c in (CHAIN, linkshape.CHAIN)) + "; true"
                            for h in self._remotes})

    # -- ShapesLinks (raftlab/lab/linkshape.py) -------------------------------------------------

    def _known(self, hosts: Iterable[Host]) -> None:
        unknown = sorted({h for h in hosts if h not in self._addresses})
        if unknown:
            raise LabError(f"link fault names unknown hosts: {', '.join(unknown)}")

    async def shape(self, links: Mapping[Link, LinkShape]) -> None:
        self._known(h for pair in links for h in pair)
        sends, deaf = linkshape.split(links)
        commands = {h: linkshape.tc_commands(sends.get(h, {}), self._addresses) + " && " +
                    linkshape.drop_commands(deaf.get(h, []), self._addresses, self._iptables)
                    for h in self._remotes}
        await self._on_all(commands)

    async def unshape(self) -> None:
        await self.shape({})

    async def reset(self, links: Sequence[Link]) -> None:
        self._known(h for pair in links for h in pair)
        # One end of each pair answers the other with RSTs: a rule on both ends would drop the RSTs too.
        peers: dict[Host, set[Host]] = {}
        for a, b in {tuple(sorted(pair)) for pair in links}:
            peers.setdefault(b, set()).add(a)
        await self._on_all({h: linkshape.reset_command(sorted(p), self._addresses, self._iptables)
                            for h, p in peers.items()})
