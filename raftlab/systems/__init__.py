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

BUILTIN: dict[str, str] = {"dtkv": "raftlab.systems.dtkv"}


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


def load(spec: str, lab: HostLab, options: SystemOptions) -> System:
    """The system named ``spec`` (a built-in name or ``pkg.module``), built for ``lab``."""
    module_name = BUILTIN.get(spec, spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemLoadError(f"cannot import system module {module_name!r}: {e}") from None
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
