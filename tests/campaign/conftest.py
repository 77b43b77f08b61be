"""Campaign tests run in their own labs directory and bring their lab down afterwards."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftlab.lab.ports import port_free

HERE = Path(__file__).resolve().parent
_ports = itertools.count(random.SystemRandom().randrange(25) * 40, 40)


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
    """A block of 40 ports in 18000-18999 (ours) where nothing listens right now."""
    for _ in range(25):
        start = 18000 + next(_ports) % 1000
        if start + 40 <= 19000 and all(port_free(p) for p in range(start, start + 40)):
            return start
    pytest.skip("no free block of 40 ports in 18000-18999")
