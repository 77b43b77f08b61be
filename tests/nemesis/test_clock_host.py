"""The host-clock mechanism (``clock-mechanism=host``): which labs may use it, and exactly what it
sends over SSH, as a transcript (tests/nemesis/testdata/clock_host.txt).

Setting a host's clock for real needs a machine whose kernel is not this one (a Vagrant VM, an SSH
host): stepping this machine's clock would move every other program's, so no test here does it.
The transcript drives the real ``ClockNemesis`` over a lab whose remotes record each command
instead of running it, so a change to any command string, or to when time sync is stopped and
restarted, shows up as a reviewed diff. ``choose`` lines check the refusals.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from raftlab.nemesis import package
from raftlab.nemesis.clock_host import BOOT_ID, choose, wanted
from raftlab.nemesis.targets import op

from raftlab.protocols import Host, RunResult
from tests.transcript import run_transcript

TRANSCRIPT = Path(__file__).parent / "testdata" / "clock_host.txt"


class RecordingRemote:
    """Answers ``cat .../boot_id`` with the host's boot id and every other command with success."""

    def __init__(self, host: Host, sent: list[str], boot_id: str) -> None:
        self.host, self.sent, self.boot_id = host, sent, boot_id

    async def run(self, cmd: str, *, stdin: str | None = None, check: bool = True) -> RunResult:
        self.sent.append(f"{self.host}$ {cmd}")
        return RunResult(exit_status=0, stdout=self.boot_id + "\n" if "boot_id" in cmd else "", stderr="")

    async def put(self, local: str, remote: str) -> None:
        raise AssertionError("the host clock sends no files")

    async def get(self, remote: str, local: str) -> None:
        raise AssertionError("the host clock fetches no files")


class RecordingLab:
    def __init__(self, kind: str, hosts: list[Host], boot_ids: dict[Host, str]) -> None:
        self.kind, self.hosts = kind, hosts
        self.sent: list[str] = []
        self.remotes = {h: RecordingRemote(h, self.sent, boot_ids.get(h, f"boot-{h}")) for h in hosts}

    def remote(self, host: Host) -> RecordingRemote:
        return self.remotes[host]

    def node_dir(self, host: Host) -> str:
        return "/var/lib/raftlab"


class Env:
    """Transcript commands: ``choose KIND WANT [same=HOST]``, ``lab KIND HOSTS [same=HOST]``
    (a host clock nemesis, set up), ``skew MODE HOST``, ``reset``, ``teardown``."""

    def __init__(self) -> None:
        self.lab: RecordingLab | None = None
        self.nem: object = None

    def handle(self, line: str) -> str:
        words = line.split()
        args = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        plain = [w for w in words[1:] if "=" not in w]
        try:
            return getattr(self, f"do_{words[0]}")(plain, args)
        except ValueError as e:
            return f"refused: {e}"

    def do_choose(self, plain: list[str], args: dict[str, str]) -> str:
        kind, want = plain
        same = args.get("same")
        return choose(kind, wanted({"clock_mechanism": want}), {h: "me" if h == same else h for h in ("n1", "n2")},
                      "me")

    def do_lab(self, plain: list[str], args: dict[str, str]) -> str:
        kind, hosts = plain[0], plain[1].split(",")
        same = args.get("same")
        own = Path(BOOT_ID).read_text().strip()  # a host that answers with it runs on this kernel
        self.lab = RecordingLab(kind, hosts, {same: own} if same else {})
        self.nem = package("clock", db=None, rng=random.Random(1), interval=1,
                           opts={"clock_mechanism": "host", "clock_offset": 10.0, "clock_strobe": 2.0,
                                 "clock_strobe_seconds": 0.03, "clock_strobe_period": 0.01}).nemesis
        return self._sent(self.nem.setup(self.lab), "set up")  # type: ignore[attr-defined]

    def do_skew(self, plain: list[str], args: dict[str, str]) -> str:
        mode, host = plain
        return self._invoke(op("clock-skew", {"mode": mode, "target": [host]}))

    def do_reset(self, plain: list[str], args: dict[str, str]) -> str:
        return self._invoke(op("clock-reset"))

    def do_teardown(self, plain: list[str], args: dict[str, str]) -> str:
        return self._sent(self.nem.teardown(), "torn down")  # type: ignore[attr-defined]

    def _invoke(self, o: object) -> str:
        done: list[object] = []

        async def go() -> None:
            done.append(await self.nem.invoke(o))  # type: ignore[attr-defined]
        sent = self._sent(go(), "")
        result = done[0]
        value = {k: v for k, v in result.value.items() if k != "failed"}  # type: ignore[attr-defined]
        head = f"error: {result.error}" if result.error else f"ok {value}"  # type: ignore[attr-defined]
        return head + ("\n" + sent if sent else "")

    def _sent(self, coro: object, empty: str) -> str:
        assert self.lab is not None
        del self.lab.sent[:]
        asyncio.run(coro)  # type: ignore[arg-type]
        return "\n".join(self.lab.sent) or empty


def test_host_clock_transcript(request: pytest.FixtureRequest) -> None:
    run_transcript(TRANSCRIPT, Env().handle, rewrite=request.config.getoption("--rewrite"))


def test_an_unknown_mechanism_is_named_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="clock-mechanism must be one of faketime, host, not 'ntp'"):
        package("clock", db=None, rng=random.Random(1), interval=1, opts={"clock_mechanism": "ntp"})


def test_the_host_clock_on_a_shared_kernel_lab_is_a_usage_error_before_the_run(tmp_path: Path) -> None:
    """The lab's kind alone decides it, so `raftlab run` refuses it (exit 2) before any node starts."""
    from click.testing import CliRunner

    from raftlab.cli import cli

    out = CliRunner().invoke(cli, ["run", "--nemesis", "kill,clock", "--nemesis-opt", "clock-mechanism=host",
                                    "--store", str(tmp_path / "store"), "--time-limit", "5"])
    assert out.exit_code == 2, out.output
    assert "clock-mechanism=host is refused on the local lab" in out.output
    assert not (tmp_path / "store").exists()
