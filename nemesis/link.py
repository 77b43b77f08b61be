"""Link faults: slow, throttled, one-way, flapping and reset links, per link or per node, then heal.

The lab's ``Net`` does the work when it ``ShapesLinks`` (raftlab.protocols): the local lab's
proxy mesh holds bytes per direction (raftlab/lab/proxy.py), the address-based labs use tc and
iptables (raftlab/lab/linkshape.py). This module decides *which directions* a fault hits (pure
``pick``) and *how* (``LinkShape`` from the options), and records both in the completion.

Op ``link-shape`` with value ``{"kind", "target"}``, healed by ``link-heal`` (every shape lifted;
partitions are the partition family's):

* ``slow``: delay ``link-latency`` (0.05 s) plus a jitter draw up to ``link-jitter`` (0.02 s) on
  every chunk, both directions of the targeted links;
* ``bandwidth``: at most ``link-rate`` bytes per second (20000), both directions;
* ``oneway``: one direction carries nothing: ``link`` (one random direction: B does not hear A),
  ``deaf`` (a node hears nobody, the others hear it), ``leader-deaf``, ``leader-mute`` (the
  leader's sends are lost, it still hears everyone);
* ``flap``: inside the op, the targeted links go down and up every ``link-flap-period`` (0.25 s)
  for ``link-flap-seconds`` (2 s), and end up;
* ``reset``: inside the op, every TCP connection of the targeted links is reset once.

Targets (``slow``, ``bandwidth``, ``flap``, ``reset``): ``one`` (every link of one node, a slow
node), ``link`` (one random pair), ``leader`` (the leader's links), ``all``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

from raftlab.nemesis.package import Family, Fault, number_options
from raftlab.nemesis.targets import TargetError, completion, current_leader, failure

from raftlab.history import Op
from raftlab.protocols import Host, Lab, Link, LinkShape, ShapesLinks

DEFAULTS: Mapping[str, float] = {"link_latency": 0.05, "link_jitter": 0.02, "link_rate": 20000.0,
                                 "link_flap_seconds": 2.0, "link_flap_period": 0.25}
KINDS = ("slow", "bandwidth", "oneway", "flap", "reset")
TARGETS = ("one", "link", "leader", "all")
ONEWAY = ("link", "deaf", "leader-deaf", "leader-mute")


def options(opts: Mapping[str, Any]) -> dict[str, float]:
    return number_options(opts, DEFAULTS, may_be_zero=("link_latency", "link_jitter"))


def both_ways(pairs: Sequence[tuple[Host, Host]]) -> list[Link]:
    return sorted({(a, b) for a, b in pairs} | {(b, a) for a, b in pairs})


def pick(kind: str, target: str, hosts: Sequence[Host], rng: random.Random, leader: Host | None) -> list[Link]:
    """The directions a fault hits (pure: the same rng gives the same links)."""
    if len(hosts) < 2:
        raise TargetError("link faults need at least two hosts")
    if target in ("leader", "leader-deaf", "leader-mute") and leader is None:
        raise TargetError("no leader known")
    node = leader if target.startswith("leader") else rng.choice(list(hosts))
    others = [h for h in hosts if h != node]
    if kind == "oneway":
        if target == "link":
            return [tuple(rng.sample(list(hosts), 2))]  # type: ignore[list-item]
        if target in ("deaf", "leader-deaf"):
            return [(h, node) for h in others]  # type: ignore[misc]
        if target == "leader-mute":
            return [(node, h) for h in others]  # type: ignore[misc]
        raise TargetError(f"unknown one-way target {target!r} (known: {', '.join(ONEWAY)})")
    if target == "link":
        return both_ways([tuple(rng.sample(list(hosts), 2))])  # type: ignore[list-item]
    if target in ("one", "leader"):
        return both_ways([(node, h) for h in others])  # type: ignore[misc]
    if target == "all":
        return both_ways([(a, b) for a in hosts for b in hosts if a < b])
    raise TargetError(f"unknown link target {target!r} (known: {', '.join(TARGETS)})")


class LinkNemesis:
    """``link-shape`` {kind, target} and ``link-heal`` through the lab's ShapesLinks net."""

    def __init__(self, db: object, rng: random.Random, opts: Mapping[str, Any]) -> None:
        self.db = db
        self.rng = rng
        self.opts = options(opts)
        self.lab: Lab | None = None
        self.shaped = False

    def fs(self) -> frozenset[str]:
        return frozenset({"link-shape", "link-heal"})

    async def setup(self, lab: Lab) -> None:
        self.lab = lab

    def _net(self) -> ShapesLinks | str:
        net = getattr(self.lab, "net", None)
        return net if isinstance(net, ShapesLinks) else f"the lab's network cannot shape links ({type(net).__name__})"

    async def invoke(self, op: Op) -> Op:
        net = self._net()
        if isinstance(net, str):
            return failure(op, net)
        if op.f == "link-heal":
            try:
                await net.unshape()
            except Exception as e:  # recorded; the final phase heals again
                return failure(op, f"heal failed: {type(e).__name__}: {e}")
            self.shaped = False
            return completion(op, {"healed": True})
        value = op.value if isinstance(op.value, dict) else {}
        kind, target = value.get("kind"), value.get("target", "one")
        if kind not in KINDS:
            return failure(op, f"unknown link fault {kind!r} (known: {', '.join(KINDS)})")
        try:
            leader = await current_leader(self.db) if str(target).startswith("leader") else None
            links = pick(kind, target, list(self.lab.hosts), self.rng, leader)  # type: ignore[union-attr]
        except TargetError as e:
            return failure(op, str(e))
        o = self.opts
        shape = {"slow": LinkShape(delay=o["link_latency"], jitter=o["link_jitter"], seed=self.rng.randrange(2**32)),
                 "bandwidth": LinkShape(rate=o["link_rate"]),
                 "oneway": LinkShape(drop=True), "flap": LinkShape(drop=True)}.get(kind)
        done = {"kind": kind, "target": target, "links": [f"{a}->{b}" for a, b in links]}
        try:
            if kind == "reset":
                await net.reset(links)
            elif kind == "flap":
                done["flaps"] = await self._flap(net, {link: shape for link in links})  # type: ignore[misc]
            else:
                await net.shape({link: shape for link in links})  # type: ignore[misc]
                self.shaped = True
        except Exception as e:  # a net that runs commands on many hosts raises a group: name the first cause
            while isinstance(e, BaseExceptionGroup) and e.exceptions:
                e = e.exceptions[0]  # type: ignore[assignment]
            return failure(op, f"{kind} failed: {type(e).__name__}: {e}")
        if shape is not None and kind not in ("reset", "flap"):
            done["shape"] = {k: getattr(shape, k) for k in ("delay", "jitter", "rate", "drop") if getattr(shape, k)}
        return completion(op, done)

    async def _flap(self, net: ShapesLinks, down: Mapping[Link, LinkShape]) -> int:
        loop = asyncio.get_running_loop()
        until, flaps = loop.time() + self.opts["link_flap_seconds"], 0
        try:
            while loop.time() < until:
                await (net.shape(down) if flaps % 2 == 0 else net.unshape())
                flaps += 1
                await asyncio.sleep(self.opts["link_flap_period"])
        finally:
            await net.unshape()
        return flaps

    async def teardown(self) -> None:
        net = self._net()
        if self.shaped and not isinstance(net, str):
            await net.unshape()
            self.shaped = False


