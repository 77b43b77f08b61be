"""The nodes file format: parsed with defaults, written back, errors naming the line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftlab.lab import LabError
from raftlab.lab.nodesfile import NodeSpec, parse, read, write
from raftlab.lab.ssh import SshLab

SAMPLE = """\
# written by hand
defaults user=vagrant key=/keys/id python=/opt/raftlab/venv/bin/python
n1 127.0.0.1 port=2222 internal=192.168.56.11   # via port forward
n2 192.168.56.12 dir=/srv/raftlab

"""


def test_parse_applies_defaults_and_round_trips(tmp_path: Path) -> None:
    specs = parse(SAMPLE.splitlines())
    assert specs[0] == NodeSpec(name="n1", address="127.0.0.1", port=2222, user="vagrant", key="/keys/id",
                                internal="192.168.56.11", python="/opt/raftlab/venv/bin/python")
    assert specs[1].internal == "192.168.56.12" and specs[1].port == 22 and specs[1].dir == "/srv/raftlab"
    write(tmp_path / "nodes", specs)
    assert read(tmp_path / "nodes") == specs
    lab = SshLab(specs)
    assert lab.endpoint(None, "n1", 7001) == ("192.168.56.11", 7001)
    assert lab.endpoint("n2", "n1", 7001) == ("192.168.56.11", 7001)
    assert lab.remote("n2").wrap("id -u") == "sudo -n sh -c 'id -u'"


@pytest.mark.parametrize(("text", "error"), [
    ("n1", "f:1: expected `NAME ADDRESS"),
    ("n1 10.0.0.1\nn2 10.0.0.2 port=abc", "f:2: port must be a number"),
    ("n1 10.0.0.1 colour=red", "f:1: unknown key 'colour'"),
    ("# only\n\nn1 10.0.0.1 port=70000", "f:3: port must be 1-65535"),
    ("n1 10.0.0.1\nn1 10.0.0.2", "f:2: host 'n1' is listed twice"),
    ("n1 bad_address!", "f:1: bad address"),
    ("n1 10.0.0.1 dir=relative", "f:1: dir must be an absolute path"),
    ("# nothing", "f: no hosts listed"),
])
def test_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(LabError) as info:
        parse(text.splitlines(), source="f")
    assert str(info.value).startswith(error)


def test_unreachable_host_is_named() -> None:
    # 127.0.0.1:1 refuses at once: no network beyond loopback is used.
    lab = SshLab([NodeSpec(name="n7", address="127.0.0.1", port=1)])
    with pytest.raises(LabError, match=r"cannot reach host n7 at root@127\.0\.0\.1:1"):
        asyncio.run(lab.remote("n7").run("true"))
