"""The containers lab for real (root): 5 nspawn hosts, provisioned over SSH by vagrant/provision.sh.

One lab is brought up for the module (the rootfs is built once into ~/.cache/raftlab and reused);
each test checks one thing a campaign relies on, through the same SSH path as Vagrant VMs, and
the last one brings the lab down and asserts that no namespace, link, mount, cgroup or process
is left behind.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from raftlab.nemesis import package
from raftlab.nemesis.disk import FuseDisk
from raftlab.nemesis.process import pid_file_process
from raftlab.nemesis.targets import op

from raftlab.history import NEMESIS, History, OpType
from raftlab.lab import LabConflict, LabState, lab_down, lab_up
from raftlab.lab.containers import VENV_PYTHON, ContainersLab, attach, hosts
from raftlab.runner import Campaign, Outcome, run_campaign
from raftlab.systems import SystemOptions
from tests.campaign.needs import need_checker, need_raft_core
from tests.conftest import need_binary, need_root
from tests.containers.sshkv import SshKvDB
from tests.nemesis.standin import ClockDB

pytestmark = [pytest.mark.root, pytest.mark.slow]
PREFIX, BRIDGE, SUBNET = "rlc", "rlcbr0", "10.79.0"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    need_root()
    need_binary("debootstrap", "systemd-nspawn", "ip", "ssh-keygen")
    labs = tmp_path_factory.mktemp("labs")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAFTLAB_LABS_DIR", str(labs))
    try:
        try:
            st = run(lab_up("containers", name="ct", nodes=5, workdir=labs / "ct", prefix=PREFIX, bridge=BRIDGE,
                            subnet=SUBNET))
        except LabConflict as e:  # somebody's own containers lab holds these names: leave it alone
            pytest.skip(f"cannot take the test lab's names: {e}")
        yield st
    finally:
        run(lab_down("ct"))
        mp.undo()


def with_lab(state: LabState, body):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        lab = await attach(state)
        try:
            return await body(lab)
        finally:
            await lab.close()
    return run(go())


def test_each_host_answers_over_ssh_as_itself(state: LabState) -> None:
    async def body(lab: ContainersLab) -> dict[str, str]:
        out = {}
        for h in lab.hosts:
            r = await lab.remote(h).run("echo $(hostname) $(cat /proc/1/comm) $(id -un) $SUDO_USER; "
                                        "ip -4 -o addr show eth0 | awk '{print $4}'")
            out[h] = r.stdout.split()
        return out
    seen = with_lab(state, body)
    for i, h in enumerate(state.hosts, 1):
        hostname, pid1, user, sudo_user, address = seen[h]
        assert hostname == h
        assert pid1 == "systemd"  # a booted host, not a process in a namespace
        assert (user, sudo_user) == ("root", "vagrant")  # logged in as vagrant, commands under sudo
        assert address == f"{SUBNET}.{10 + i}/24"


def test_provision_sh_installed_raftlab_and_is_idempotent(state: LabState) -> None:
    async def body(lab: ContainersLab) -> tuple[str, str, int]:
        r = await lab.remote("n2").run(f"{VENV_PYTHON} -c 'import raftlab, mfusepy; print(raftlab.__file__)'")
        # Run it again exactly as a user would on a Vagrant box: as `vagrant`, no sudo in front.
        client = await lab.remote("n2").client()
        _, out, err = client.exec_command("sh /var/tmp/raftlab-provision/provision.sh "
                                          "--wheelhouse /var/tmp/raftlab-provision/wheelhouse")
        status = out.channel.recv_exit_status()
        return r.stdout, out.read().decode() + err.read().decode(), status
    where, again, status = with_lab(state, body)
    assert where.startswith("/opt/raftlab/venv/lib/python3")
    assert status == 0, again
    assert "Debian packages already installed" in again
    assert "installing raftlab" not in again  # same wheels: nothing reinstalled
    assert "ready: python /opt/raftlab/venv/bin/python" in again


def test_iptables_partition_inside_hosts_cuts_only_that_link(state: LabState) -> None:
    def reach(dst: int) -> str:
        return f"timeout 2 bash -c '</dev/tcp/{SUBNET}.{10 + dst}/22' && echo up || echo down"

    async def body(lab: ContainersLab) -> tuple[list[str], list[str]]:
        n1 = lab.remote("n1")
        await lab.net.partition({"n1": ["n2"], "n2": ["n1"]})
        try:
            cut = [(await n1.run(reach(2))).stdout.strip(), (await n1.run(reach(3))).stdout.strip(),
                   (await lab.remote("n2").run(reach(1))).stdout.strip()]
        finally:
            await lab.net.heal()
        healed = [(await n1.run(reach(2))).stdout.strip()]
        return cut, healed
    cut, healed = with_lab(state, body)
    assert cut == ["down", "up", "down"]
    assert healed == ["up"]


def test_kill_and_pause_stay_on_their_host(state: LabState) -> None:
    async def body(lab: ContainersLab) -> list[str]:
        start = "systemd-run --unit=rltest --quiet sleep 600 && sleep 0.2 && systemctl show -p MainPID --value rltest"
        pid1 = (await lab.remote("n1").run(start)).stdout.strip()
        pid2 = (await lab.remote("n2").run(start)).stdout.strip()
        state_of = "sed 's/.*) //;s/ .*//' /proc/{}/stat 2>/dev/null || echo gone"
        await lab.remote("n1").run(f"kill -STOP {pid1}")
        seen = [(await lab.remote("n1").run(state_of.format(pid1))).stdout.strip()]
        await lab.remote("n1").run("pkill -9 -x sleep")  # on n1 only: each host has its own PID table
        await asyncio.sleep(0.2)
        seen.append((await lab.remote("n1").run(state_of.format(pid1))).stdout.strip())
        seen.append((await lab.remote("n2").run(state_of.format(pid2))).stdout.strip())
        await lab.remote("n2").run("systemctl stop rltest")
        await lab.remote("n1").run("systemctl reset-failed rltest 2>/dev/null || true")
        return seen
    assert with_lab(state, body) == ["T", "gone", "S"]


def _banner(state: LabState, address: str) -> str:
    """Log in with a fresh SSH client and short timeouts: 'ok' or why not."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(address, username="vagrant", key_filename=str(Path(state.workdir) / "ssh" / "id_ed25519"),
                       timeout=2, banner_timeout=2, auth_timeout=2, look_for_keys=False, allow_agent=False)
    except (OSError, paramiko.SSHException) as e:
        return f"no answer: {e.__class__.__name__}"
    finally:
        client.close()
    return "ok"


