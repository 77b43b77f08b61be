"""Bad containers-lab options are one clear error, and leave no lab recorded (no root needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftlab.lab import LabError, LabState, lab_up


@pytest.mark.parametrize(("opts", "message"), [
    ({"mode": "docker"}, "mode must be auto, nspawn or chroot"),
    ({"subnet": "300.1.1"}, "first three octets of a /24"),
    ({"prefix": "Bad-Name"}, "short lowercase names"),
    ({"user": "bob"}, "user must be root or vagrant"),
])
def test_bad_option(opts: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))
    with pytest.raises(LabError, match=message):
        asyncio.run(lab_up("containers", name="bad", nodes=2, workdir=tmp_path / "lab", **opts))
    assert LabState.load("bad") is None
    assert not (tmp_path / "lab").exists()
