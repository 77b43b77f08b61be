"""Shared test set-up: the seed every randomised test prints, and honest skips.

A test that needs a capability this machine lacks (root, FUSE, a binary) is skipped with the
reason printed, never silently; README.md says what each capability adds.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from raftlab.nemesis.disk import FuseDisk

SHARED = Path(__file__).resolve().parents[2] / "shared"
HISTORIES = SHARED / "histories"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rewrite", action="store_true", help="rewrite transcript expectations")
    parser.addoption("--seed", type=int, default=None, help="seed for randomised tests")


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    value = request.config.getoption("--seed")
    if value is None:
        value = random.SystemRandom().randrange(2**32)
    print(f"seed={value} (replay with --seed {value})")
    return value


def is_root() -> bool:
    return os.geteuid() == 0


def need_root() -> None:
    if not is_root():
        pytest.skip("needs root (network namespaces, iptables, mounts); run the suite as root")


def need_binary(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


def need_fuse() -> None:
    need_root()
    need_binary("fusermount3")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")


@contextlib.asynccontextmanager
async def labfs(tmp_path: Path, data: Path, *, lazy: bool) -> AsyncIterator[FuseDisk]:
    """``data`` on a real labfs mount (FUSE) for the block, unmounted after it even on failure;
    the caller sweeps ``tmp_path`` of leftover processes once its event loop has ended."""
    from raftlab.nemesis.disk import FuseDisk

    from raftlab.lab.local import LocalRemote

    need_fuse()
    disk = FuseDisk(LocalRemote("n1", tmp_path), sys.executable, str(data))
    await disk.mount(lazy=lazy)
    try:
        yield disk
    finally:
        await disk.unmount()


def ctrl_c_reaches() -> None:
    """``preexec_fn`` for a child that a test will Ctrl-C: SIGINT back to its default. A shell
    starts a background job with SIGINT ignored, and an ignored signal survives exec, so a suite
    started as ``... &`` would otherwise spawn children that never see the test's SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def in_ci() -> bool:
    """CI (``CI=true``, as GitHub Actions and most CI systems set it) must not skip the suite."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def need_histories() -> Path:
    """The conformance histories; a skip on a developer's clone, a failure in CI."""
    if not HISTORIES.is_dir():
        where = f"conformance histories not found at {HISTORIES} (shared/histories beside the clone; see README.md)"
        if in_ci():
            pytest.fail(f"{where}: CI=true, so the conformance suite must run", pytrace=False)
        pytest.skip(where)
    return HISTORIES