def test_whole_host_pause_freezes_everything_until_resumed(state: LabState) -> None:
    n3 = hosts(state)[2]

    async def body(lab: ContainersLab) -> list[str]:
        await lab.pause_host("n3")
        try:
            frozen = [n3.frozen(), await asyncio.to_thread(_banner, state, n3.address),
                      _proc_state(n3.pid1())]
        finally:
            await lab.resume_host("n3")
        return [*frozen, await asyncio.to_thread(_banner, state, n3.address), (await lab.remote("n3").run("hostname")).stdout]
    frozen, paused_ssh, pid1_state, resumed_ssh, name = with_lab(state, body)
    assert frozen is True
    assert paused_ssh.startswith("no answer")
    assert pid1_state == "D"  # a frozen task shows as D (LAB-NOTES)
    assert resumed_ssh == "ok"
    assert name.strip() == "n3"


def _proc_state(pid: int | None) -> str:
    if pid is None:
        return "gone"
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_power_cut_kills_the_whole_host_and_power_on_boots_it_from_its_disk(state: LabState) -> None:
    n4 = hosts(state)[3]

    async def body(lab: ContainersLab) -> list[object]:
        r = lab.remote("n4")
        await r.run("echo kept > /var/lib/raftlab/power-test && sync /var/lib/raftlab/power-test")
        await r.run("systemd-run --unit=victim --quiet sleep 600")
        host_pids = _host_pids(n4.cgroup)
        old_pid1 = n4.pid1()
        killed = await lab.power_cut("n4")
        after = [killed == old_pid1, n4.pid1(), [p for p in host_pids if _proc_state(p) not in ("gone", "Z")],
                 await asyncio.to_thread(_banner, state, n4.address)]
        await lab.power_on("n4")
        back = (await r.run("hostname; cat /var/lib/raftlab/power-test; systemctl is-active victim || true")).stdout.split()
        return [*after, len(host_pids), n4.pid1() not in (None, old_pid1), back]
    same_pid1, pid1_after, survivors, ssh_after, counted, new_pid1, back = with_lab(state, body)
    assert same_pid1
    assert pid1_after is None
    assert survivors == []  # every process of the host died with its PID 1
    assert ssh_after.startswith("no answer")
    assert counted >= 5  # systemd, journald, sshd, the victim, ...: all of them were there
    assert new_pid1
    assert back == ["n4", "kept", "inactive"]  # same disk, fresh processes


