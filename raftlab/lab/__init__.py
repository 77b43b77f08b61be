"""Labs: where the nodes run. ``open_lab(kind)`` returns a ``Lab`` whatever the kind.

Every kind lives in its own module (``raftlab/lab/<kind>.py``) exposing four functions, loaded only
when used (a laptop never imports paramiko for the local lab):

* ``async up(state: LabState) -> None``: create what the lab needs (namespaces, sshd, ...);
* ``async attach(state: LabState) -> Lab``: a ``Lab`` over a lab that is up;
* ``async down(state: LabState) -> None``: remove everything ``up`` and the runs made
  (namespaces, processes, mounts, firewall rules, directories). Safe to run twice;
* ``async status(state: LabState) -> dict``: what is there now, as JSON-able facts.

A lab is created once (``raftlab lab up``) and reused across runs: its ``LabState`` is recorded in
``<labs dir>/<name>.json`` (``$RAFTLAB_LABS_DIR``, default ``~/.cache/raftlab/labs``).
``open_lab`` brings a lab up when no state is recorded, so the first ``raftlab run`` needs no
separate step.

Beyond the ``Lab`` protocol of ``raftlab.protocols`` every lab offers ``endpoint(src, dst, port)``
(how ``src`` reaches ``dst``'s port; ``src=None`` is the control machine, never partitioned),
``node_dir(host)`` and ``python(host)``.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from raftlab.protocols import Host, Lab

KINDS: dict[str, str] = {
    "local": "raftlab.lab.local",
    "netns": "raftlab.lab.netns",
    "ssh": "raftlab.lab.ssh",
    "containers": "raftlab.lab.containers",
    "vagrant": "raftlab.lab.vagrant",
}


class LabError(Exception):
    """A lab cannot be created, reached or used; the message names the host and the cause."""


class LabConflict(LabError):
    """What a lab would create already exists (another lab's namespaces, bridge, ...): nothing was made."""


class RemoteError(LabError):
    """A command run on a host exited non-zero (with ``check=True``)."""

    def __init__(self, host: Host, cmd: str, exit_status: int, stderr: str) -> None:
        self.host = host
        self.cmd = cmd
        self.exit_status = exit_status
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-3:]
        super().__init__(f"{host}: `{cmd}` exited {exit_status}" + (f": {' | '.join(tail)}" if tail else ""))


def labs_dir() -> Path:
    return Path(os.environ.get("RAFTLAB_LABS_DIR") or Path.home() / ".cache" / "raftlab" / "labs")


@dataclass(frozen=True, slots=True, kw_only=True)
class LabState:
    """What ``raftlab lab up`` recorded: enough to attach to the lab again, or remove it."""

    name: str
    kind: str
    nodes: int = 5
    workdir: str
    opts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LabError(f"unknown lab kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not 1 <= self.nodes <= 50:
            raise LabError(f"nodes must be between 1 and 50, not {self.nodes}")

    @property
    def hosts(self) -> list[Host]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    @staticmethod
    def path(name: str) -> Path:
        return labs_dir() / f"{name}.json"

    def save(self) -> None:
        path = self.path(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    def forget(self) -> None:
        self.path(self.name).unlink(missing_ok=True)

    @classmethod
    def load(cls, name: str) -> LabState | None:
        path = cls.path(name)
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as e:
            raise LabError(f"lab state file {path} is unreadable ({e}); remove it or run `raftlab lab down`") from None


def _module(kind: str) -> Any:
    if kind not in KINDS:
        raise LabError(f"unknown lab kind {kind!r} (known: {', '.join(KINDS)})")
    try:
        return importlib.import_module(KINDS[kind])
    except ModuleNotFoundError as e:
        raise LabError(f"lab kind {kind!r} is not available in this build ({e})") from None


def new_state(kind: str, *, name: str | None = None, nodes: int = 5, workdir: str | os.PathLike[str] | None = None,
              **opts: Any) -> LabState:
    name = name or kind
    directory = Path(workdir) if workdir is not None else labs_dir() / name
    return LabState(name=name, kind=kind, nodes=nodes, workdir=str(directory.resolve()),
                    opts={k: v for k, v in opts.items() if v is not None})


async def lab_up(kind: str, **kwargs: Any) -> LabState:
    """Create a lab and record it (an existing lab of that name must be brought down first)."""
    state = new_state(kind, **kwargs)
    old = LabState.load(state.name)
    if old is not None:
        raise LabError(f"lab {state.name!r} is already up ({LabState.path(state.name)}); "
                       f"run `raftlab lab down --name {state.name}` first")
    # Options chosen per attach (the local lab's ``net``) are not part of the lab: never recorded.
    per_attach = getattr(_module(kind), "ATTACH_OPTS", frozenset())
    replace(state, opts={k: v for k, v in state.opts.items() if k not in per_attach}).save()
    # (recorded before anything is made, so `down` can clean up a half-made lab)
    try:
        await _module(kind).up(state)
    except LabConflict:
        state.forget()  # the things in the way belong to someone else: leave them alone
        raise
    except BaseException as e:
        try:
            await _module(kind).down(state)
        except Exception as down_error:  # the record goes anyway: `lab up` must not say "already up"
            state.forget()
            raise LabError(f"{e}; cleaning up the half-made lab failed too ({down_error}): "
                           "check what is left by hand") from e
        state.forget()
        raise
    return state


async def lab_down(name: str) -> LabState | None:
    """Remove lab ``name`` and its record. The record goes even when removing fails (the error
    says what failed), so a half-made lab can always be cleared; a lab in use is refused."""
    from raftlab.lab.lock import refuse_if_busy

    state = LabState.load(name)
    if state is None:
        return None
    refuse_if_busy(name, "bring down")
    try:
        await _module(state.kind).down(state)
    except Exception as e:
        state.forget()
        raise LabError(f"lab {name!r}: its record is removed, but bringing it down failed: {e}") from e
    state.forget()
    return state


async def lab_status(name: str) -> dict[str, Any] | None:
    state = LabState.load(name)
    if state is None:
        return None
    from raftlab.lab.lock import holder

    return {"name": state.name, "kind": state.kind, "nodes": state.nodes, "workdir": state.workdir,
            "opts": state.opts, "in_use": holder(name), **await _module(state.kind).status(state)}


async def open_lab(kind: str = "local", *, nodes: int = 5, workdir: str | os.PathLike[str] | None = None,
                   seed: int | None = None, name: str | None = None, **opts: Any) -> Lab:
    """Attach to the lab named ``name`` (default: the kind), bringing it up first if it is not.

    ``seed`` is accepted for labs that make random choices (none of the built-in ones do).
    """
    name = name or kind
    state = LabState.load(name)
    if state is None:
        state = await lab_up(kind, name=name, nodes=nodes, workdir=workdir, **opts)
    elif state.kind != kind:
        raise LabError(f"lab {name!r} is a {state.kind} lab, not {kind}; pick another --name or bring it down")
    elif state.nodes < nodes:
        raise LabError(f"lab {name!r} has {state.nodes} hosts, fewer than the {nodes} asked for; "
                       f"run `raftlab lab down --name {name}` and up again")
    module = _module(kind)
    # Options the kind lets a campaign choose per attach (the local lab's ``net``) override the record.
    chosen = {k: v for k, v in opts.items() if k in getattr(module, "ATTACH_OPTS", ()) and v is not None}
    return await module.attach(replace(state, nodes=nodes, opts={**state.opts, **chosen}))


__all__ = ["KINDS", "LabConflict", "LabError", "LabState", "RemoteError", "lab_down", "lab_status", "lab_up", "labs_dir",
           "new_state", "open_lab"]
