"""Link faults by address: tc (htb rate, netem delay) on egress and iptables for one-way drops and resets.

The ``ShapesLinks`` half of ``IptablesNet`` (SSH hosts, netns hosts, containers, the local lab's
address mode). Each function here is pure: it returns the shell command a host runs, so the
command lines are tested as values and the shell stays thin.

* Delay, jitter and rate shape the traffic a host **sends** to an address: an ``htb`` root on
  the interface that reaches the peer (``ip route get``), class ``1:1`` unshaped (the default),
  one class per distinct shape (``1:10`` on) with the rate (or 10 Gbit/s), a ``netem`` child for
  delay and jitter, and a ``u32`` filter per destination address. netem is a kernel module
  (``sch_netem``) that some kernels lack: then a shape with a delay fails with that reason, and
  rate limits still work (htb and u32 are in every distribution kernel).
* A one-way blackhole (``drop``) is an iptables rule on the **receiving** host, in raftlab's own
  chain ``RAFTLABL`` jumped to from ``INPUT``: ``-s <sender> -j DROP``. TCP needs both
  directions, so a connection across it stalls once its window fills (the sender never sees an
  ACK), but what was sent before arrives; datagrams show the one direction cleanly (the tests).
* A reset inserts ``-p tcp -s <peer> -j REJECT --reject-with tcp-reset`` at the top of ``INPUT``
  for ``RESET_SECONDS`` on one end of each pair (on both, each would drop the other's RSTs), so
  the other end's packets are answered with an RST and it sees ``ECONNRESET``; this end learns
  when it next sends (its peer's kernel answers with an RST), as after a real reset. Then the
  rule is removed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from raftlab.protocols import Host, Link, LinkShape

CHAIN = "RAFTLABL"
RESET_SECONDS = 0.5
UNSHAPED = "10gbit"
MARK = "class htb 1:1 root.* rate 10Gbit"  # how ``tc class show`` prints raftlab's unshaped class


def device_of(address: str) -> str:
    """Shell that prints the interface a host reaches ``address`` through."""
    return f"ip -o route get {shlex.quote(address)} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'"


def tc_commands(shapes: Mapping[Host, LinkShape], addresses: Mapping[Host, str]) -> str:
    """The commands one host runs to shape what it sends to each host in ``shapes`` (may be empty)."""
    # Only a root raftlab added (htb handle 1: with the unshaped class) is removed; a host's own is kept.
    clear = ("for d in $(ls /sys/class/net); do tc class show dev $d 2>/dev/null | grep -q "
             f"'{MARK}' && tc qdisc del dev $d root; done; true")
    timed = {dst: s for dst, s in shapes.items() if s.delay or s.jitter or s.rate}
    if not timed:
        return clear
    first = addresses[sorted(timed)[0]]
    parts = [clear, f"dev=$({device_of(first)})", '[ -n "$dev" ]',
             "tc qdisc add dev $dev root handle 1: htb default 1",
             f"tc class add dev $dev parent 1: classid 1:1 htb rate {UNSHAPED}"]
    distinct = sorted({s for s in timed.values()}, key=lambda s: (s.delay, s.jitter, s.rate, s.seed))
    for j, shape in enumerate(distinct):
        cls = 10 + j
        rate = f"{max(8, int(shape.rate * 8))}bit" if shape.rate else UNSHAPED
        parts.append(f"tc class add dev $dev parent 1: classid 1:{cls} htb rate {rate} ceil {rate}")
        if shape.delay or shape.jitter:
            delay = f"delay {shape.delay * 1000:.3f}ms" + (f" {shape.jitter * 1000:.3f}ms" if shape.jitter else "")
            parts.append(f"{{ tc qdisc add dev $dev parent 1:{cls} handle {cls}: netem {delay} 2>/dev/null || "
                         "{ echo 'the kernel has no netem (sch_netem): delays cannot be shaped here' >&2; exit 3; }; }")
        for dst in sorted(d for d, s in timed.items() if s == shape):
            parts.append(f"tc filter add dev $dev parent 1: protocol ip prio 1 u32 match ip dst "
                         f"{addresses[dst]}/32 flowid 1:{cls}")
    return " && ".join(parts)


def drop_commands(deaf_to: list[Host], addresses: Mapping[Host, str], iptables: str) -> str:
    """The commands a host runs so it hears nothing from ``deaf_to`` (one-way: it may still send)."""
    ensure = (f"{{ {iptables} -N {CHAIN} 2>/dev/null || true; }} && "
              f"{{ {iptables} -C INPUT -j {CHAIN} 2>/dev/null || {iptables} -I INPUT 1 -j {CHAIN}; }}")
    parts = [ensure, f"{iptables} -F {CHAIN}"]
    parts += [f"{iptables} -A {CHAIN} -s {addresses[h]} -j DROP" for h in sorted(deaf_to)]
    return " && ".join(parts)


def reset_command(peers: list[Host], addresses: Mapping[Host, str], iptables: str) -> str:
    """A host answers every TCP packet from ``peers`` with an RST for RESET_SECONDS, then stops."""
    rules = [f"-p tcp -s {addresses[h]} -j REJECT --reject-with tcp-reset" for h in sorted(peers)]
    add = " && ".join(f"{iptables} -I INPUT 1 {r}" for r in rules)
    remove = "; ".join(f"{iptables} -D INPUT {r}" for r in rules)
    return f"{add} && sleep {RESET_SECONDS}; {remove}"


def split(links: Mapping[Link, LinkShape]) -> tuple[dict[Host, dict[Host, LinkShape]], dict[Host, list[Host]]]:
    """Per sending host its timed shapes, and per receiving host whom it drops."""
    sends: dict[Host, dict[Host, LinkShape]] = {}
    deaf: dict[Host, list[Host]] = {}
    for (src, dst), shape in links.items():
        if shape.drop:
            deaf.setdefault(dst, []).append(src)
        else:
            sends.setdefault(src, {})[dst] = shape
    return sends, deaf
