"""Clock faults really move a node's clocks: bumps, strobes, fast and slow rates, and the reset.

The node is tests/nemesis/standin.py's ``ClockDB``: a real process, started under libfaketime by
the clock nemesis, that writes its ``time.time()`` and ``time.monotonic()`` every 20 ms. Each
assertion compares what the node read with the controller's own clock.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import pytest
from raftlab.nemesis import package
from raftlab.nemesis.clock import LIBRARY_PATHS, FakeClock, options
from raftlab.nemesis.targets import op

from raftlab.history import OpType
from raftlab.lab import lab_down, open_lab
from tests.nemesis.standin import ClockDB

HAVE_FAKETIME = any(os.path.exists(p) for p in LIBRARY_PATHS)


@pytest.fixture(autouse=True)
def labs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLAB_LABS_DIR", str(tmp_path / "labs"))


def test_a_rate_change_keeps_the_fake_clock_continuous() -> None:
    """libfaketime's fake = start + offset + elapsed * rate: the new offset absorbs the rate change."""
    clock = FakeClock(offset=2.0, rate=1.0)
    slow = clock.at_rate(0.5, elapsed=100.0)
    assert slow.offset + 100.0 * slow.rate == pytest.approx(clock.offset + 100.0 * clock.rate)
    assert slow.skew(110.0) == pytest.approx(2.0 - 5.0)  # 10 s later it has lost 5 s
    assert FakeClock(offset=-1.5, rate=2).spec() == "-1.500000 x2"
    with pytest.raises(ValueError, match="positive"):
        FakeClock(rate=0)
    with pytest.raises(ValueError, match="clock-slow must be positive"):
        options({"clock_slow": 0})
    with pytest.raises(ValueError, match="clock-offset must be a number"):
        options({"clock_offset": "far"})


def last_clock(path: str) -> tuple[float, float, float]:
    """(the node's realtime, its monotonic, the controller's realtime) from the node's last line."""
    now = time.time()
    lines = Path(path).read_text().split("\n")
    real, mono = (float(x) for x in [line for line in lines if line.count(" ") == 1][-1].split())
    return real, mono, now


@pytest.mark.skipif(not HAVE_FAKETIME, reason="libfaketime is not installed (Debian: apt-get install libfaketime)")
def test_clock_faults_move_the_node_clocks(tmp_path: Path, seed: int) -> None:
    async def main() -> None:
        lab = await open_lab("local", nodes=3, workdir=tmp_path / "w", name="clk")
        db = ClockDB(lab, sys.executable)
        try:
            for h in lab.hosts:
                await db.start(h)
            nem = package("clock", db=db, rng=random.Random(seed), interval=1,
                          opts={"clock_offset": 20.0, "clock_slow": 0.25, "clock_strobe": 30.0,
                                "clock_strobe_seconds": 1.0}).nemesis
            await nem.setup(lab)
            await asyncio.sleep(0.5)
            real, _, now = last_clock(db.clock_file("n1"))
            assert abs(real - now) < 0.5  # set up with no skew

            done = await nem.invoke(op("clock-skew", {"mode": "bump", "target": ["n1"]}))
            assert done.type is OpType.INFO and done.error is None, done
            offset = float(done.value["clocks"]["n1"].split()[0])
            assert 10.0 <= abs(offset) <= 20.0
            await asyncio.sleep(0.3)
            real, _, now = last_clock(db.clock_file("n1"))
            assert real - now == pytest.approx(offset, abs=0.3)  # the node's time.time() moved
            real2, _, now2 = last_clock(db.clock_file("n2"))
            assert abs(real2 - now2) < 0.3  # the others did not

            _, mono_before, t_before = last_clock(db.clock_file("n2"))
            done = await nem.invoke(op("clock-skew", {"mode": "slow", "target": ["n2"]}))
            assert done.error is None, done
            _, mono0, t0 = last_clock(db.clock_file("n2"))
            assert -0.1 < mono0 - mono_before < t0 - t_before + 0.1  # no jump, back or forward, at the switch
            await asyncio.sleep(2.0)
            _, mono1, t1 = last_clock(db.clock_file("n2"))
            rate = (mono1 - mono0) / (t1 - t0)
            assert 0.15 < rate < 0.4, (rate, done.value)  # monotonic time runs at a quarter of real speed

            strobe = asyncio.create_task(nem.invoke(op("clock-skew", {"mode": "strobe", "target": ["n3"]})))
            seen = []
            while not strobe.done():
                real3, _, now3 = last_clock(db.clock_file("n3"))
                seen.append(real3 - now3)
                await asyncio.sleep(0.03)
            assert (await strobe).error is None
            assert min(seen) < 1.0 and max(seen) > 29.0  # flipped between the base and +30 s

            done = await nem.invoke(op("clock-reset"))
            assert done.error is None and set(done.value["done"]) >= {"n1", "n2"}
            await asyncio.sleep(0.3)
            for h in lab.hosts:
                real, _, now = last_clock(db.clock_file(h))
                assert abs(real - now) < 0.3, h  # every clock is the real one again
            await nem.teardown()
        finally:
            for h in lab.hosts:
                await db.kill(h)
            await lab.close()
            await lab_down("clk")

    asyncio.run(main())
