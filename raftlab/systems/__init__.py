"""Systems under test: how the harness installs, runs, breaks and talks to a database.

A system is a module with one function::

    def system(lab: HostLab, options: SystemOptions) -> System

returning the ``DB`` (plus whichever optional capabilities it really has: ``Killable``,
``Pausable``, ``HasPrimaries``, ``HasLogFiles``) and the ``Client`` prototype the interpreter opens
once per worker (``raftlab.protocols``). The built-in one is ``dtkv`` (the reference node);
``--system pkg.module`` loads any importable module with that function, so a user's own system
plugs in without touching raftlab.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from raftlab.protocols import DB, Client, HostLab

BUILTIN: dict[str, str] = {"dtkv": "raftlab.systems.dtkv", "etcd": "raftlab.systems.etcd"}


class SystemLoadError(Exception):
    """A system module that cannot be loaded or does not follow the contract."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemOptions:
    """What a campaign tells the system: extra node flags, the first port to use, client timeout."""

    node_args: tuple[str, ...] = ()
    base_port: int = 17000
    op_timeout: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    name: str
    db: DB
    client: Client


def _import(spec: str) -> Any:
    module_name = BUILTIN.get(spec, spec)
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise SystemLoadError(f"cannot import system module {module_name!r}: {e}") from None


def lab_opts(spec: str, lab_kind: str) -> dict[str, Any]:
    """The lab options the system's module asks for (``LAB_OPTS``, local lab only): e.g. etcd wants
    ``net=ns``, one address per host. The user's ``--lab-opt`` wins over them."""
    if lab_kind != "local":
        return {}
    wanted = getattr(_import(spec), "LAB_OPTS", {})
    if not isinstance(wanted, dict):
        raise SystemLoadError(f"{spec}: LAB_OPTS must be a dict, not {type(wanted).__name__}")
    return dict(wanted)


def load(spec: str, lab: HostLab, options: SystemOptions) -> System:
    """The system named ``spec`` (a built-in name or ``pkg.module``), built for ``lab``."""
    module = _import(spec)
    module_name = module.__name__
    make = getattr(module, "system", None)
    if not callable(make):
        raise SystemLoadError(f"system module {module_name!r} has no function system(lab, options)")
    made = make(lab, options)
    if not isinstance(made, System):
        raise SystemLoadError(f"{module_name}.system() returned {type(made).__name__}, not raftlab.systems.System")
    for name in ("setup", "teardown"):
        if not callable(getattr(made.db, name, None)):
            raise SystemLoadError(f"{module_name}: the DB has no {name}() method")
    for name in ("open", "invoke", "close"):
        if not callable(getattr(made.client, name, None)):
            raise SystemLoadError(f"{module_name}: the client has no {name}() method")
    return made