def test_a_node_starts_after_a_power_cut_though_the_new_boot_reuses_its_pid(state: LabState) -> None:
    """The CI failure of 2026-12-02, made deterministic: a fresh boot hands out the same pids in
    the same order, so the pid file a power cut leaves names a process of the new boot. Here a
    stranger is made to take that pid; the DB must not take it for its node, and must start one."""
    async def body(lab: ContainersLab) -> list[object]:
        db = SshKvDB(lab, SystemOptions(base_port=17150))
        r = lab.remote("n3")
        await db.setup("n3")
        stale = int((await r.run(f"cat {db.pid_file('n3')}")).stdout)
        await lab.power_cut("n3")
        await lab.power_on("n3")
        # pids count up from the boot's last one: spawn sleepers in / until one gets the stale pid
        # (should this boot have passed it already, the file is pointed at the last sleeper: the
        # same situation, a live stranger named by the node's pid file)
        last = int((await r.run(f"cd / && for i in $(seq 500); do setsid sleep 120 >/dev/null 2>&1 </dev/null & "
                                f"[ $! -ge {stale} ] && break; done; echo $!")).stdout.split()[-1])
        if last != stale:
            await r.run(f"echo {last} > {db.pid_file('n3')}")
            stale = last
        stranger = (await r.run(f"readlink /proc/{stale}/cwd", check=False)).stdout.strip()
        running_before = await pid_file_process(r, db.pid_file("n3"))
        await db.start("n3")
        fresh = await pid_file_process(r, db.pid_file("n3"))
        reader, writer = await asyncio.open_connection(*lab.endpoint(None, "n3", db.port("n3")))
        writer.write(b'{"f": "read", "key": "k", "value": null}\n')
        answer = json.loads(await asyncio.wait_for(reader.readline(), 5.0))
        writer.close()
        still = (await r.run(f"readlink /proc/{stale}/cwd", check=False)).stdout.strip()
        await r.run("pkill -f '^sleep 120$' || true")
        await db.teardown("n3")
        return [stranger, running_before, fresh not in (None, stale), answer["ok"], still]
    stranger, running_before, fresh, answered, still = with_lab(state, body)
    assert stranger == "/"  # the stale pid now names a process of the new boot
    assert running_before is None  # not taken for the node
    assert fresh and answered is True  # the node was started, and serves
    assert still == "/"  # and the stranger was not signalled


