"""raftlab.nemesis: fault families, each fault with its healer, composed into a seeded package.

Every module of this package that defines ``FAMILY`` is a fault family (``package.Family``): its
faults, their heal ranks, what they need, and how to build the component that does them. They
are found by importing the package's modules, so adding a fault is one module
(docs/campaigns.md, "Adding a fault"). ``FAULTS`` maps every fault name (``--nemesis
kill,partition,...``) to its ``Fault``; ``package()`` builds the ``Package`` a campaign runs.
Every fault and heal is an op of process ``nemesis`` whose ``info`` completion says what really
happened; a fault that did not apply carries an ``error`` and is never assumed to have worked.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Mapping, Sequence
from typing import Any

from raftlab.nemesis.package import (
    BuildContext,
    ComposedNemesis,
    Family,
    Fault,
    Package,
    heal_order,
    noop,
    perf,
    schedule,
    validated,
)

from raftlab import generator as gen
from raftlab.protocols import Nemesis


def _discover() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in ("package", "targets", "fusefs"):  # the machinery, and a host-side daemon
            continue
        family = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FAMILY", None)
        if isinstance(family, Family):
            if family.name in found:
                raise ValueError(f"two modules declare the fault family {family.name!r}")
            found[family.name] = family
    return found


FAMILIES: dict[str, Family] = _discover()
FAULTS: dict[str, Fault] = {}
FAMILY_OF: dict[str, Family] = {}
for _family in FAMILIES.values():
    for _fault in _family.faults:
        if _fault.name in FAULTS:
            raise ValueError(f"fault {_fault.name!r} is declared twice")
        FAULTS[_fault.name], FAMILY_OF[_fault.name] = _fault, _family


class UnknownFault(ValueError):
    """A fault name not in FAULTS."""


def parse_faults(spec: str | Sequence[str]) -> list[Fault]:
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    unknown = [n for n in names if n not in FAULTS and n != "none"]
    if unknown:
        raise UnknownFault(f"unknown fault {', '.join(map(repr, unknown))} (known: {', '.join(FAULTS)}, none)")
    return [FAULTS[n] for n in dict.fromkeys(names) if n != "none"]


def _built_in_order(families: Sequence[Family]) -> list[Family]:
    """Families whose ``build`` uses another's component come after it."""
    names = {f.name for f in families}
    return sorted(families, key=lambda f: (any(u in names for u in f.uses), f.name))


def package(faults: str | Sequence[str], *, db: object, rng: random.Random, interval: float = 10.0,
            opts: Mapping[str, Any] | None = None) -> Package:
    """The nemesis, its schedule, its healer and its report hints for ``faults``.

    ``opts`` are the campaign's ``--nemesis-opt`` values, handed to every family's ``build``.
    """
    chosen = parse_faults(faults)
    if interval <= 0:
        raise ValueError(f"interval must be positive, not {interval}")
    if not chosen:
        return Package(nemesis=validated(noop()), generator=gen.seq(), heal_fs=())
    families = list({FAMILY_OF[f.name].name: FAMILY_OF[f.name] for f in chosen}.values())
    names = frozenset(f.name for f in chosen)
    built: dict[str, Nemesis] = {}
    for family in _built_in_order(families):
        built[family.name] = family.build(BuildContext(db=db, rng=rng, names=names, built=dict(built),
                                                        opts=dict(opts or {})))
    return Package(nemesis=validated(ComposedNemesis(list(built.values()))), generator=schedule(chosen, rng, interval),
                   heal_fs=heal_order(chosen, families), perf=perf(chosen),
                   observe_fs=tuple(f for family in families for f in family.observe))


__all__ = ["FAMILIES", "FAULTS", "Family", "Fault", "Package", "UnknownFault", "package", "parse_faults"]
