"""Port blocks (raftlab/lab/ports.py): two reservations never overlap, a port another program
holds is skipped, a released or dead holder's block is free again, and exhaustion is named."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from raftlab.lab import LabError
from raftlab.lab.ports import UNIT, PortBlock

FIRST = 26000  # well away from the ranges the campaign tests probe (18000-18999)


@pytest.fixture(autouse=True)
def own_ports_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_PORTS_DIR", str(tmp_path / "ports"))


def test_reservations_never_overlap_and_a_released_block_is_reused() -> None:
    a = PortBlock.reserve(10, first=FIRST, last=FIRST + 10 * UNIT)
    b = PortBlock.reserve(2 * UNIT + 1, first=FIRST, last=FIRST + 10 * UNIT)  # three units
    c = PortBlock.reserve(10, first=FIRST, last=FIRST + 10 * UNIT)
    spans = sorted((x.first, x.first + x.size) for x in (a, b, c))
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans)), spans
    assert b.size == 3 * UNIT
    a.release()
    again = PortBlock.reserve(10, first=FIRST, last=FIRST + 10 * UNIT)
    assert again.first == a.first
    for x in (b, c, again):
        x.release()


def test_a_port_another_program_holds_is_skipped() -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", FIRST + 3))
        s.listen()
        block = PortBlock.reserve(10, first=FIRST, last=FIRST + 4 * UNIT)
        assert block.first >= FIRST + UNIT
        block.release()


def test_a_dead_holders_block_is_free_and_exhaustion_names_the_range(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from raftlab.lab.ports import PortBlock; "
        f"b = PortBlock.reserve(1, first={FIRST}, last={FIRST + UNIT - 1}); print(b.first, flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and int(holder.stdout.readline()) == FIRST
        with pytest.raises(LabError, match=f"no block of 1 free ports in {FIRST}-{FIRST + UNIT - 1}"):
            PortBlock.reserve(1, first=FIRST, last=FIRST + UNIT - 1)
    finally:
        holder.kill()
        holder.wait()
    PortBlock.reserve(1, first=FIRST, last=FIRST + UNIT - 1).release()  # the kernel dropped its lock
