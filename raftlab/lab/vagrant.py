"""The Vagrant lab: ``vagrant up`` the VMs of ``vagrant/Vagrantfile``, then drive them as an ssh lab.

``up`` runs ``vagrant up`` (``VAGRANT_CHECKPOINT_DISABLE=1``, ``RAFTLAB_NODES`` = the node count,
``RAFTLAB_NET`` = the private network), reads ``vagrant ssh-config`` and writes a nodes file
(``nodesfile`` format) for those hosts: address/port/user/key from ssh-config (how this machine
logs in: 127.0.0.1:2222 on VirtualBox, the management address on libvirt), ``internal`` = the
private-network address ``NET.(10+I)`` of host ``nI`` (how peers and clients reach the node's
ports), ``python`` = the venv ``provision.sh`` made. From then on the lab is exactly the ssh lab
over that file, so ``raftlab run --lab vagrant`` and ``raftlab run --lab ssh --nodes-file FILE``
do the same. ``down`` runs ``vagrant destroy -f`` (or ``vagrant halt`` with ``down=halt``).

Options (``--opt KEY=VALUE``): ``vagrant_dir`` [./vagrant, else the checkout's vagrant/],
``provider`` [Vagrant's default], ``net`` [192.168.56], ``down`` [destroy | halt],
``nodes_file`` (``--nodes-file``) [WORKDIR/nodes].
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import raftlab
from raftlab.lab import LabError, LabState
from raftlab.lab.nodesfile import NodeSpec, read, write
from raftlab.lab.ssh import SshLab

VENV_PYTHON = "/opt/raftlab/venv/bin/python"
NODE_DIR = "/var/lib/raftlab"
_HOST = re.compile(r"^n(\d+)$")


def parse_ssh_config(text: str) -> list[dict[str, str]]:
    """The ``Host`` blocks of ``vagrant ssh-config`` output, keys lower-cased, quotes removed."""
    blocks: list[dict[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key.lower() == "host":
            blocks.append({"host": value})
        elif not blocks:
            raise LabError(f"vagrant ssh-config line {number}: {line!r} comes before any `Host` line")
        else:
            blocks[-1].setdefault(key.lower(), value)  # ssh uses the first value given
    return blocks


def specs_from_ssh_config(blocks: Iterable[dict[str, str]], *, net: str = "192.168.56",
                          python: str = VENV_PYTHON, node_dir: str = NODE_DIR) -> list[NodeSpec]:
    specs = []
    for b in blocks:
        name = b["host"]
        if "hostname" not in b:
            raise LabError(f"vagrant ssh-config: host {name} has no HostName")
        try:
            port = int(b.get("port", "22"))
        except ValueError:
            raise LabError(f"vagrant ssh-config: host {name} has a bad Port {b['port']!r}") from None
        m = _HOST.match(name)
        internal = f"{net}.{10 + int(m.group(1))}" if m else b["hostname"]
        try:
            specs.append(NodeSpec(name=name, address=b["hostname"], port=port, user=b.get("user", "vagrant"),
                                  key=b.get("identityfile"), internal=internal, python=python, dir=node_dir))
        except ValueError as e:
            raise LabError(f"vagrant ssh-config: host {name}: {e}") from None
    if not specs:
        raise LabError("vagrant ssh-config listed no hosts")
    return sorted(specs, key=lambda s: (0, int(m.group(1))) if (m := _HOST.match(s.name)) else (1, s.name))


def parse_status(text: str) -> dict[str, str]:
    """Machine -> state (running, poweroff, not_created, ...) from ``vagrant status --machine-readable``."""
    states = {}
    for line in text.splitlines():
        parts = line.split(",", 3)
        if len(parts) == 4 and parts[2] == "state":
            states[parts[1]] = parts[3].replace("%!(VAGRANT_COMMA)", ",")
    return states


def vagrant_dir(state: LabState) -> Path:
    given = state.opts.get("vagrant_dir")
    candidates = [Path(given)] if given else [Path.cwd() / "vagrant", Path(raftlab.__file__).resolve().parents[1] / "vagrant"]
    for c in candidates:
        if (c / "Vagrantfile").exists():
            return c.resolve()
    raise LabError(f"no Vagrantfile in {' or '.join(map(str, candidates))}; pass --opt vagrant_dir=DIR")


def _env(state: LabState) -> dict[str, str]:
    return {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "RAFTLAB_NODES": str(state.nodes),
            "RAFTLAB_NET": state.opts.get("net", "192.168.56")}


async def vagrant(state: LabState, *args: str, echo: bool = False) -> str:
    """Run ``vagrant ARGS`` in the Vagrantfile's folder; output (also to stderr with ``echo``)."""
    if shutil.which("vagrant") is None:
        raise LabError("vagrant is not installed (https://developer.hashicorp.com/vagrant/install; "
                       "Debian: apt-get install vagrant vagrant-libvirt)")
    proc = await asyncio.create_subprocess_exec("vagrant", *args, cwd=vagrant_dir(state), env=_env(state),
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines = []
    async for raw in proc.stdout:
        line = raw.decode(errors="replace")
        lines.append(line)
        if echo:
            sys.stderr.write(line)
    await proc.wait()
    out = "".join(lines)
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in lines[-4:] if line.strip())
        raise LabError(f"`vagrant {' '.join(args)}` exited {proc.returncode}: {tail}")
    return out


def nodes_path(state: LabState) -> Path:
    return Path(state.opts.get("nodes_file") or Path(state.workdir) / "nodes")


async def up(state: LabState) -> None:
    Path(state.workdir).mkdir(parents=True, exist_ok=True)
    args = ["up"] + ([f"--provider={state.opts['provider']}"] if state.opts.get("provider") else [])
    log = await vagrant(state, *args, echo=True)
    (Path(state.workdir) / "vagrant-up.log").write_text(log)
    hosts = state.hosts
    specs = specs_from_ssh_config(parse_ssh_config(await vagrant(state, "ssh-config", *hosts)),
                                  net=state.opts.get("net", "192.168.56"))
    write(nodes_path(state), specs, comment=f"written by `raftlab lab up --lab vagrant` from {vagrant_dir(state)}")
    lab = SshLab(specs, kind="vagrant")
    try:
        await lab.check()
    except* LabError as group:
        raise LabError("; ".join(str(e) for e in group.exceptions)) from None
    finally:
        await lab.close()


async def attach(state: LabState) -> SshLab:
    specs = read(nodes_path(state))
    if len(specs) < state.nodes:
        raise LabError(f"{nodes_path(state)} lists {len(specs)} hosts, fewer than the {state.nodes} asked for")
    return SshLab(specs[: state.nodes], kind="vagrant")


async def down(state: LabState) -> None:
    how = state.opts.get("down", "destroy")
    if how not in ("destroy", "halt"):
        raise LabError(f"vagrant lab: down must be destroy or halt, not {how!r}")
    if shutil.which("vagrant") is None and not nodes_path(state).exists():
        shutil.rmtree(state.workdir, ignore_errors=True)  # `up` failed before any VM existed
        return
    await vagrant(state, *(["destroy", "-f"] if how == "destroy" else ["halt"]), *state.hosts, echo=True)
    if how == "destroy":
        nodes_path(state).unlink(missing_ok=True)
        shutil.rmtree(state.workdir, ignore_errors=True)


async def status(state: LabState) -> dict[str, Any]:
    states = parse_status(await vagrant(state, "status", "--machine-readable", *state.hosts))
    return {"vagrant_dir": str(vagrant_dir(state)), "nodes_file": str(nodes_path(state)),
            "hosts": {h: {"state": s} for h, s in states.items()}}