def _values(kind: str, targets: Sequence[str] = TARGETS) -> tuple[dict[str, str], ...]:
    return tuple({"kind": kind, "target": t} for t in targets)


def _fault(name: str, values: tuple[dict[str, str], ...], doc: str) -> Fault:
    return Fault(name=name, start="link-shape", stop="link-heal", values=values, color="#E9C8A0", doc=doc)


FAMILY = Family(
    name="link",
    needs="a lab whose Net ShapesLinks: local (proxy mesh, no root) or an iptables lab (tc; delays need sch_netem)",
    heal_ranks={"link-heal": 41},
    build=lambda ctx: LinkNemesis(ctx.db, ctx.rng, ctx.opts),
    faults=(
        _fault("link", tuple(v for k in KINDS for v in _values(k, ONEWAY if k == "oneway" else TARGETS)),
               "any link fault: slow, bandwidth, oneway, flap or reset"),
        _fault("link-slow", _values("slow"), "add link-latency plus up to link-jitter to every chunk"),
        _fault("link-bandwidth", _values("bandwidth"), "limit links to link-rate bytes per second"),
        _fault("link-oneway", _values("oneway", ONEWAY), "a one-way blackhole: B does not hear A, A hears B"),
        _fault("link-flap", _values("flap"), "links go down and up every link-flap-period for link-flap-seconds"),
        _fault("link-reset", _values("reset"), "reset every TCP connection of the links once"),
    ),
)
