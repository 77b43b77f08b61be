"""The Vagrant lab: parsing real `vagrant ssh-config`/`status` output, the nodes file it writes,
`vagrant validate` on vagrant/Vagrantfile, and the error when vagrant is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raftlab.lab import LabError
from raftlab.lab.nodesfile import read, write
from raftlab.lab.vagrant import VENV_PYTHON, parse_ssh_config, parse_status, specs_from_ssh_config
from tests.conftest import need_binary

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def test_virtualbox_output_gives_one_spec_per_machine_with_its_forwarded_port() -> None:
    specs = specs_from_ssh_config(parse_ssh_config((DATA / "ssh-config-virtualbox-2.txt").read_text()))
    assert [(s.name, s.address, s.port, s.user) for s in specs] == [
        ("node1", "127.0.0.1", 2222, "vagrant"), ("node2", "127.0.0.1", 2200, "vagrant")]
    assert specs[1].key == "/home/xxxxxx/centos7/.vagrant/machines/node2/virtualbox/private_key"
    assert specs[0].internal == "127.0.0.1"  # not an nI name: no private-network address to guess
    assert specs[0].python == VENV_PYTHON


def test_raftlab_node_names_get_their_private_network_address() -> None:
    text = (DATA / "ssh-config-virtualbox-2.txt").read_text().replace("node1", "n1").replace("node2", "n2")
    specs = specs_from_ssh_config(parse_ssh_config(text), net="10.1.2")
    assert [(s.name, s.internal) for s in specs] == [("n1", "10.1.2.11"), ("n2", "10.1.2.12")]


def test_single_machine_on_its_own_address() -> None:
    (spec,) = specs_from_ssh_config(parse_ssh_config((DATA / "ssh-config-bridged-1.txt").read_text()))
    assert (spec.name, spec.address, spec.port, spec.key) == (
        "default", "192.168.207.160", 22, "/home/sabae/.vagrant.d/insecure_private_key")


def test_quoted_paths_unknown_keys_and_host_order() -> None:
    text = ('Host n10\n  HostName 192.168.121.9\n  IdentityFile "/home/a b/.vagrant/machines/n10/libvirt/private_key"\n'
            "  PubkeyAcceptedKeyTypes +ssh-rsa\n  HostKeyAlgorithms +ssh-rsa\n"
            "Host n2\n  HostName 192.168.121.7\n  User vagrant\n  Port 22\n")
    specs = specs_from_ssh_config(parse_ssh_config(text))
    assert [s.name for s in specs] == ["n2", "n10"]
    assert specs[1].key == "/home/a b/.vagrant/machines/n10/libvirt/private_key"
    assert specs[1].internal == "192.168.56.20"


def test_nodes_file_round_trip(tmp_path: Path) -> None:
    text = (DATA / "ssh-config-virtualbox-2.txt").read_text().replace("node", "n")
    specs = specs_from_ssh_config(parse_ssh_config(text))
    path = tmp_path / "nodes"
    write(path, specs, comment="test")
    assert read(path) == specs
    first = path.read_text().splitlines()[1]
    assert first.startswith("n1 127.0.0.1 port=2222 user=vagrant key=/home/xxxxxx/") and "internal=192.168.56.11" in first


@pytest.mark.parametrize(("text", "message"), [
    ("  HostName 1.2.3.4\n", "before any `Host` line"),
    ("Host n1\n  User vagrant\n", "has no HostName"),
    ("Host n1\n  HostName 1.2.3.4\n  Port twenty\n", "bad Port"),
    ("", "listed no hosts"),
    ("Host n1\n  HostName bad_host!\n", "bad address"),
])
def test_bad_ssh_config_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(LabError, match=message):
        specs_from_ssh_config(parse_ssh_config(text))


def test_machine_readable_status() -> None:
    states = parse_status((DATA / "status-libvirt-5.txt").read_text())
    assert states == {f"n{i}": "not_created" for i in range(1, 6)}
    assert parse_status("1,n1,state,running\n1,n2,state,poweroff\n1,n1,provider-name,libvirt\n") == {
        "n1": "running", "n2": "poweroff"}


def _vagrant(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["vagrant", *args], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", **env})


@pytest.fixture
def vagrant_copy(tmp_path: Path) -> Path:
    """vagrant/ copied aside: validate writes a .vagrant folder next to the Vagrantfile."""
    need_binary("vagrant")
    for name in ("Vagrantfile", "provision.sh"):
        shutil.copy(ROOT / "vagrant" / name, tmp_path / name)
    return tmp_path


def _has_libvirt(folder: Path) -> bool:
    return "vagrant-libvirt" in _vagrant(folder, "plugin", "list").stdout


def test_vagrant_validate(vagrant_copy: Path) -> None:
    if _has_libvirt(vagrant_copy):  # the provider's own config is validated too
        r = _vagrant(vagrant_copy, "validate", VAGRANT_DEFAULT_PROVIDER="libvirt")
    else:
        r = _vagrant(vagrant_copy, "validate", "--ignore-provider")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully" in r.stdout


def test_vagrantfile_node_count_and_bad_count(vagrant_copy: Path) -> None:
    bad = _vagrant(vagrant_copy, "validate", "--ignore-provider", RAFTLAB_NODES="12")
    assert bad.returncode != 0
    assert "RAFTLAB_NODES must be between 1 and 9" in bad.stdout + bad.stderr
    if not _has_libvirt(vagrant_copy):
        pytest.skip("vagrant status needs a provider plugin (vagrant-libvirt) to list machines")
    r = _vagrant(vagrant_copy, "status", "--machine-readable", RAFTLAB_NODES="3", VAGRANT_DEFAULT_PROVIDER="libvirt")
    assert r.returncode == 0, r.stderr
    assert parse_status(r.stdout) == {"n1": "not_created", "n2": "not_created", "n3": "not_created"}


def test_lab_up_without_vagrant_says_so(tmp_path: Path) -> None:
    raftlab = Path(sys.executable).parent / "raftlab"
    r = subprocess.run([str(raftlab), "lab", "up", "--lab", "vagrant", "--opt", f"vagrant_dir={ROOT / 'vagrant'}"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PATH": str(tmp_path), "RAFTLAB_LABS_DIR": str(tmp_path / "labs")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "vagrant is not installed" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "labs" / "vagrant.json").exists()  # nothing recorded: a later `up` starts clean


def test_real_libvirt_run_gives_the_nodes_file_it_wrote(tmp_path: Path) -> None:
    """ssh-config and nodes file captured from a real `raftlab lab up --lab vagrant` (libvirt)."""
    specs = specs_from_ssh_config(parse_ssh_config((DATA / "ssh-config-libvirt-1.txt").read_text()))
    assert [(s.name, s.address, s.port, s.user, s.internal) for s in specs] == [
        ("n1", "10.79.8.55", 22, "vagrant", "192.168.56.11")]
    path = tmp_path / "nodes"
    write(path, specs, comment="written by `raftlab lab up --lab vagrant` from /work/main/vagrant")
    assert path.read_text() == (DATA / "nodes-libvirt-1.txt").read_text()
    assert parse_status((DATA / "status-libvirt-running-1.txt").read_text()) == {"n1": "running"}
