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
from collections.abc import Mapping

from raftlab.lab import LabError
from raftlab.protocols import Grudge, Host, Remote

CHAIN = "RAFTLAB"


class IptablesNet:
    """Partitions with iptables rules in raftlab's own chain on each host."""

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
        """Remove the chain and its jump (for ``lab down``)."""
        ipt = self._iptables
        await self._on_all({h: f"while {ipt} -D INPUT -j {CHAIN} 2>/dev/null; do :; done; "
                               f"{ipt} -F {CHAIN} 2>/dev/null; {ipt} -X {CHAIN} 2>/dev/null; true"
                            for h in self._remotes})
