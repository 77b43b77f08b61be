"""The nodes file: which SSH hosts make up an ``ssh`` lab (written by hand, or by ``lab up --lab vagrant``).

Format: one host per line, ``NAME ADDRESS [key=value ...]``; ``#`` starts a comment; blank lines
are ignored. A ``defaults key=value ...`` line sets defaults for the lines after it::

    # raftlab nodes file
    defaults user=vagrant key=~/.ssh/raftlab_ed25519 python=/opt/raftlab/venv/bin/python
    n1 127.0.0.1 port=2222 internal=192.168.56.11
    n2 127.0.0.1 port=2200 internal=192.168.56.12

Keys: ``port`` (SSH port, default 22), ``user`` (default root; others use ``sudo -n``), ``key``
(private key file; default: the SSH agent and ~/.ssh keys), ``internal`` (the address peers and
clients use for the node's service ports, default ADDRESS), ``python`` (the python with raftlab
installed on the host, default ``python3``), ``dir`` (the node's working directory, default
``/var/lib/raftlab``). Every error names the file and line.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from raftlab.lab import LabError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One host of an SSH lab. ``internal`` is how peers and clients reach its service ports."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key: str | None = None
    internal: str = ""
    python: str = "python3"
    dir: str = "/var/lib/raftlab"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bad host name {self.name!r}")
        for label, value in (("address", self.address), ("internal", self.internal or self.address)):
            if not _is_address(value):
                raise ValueError(f"bad {label} {value!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1-65535, not {self.port}")
        if not self.internal:
            object.__setattr__(self, "internal", self.address)
        if self.key:
            object.__setattr__(self, "key", os.path.expanduser(self.key))
        if not self.dir.startswith("/"):
            raise ValueError(f"dir must be an absolute path, not {self.dir!r}")

    def to_line(self) -> str:
        parts = [self.name, self.address]
        defaults = NodeSpec(name="x", address="127.0.0.1")
        for f in fields(self):
            if f.name in ("name", "address"):
                continue
            value = getattr(self, f.name)
            if f.name == "internal" and value == self.address:
                continue
            if value != getattr(defaults, f.name) and value is not None:
                parts.append(f"{f.name}={value}")
        return " ".join(parts)


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(value))


_KEYS = {f.name for f in fields(NodeSpec)} - {"name", "address"}


def parse(lines: Iterable[str], *, source: str = "<nodes file>") -> list[NodeSpec]:
    specs: list[NodeSpec] = []
    defaults: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        words = line.split()
        if words[0] == "defaults":
            defaults.update(_options(words[1:], where))
            continue
        if len(words) < 2 or "=" in words[0] or "=" in words[1]:
            raise LabError(f"{where}: expected `NAME ADDRESS [key=value ...]`, got {line!r}")
        options = {**defaults, **_options(words[2:], where)}
        try:
            port = int(options.pop("port", "22"))
        except ValueError:
            raise LabError(f"{where}: port must be a number") from None
        try:
            spec = NodeSpec(name=words[0], address=words[1], port=port, **options)  # type: ignore[arg-type]
        except ValueError as e:
            raise LabError(f"{where}: {e}") from None
        if any(s.name == spec.name for s in specs):
            raise LabError(f"{where}: host {spec.name!r} is listed twice")
        specs.append(spec)
    if not specs:
        raise LabError(f"{source}: no hosts listed")
    return specs


def _options(words: list[str], where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not value:
            raise LabError(f"{where}: expected key=value, got {word!r}")
        if key not in _KEYS:
            raise LabError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
        options[key] = value
    return options


def read(path: str | os.PathLike[str]) -> list[NodeSpec]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise LabError(f"cannot read nodes file {path}: {e.strerror}") from None
    return parse(text.splitlines(), source=str(path))


def write(path: str | os.PathLike[str], specs: Iterable[NodeSpec], *, comment: str = "") -> None:
    header = f"# raftlab nodes file{': ' + comment if comment else ''}\n"
    Path(path).write_text(header + "".join(s.to_line() + "\n" for s in specs))
