"""Systems under test: how the harness installs, runs, breaks and talks to a database.

A system is a module with one function::

    def system(lab: HostLab, options: SystemOptions) -> System

returning the ``DB`` (plus whichever optional capabilities it really has: ``Killable``,
``Pausable``, ``HasPrimaries``, ``HasLogFiles``) and the ``Client`` prototype the interpreter opens
once per worker (``raftlab.protocols``). The built-in one is ``dtkv`` (the reference node);
``--system pkg.module`` loads any importable module with that function, so a user's own system
plugs in without touching raftlab. A module may also set ``LAB_OPTS`` (options it needs from the
local lab, e.g. etcd's ``{"net": "ns"}``); ``lab_opts`` reads them before the lab is opened.
``wait_serving`` is the readiness loop every module needs (alive and answering, else the last log
lines); ``raftlab.nemesis.process`` has the signal helpers. The whole contract is the tutorial in
docs/campaigns.md, and ``raftlab system check`` (``raftlab.systems.check``) tries it.
"""

from __future__ import annotations

import asyncio
import importlib
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from raftlab.protocols import DB, Client, Host, HostLab

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


async def wait_serving(lab: HostLab, host: Host, pid: int, answers: Callable[[], Awaitable[bool]], *,
                       log_file: str, timeout: float, what: str) -> None:
    """Return once process ``pid`` on ``host`` is alive and ``answers()``; else raise ``StartError``
    naming the host, whether it exited or timed out, and the last lines of ``log_file``.

    The readiness rule of the plugin contract (``setup``/``start`` return once the node serves),
    for system modules to build on (dtkv and etcd do).
    """
    from raftlab.nemesis.process import process_state

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        alive = await process_state(lab.remote(host), pid) not in (None, "Z", "X")
        if alive and await answers():
            return
        if not alive or loop.time() > deadline:
            tail = await lab.remote(host).run(f"tail -n 5 {shlex.quote(log_file)} 2>/dev/null", check=False)
            why = " | ".join(tail.stdout.strip().splitlines()) or "no output"
            state = "exited" if not alive else f"did not answer within {timeout}s"
            raise StartError(f"{host}: {what} (pid {pid}) {state}: {why}")
        await asyncio.sleep(0.05)


class StartError(Exception):
    """A node did not come up; the message names the host, what happened and its last output."""


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
