"""Campaign tests run in their own labs directory and bring their lab down afterwards."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_ports = itertools.count(18000, 40)


@pytest.fixture
def lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh local lab name whose state lives under tmp_path; removed after the test."""
    from raftlab.lab import lab_down

    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    name = f"t{os.getpid()}-{tmp_path.name[-12:]}"
    yield name
    asyncio.run(lab_down(name))


@pytest.fixture
def base_port() -> int:
    """Ports 18000-18999 belong to these tests; each test takes its own block of 40."""
    return next(_ports) % 1000 + 18000
