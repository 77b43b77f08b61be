"""The local lab's address mode: per-host namespaces with their own addresses, cut by iptables, no root.

The probe (tests/lab/addresses_probe.py) runs real processes in real namespaces and checks that a
partition really drops a link's packets, only that link's, and heals.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.lab.addresses_probe import partition_cuts


def _userns_works() -> str:
    if any(shutil.which(b) is None for b in ("unshare", "nsenter", "ip", "iptables")):
        return "needs unshare, nsenter, ip and iptables (util-linux, iproute2, iptables)"
    r = subprocess.run(["unshare", "-U", "-r", "-n", "iptables", "-S"], capture_output=True, text=True)
    return "" if r.returncode == 0 else f"unprivileged user+network namespaces with iptables do not work here: {r.stderr.strip()}"


needs_userns = pytest.mark.skipif(bool(_userns_works()), reason=_userns_works() or "ok")


@needs_userns
def test_a_partition_by_address_cuts_exactly_the_named_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))
    asyncio.run(partition_cuts(tmp_path / "lab"))


@needs_userns
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None or not os.access("/usr/bin/python3", os.X_OK),
                    reason="needs root (to become nobody), setpriv and /usr/bin/python3 (a python nobody may run)")
def test_address_mode_needs_no_root() -> None:
    """The same lab, made by an unprivileged user (nobody): its namespaces, bridge and iptables work."""
    with tempfile.TemporaryDirectory(prefix="rl-userns-") as scratch:
        tmp_path = Path(scratch)
        tmp_path.chmod(0o777)  # pytest's own tmp_path is private to root
        _run_as_nobody(tmp_path)


def _run_as_nobody(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text("import asyncio, sys\nfrom pathlib import Path\n"
                      "from tests.lab.addresses_probe import partition_cuts\n"
                      "asyncio.run(partition_cuts(Path(sys.argv[1])))\nprint('ok')\n")
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                        str(script), str(tmp_path / "lab")], capture_output=True, text=True, timeout=120,
                       cwd=root, env={**os.environ, "RAFTLAB_LABS_DIR": str(tmp_path / "labs"), "PYTHONPATH": str(root),
                                      "HOME": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