def _host_pids(cgroup: str) -> list[int]:
    out = subprocess.run(["sh", "-c", f"cat /sys/fs/cgroup/pids/{cgroup}/cgroup.procs "
                                      f"$(find /sys/fs/cgroup/pids/{cgroup} -mindepth 2 -name cgroup.procs)"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_power_cut_drops_what_the_fuse_layer_had_not_fsynced(state: LabState) -> None:
    async def body(lab: ContainersLab) -> list[str]:
        r = lab.remote("n5")
        data = "/var/lib/raftlab/pc-data"
        await r.run(f"rm -rf {data} {data}.labfs && mkdir -p {data}")
        disk = FuseDisk(r, VENV_PYTHON, data)
        await disk.mount(lazy=True)
        # 'kept' is fsynced (python: os.fsync); ' lost' is appended without fsync.
        await r.run(f"{VENV_PYTHON} -c \"import os; f = open('{data}/f', 'w'); f.write('kept'); f.flush(); "
                    f"os.fsync(f.fileno()); f.close(); open('{data}/f', 'a').write(' lost')\"")
        before = (await r.run(f"cat {data}/f")).stdout
        await lab.power_cut("n5")
        await lab.power_on("n5")
        after = (await r.run(f"cat {data}.labfs/f")).stdout
        await r.run(f"rm -rf {data} {data}.labfs")
        return [before, after]
    assert with_lab(state, body) == ["kept lost", "kept"]


def test_attach_thaws_and_boots_what_an_interrupted_run_left(state: LabState) -> None:
    machines = {m.name: m for m in hosts(state)}
    run(machines["n2"].freeze())
    run(machines["n5"].power_cut())
    assert machines["n2"].frozen() and machines["n5"].pid1() is None

    async def body(lab: ContainersLab) -> list[str]:
        return [(await lab.remote(h).run("hostname")).stdout.strip() for h in ("n2", "n5")]
    assert with_lab(state, body) == ["n2", "n5"]
    assert not machines["n2"].frozen() and machines["n5"].pid1()


async def _skew(lab: ContainersLab, db: ClockDB, host: str) -> tuple[float, float, float]:
    """(the host process's time.time() minus this machine's, its time.monotonic(), this machine's
    time), read from the last line the process wrote inside the container. The containers share
    this kernel's CLOCK_REALTIME, so without a fault the skew is the SSH round trip, never seconds."""
    before = time.time()
    out = (await lab.remote(host).run(f"tail -n 3 {db.clock_file(host)}")).stdout
    after = time.time()
    real, mono = (float(x) for x in [ln for ln in out.split("\n") if ln.count(" ") == 1][-1].split())
    return real - (before + after) / 2, mono, after


def test_clock_faults_move_the_clock_inside_a_host_process(state: LabState) -> None:
    """libfaketime from the rootfs, preloaded into a process each host runs with its venv python
    (started over SSH as a campaign starts nodes); the timestamp file is on the host, rewritten
    over SSH. The process's own time.time() moves by the bump, its monotonic clock slows, and the
    reset puts both back."""
    async def body(lab: ContainersLab) -> dict[str, object]:
        db = ClockDB(lab, VENV_PYTHON)
        seen: dict[str, object] = {}
        try:
            for h in lab.hosts:
                await db.start(h)
            nem = package("clock", db=db, rng=random.Random(7), interval=1,
                          opts={"clock_offset": 20.0, "clock_slow": 0.25}).nemesis
            await nem.setup(lab)
            await asyncio.sleep(0.5)
            seen["before"] = (await _skew(lab, db, "n1"))[0]
            bump = await nem.invoke(op("clock-skew", {"mode": "bump", "target": ["n1"]}))
            seen["bump"] = bump
            await asyncio.sleep(0.3)
            seen["bumped"] = (await _skew(lab, db, "n1"))[0]
            seen["other"] = (await _skew(lab, db, "n2"))[0]
            seen["rc"] = (await lab.remote("n1").run(f"cat {lab.node_dir('n1')}/clock.rc")).stdout.strip()
            slow = await nem.invoke(op("clock-skew", {"mode": "slow", "target": ["n2"]}))
            seen["slow_error"] = slow.error
            _, mono0, t0 = await _skew(lab, db, "n2")
            await asyncio.sleep(2.0)
            _, mono1, t1 = await _skew(lab, db, "n2")
            seen["rate"] = (mono1 - mono0) / (t1 - t0)
            reset = await nem.invoke(op("clock-reset"))
            seen["reset"] = reset
            await asyncio.sleep(0.3)
            seen["healed"] = [(await _skew(lab, db, h))[0] for h in ("n1", "n2")]
            await nem.teardown()
        finally:
            for h in lab.hosts:
                await db.kill(h)
        return seen
    seen = with_lab(state, body)
    assert abs(seen["before"]) < 0.5  # type: ignore[arg-type]
    bump = seen["bump"]
    assert bump.error is None and bump.value["done"] == ["n1"], bump  # type: ignore[attr-defined]  # libfaketime is there
    offset = float(bump.value["clocks"]["n1"].split()[0])  # type: ignore[attr-defined]
    assert 10.0 <= abs(offset) <= 20.0
    assert seen["rc"] == bump.value["clocks"]["n1"]  # type: ignore[attr-defined]  # the file inside the host
    assert seen["bumped"] == pytest.approx(offset, abs=0.5)  # the process's time.time() moved
    assert abs(seen["other"]) < 0.5  # type: ignore[arg-type]  # another host's did not
    assert seen["slow_error"] is None
    assert 0.15 < seen["rate"] < 0.4, seen["rate"]  # type: ignore[operator]  # monotonic at a quarter speed
    assert seen["reset"].error is None  # type: ignore[attr-defined]
    assert all(abs(s) < 0.5 for s in seen["healed"]), seen["healed"]  # type: ignore[attr-defined]


def test_lease_reads_under_a_slow_leader_clock_are_caught_on_containers(state: LabState, tmp_path: Path) -> None:
    """examples/lease-clock.toml's faults on the containers lab: dtkv's lease reads with the
    leader's clock at 5% speed (beyond the drift bound) are caught, as on the local lab."""
    need_raft_core()
    need_checker()
    outs = []
    for seed in (3, 4, 5):
        out = _campaign(state, tmp_path / str(seed), "dtkv", ("clock-slow-leader", "partition-leader"), seed=seed,
                        node_args=("--read-mode=lease",), nemesis_opts={"clock_slow": 0.05}, time_limit=40.0,
                        interval=4.0, workload="register")
        hits, errors = _faults(out)
        assert errors == [], errors
        assert hits.get("clock-skew"), hits  # the clock fault took effect inside the hosts
        outs.append(out)
        if out.verdict is False:
            break
    assert outs[-1].verdict is False, [o.reasons for o in outs]


def test_index_reads_are_valid_under_clock_faults_on_containers(state: LabState, tmp_path: Path) -> None:
    """ReadIndex reads (the default) never depend on clocks: valid under every clock mode there."""
    need_raft_core()
    need_checker()
    out = _campaign(state, tmp_path, "dtkv", ("clock", "partition"), time_limit=25.0, interval=2.0,
                    nemesis_opts={"clock_slow": 0.05, "clock_fast": 5.0, "clock_offset": 30.0})
    hits, errors = _faults(out)
    assert errors == [], errors
    assert hits.get("clock-skew"), hits
    assert out.exit_code == 0, out.reasons


def _campaign(state: LabState, tmp_path: Path, system: str, nemesis: tuple[str, ...], **kw: Any) -> Outcome:
    opts: dict[str, Any] = dict(seed=7, lab="containers", lab_name=state.name, system=system, nemesis=nemesis,
                                store=str(tmp_path / "store"), concurrency=4, time_limit=25.0, interval=1.5, rate=50.0,
                                recovery_timeout=30.0, final_timeout=10.0, op_timeout=1.0, base_port=17100)
    opts.update(kw)
    return run(run_campaign(Campaign(**opts)))


def _faults(out: Outcome) -> tuple[dict[str, int], list[str]]:
    """Per fault f: how many times it hit at least one host; and every failure the nemesis recorded."""
    hits: dict[str, int] = {}
    errors = []
    for o in History.read(out.run.history):
        if o.process == NEMESIS and o.type is OpType.INFO and isinstance(o.value, dict):
            if o.error or o.value.get("failed"):
                errors.append(f"{o.f}: {o.error or o.value['failed']}")
            elif o.value.get("done"):
                hits[o.f] = hits.get(o.f, 0) + 1
    return hits, errors


def test_campaign_over_ssh_with_every_fault(state: LabState, tmp_path: Path) -> None:
    """A short campaign on the hosts over SSH: partition, kill, pause and disk-pause inside the
    hosts, host-pause and power-cut from the controller; everything healed, every fault real."""
    out = _campaign(state, tmp_path, "tests.containers.sshkv",
                    ("partition", "kill", "pause", "disk-pause", "host-pause", "power-cut"))
    assert out.exit_code != 2, out.reasons  # the run completed
    hits, errors = _faults(out)
    assert errors == []
    assert len({"start-partition", "kill", "pause", "disk-pause", "host-pause", "power-cut"} & set(hits)) >= 4, hits
    for start, stop in (("kill", "start"), ("pause", "resume"), ("disk-pause", "disk-resume"),
                        ("host-pause", "host-resume"), ("power-cut", "power-on")):
        assert hits.get(start, 0) <= hits.get(stop, 0), (start, hits)  # each fault was healed
    results = json.loads(out.run.results.read_text())
    assert results["checkers"]["recovery"]["healthy"] is True
    assert results["checkers"]["stats"]["ok"] > 10
    if "checker crashed" not in results["checkers"]["workload"].get("explanation", ""):
        assert out.verdict is True  # one durable copy: linearizable whatever the faults
    assert all(h.pid1() for h in hosts(state))  # every host powered on again


def test_dtkv_campaign_over_ssh(state: LabState, tmp_path: Path) -> None:
    try:
        from raftlab.impl.raft import RaftCore  # noqa: F401
    except ImportError:
        pytest.skip("the Raft core (raftlab.impl.raft.RaftCore) has not landed yet")
    out = _campaign(state, tmp_path, "dtkv", ("partition", "kill", "pause", "disk-pause"))
    hits, errors = _faults(out)
    assert errors == []
    assert hits
    assert out.exit_code == 0, out.reasons


def test_down_leaves_nothing_behind(state: LabState) -> None:
    machines = hosts(state)
    workdir = Path(state.workdir)
    assert all(m.pid1() for m in machines)
    run(lab_down(state.name))
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    mounts = Path("/proc/self/mounts").read_text()
    assert not re.search(rf"^{PREFIX}\d+\b", netns, re.M), netns
    assert not re.search(rf"\b({BRIDGE}|{PREFIX}v\d+)[@:]", links), links
    assert str(workdir) not in mounts
    assert not list(Path("/sys/fs/cgroup").glob(f"*/raftlab-{PREFIX}*"))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert shlex.quote(str(workdir)) not in ps and str(workdir) not in ps
    assert not workdir.exists()
    assert LabState.load(state.name) is None
