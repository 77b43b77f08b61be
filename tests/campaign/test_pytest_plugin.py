"""The pytest plugin used the way a user would: a campaign as a test, on the toy system.

The plugin is loaded through its ``pytest11`` entry point (installing raftlab is enough); these
tests use its fixtures directly for the passing mode and the cluster, and run a user's failing
test file in a child pytest (pytester) to see the assertion message a user gets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftlab.history import Op, OpType
from tests.campaign.needs import need_checker

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]
HERE = Path(__file__).resolve().parent
FAST = dict(system="toysys", concurrency=4, time_limit=3.0, interval=0.6, rate=80.0, recovery_timeout=10.0,
            final_timeout=5.0, op_timeout=0.5)


@pytest.fixture(autouse=True)
def toysys_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/campaign on the import path, as a user's own system module would be."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def raftlab_system() -> str:
    return "toysys"


def test_a_passing_campaign_is_a_passing_assertion(raftlab_campaign) -> None:  # type: ignore[no-untyped-def]
    need_checker()
    result = raftlab_campaign(nemesis="kill,pause", seed=5, **FAST)
    assert result.passed, result
    result.expect_valid()
    assert result.verdict is True and result.seed == 5 and result.report.exists()
    assert result.replay == f"raftlab replay {result.outcome.run.path}"


def test_the_cluster_fixture_serves_a_set_up_system(raftlab_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = raftlab_cluster
    assert cluster.hosts == ["n1", "n2", "n3", "n4", "n5"]

    async def write_then_read() -> tuple[Op, Op]:
        client = await cluster.system.client.open(cluster.hosts[0])
        try:
            w = await client.invoke(Op(type=OpType.INVOKE, process=0, f="write", key="k", value=3))
            r = await client.invoke(Op(type=OpType.INVOKE, process=0, f="read", key="k"))
        finally:
            await client.close()
        return w, r

    w, r = cluster.run(write_then_read())
    assert w.type is OpType.OK and r.type is OpType.OK and r.value == 3


USER_TEST = '''
def test_my_system_is_linearizable(raftlab_campaign):
    result = raftlab_campaign(system="toysys", system_opts={"mode": "split"}, nemesis="none", seed=9,
                              concurrency=4, time_limit=3.0, rate=80.0, final_timeout=5.0, op_timeout=0.5,
                              workload_opts={"keys": 1})
    assert result.passed, result
'''


def test_a_failing_campaign_fails_with_the_report_and_the_replay_command(pytester: pytest.Pytester) -> None:
    need_checker()
    pytester.makepyfile(test_user=USER_TEST)
    store = pytester.path / "kept-runs"
    done = pytester.runpytest_subprocess("-q", f"--raftlab-store={store}", "-p", "no:cacheprovider", timeout=180)
    done.assert_outcomes(failed=1)
    out = done.stdout.str()
    assert "raftlab campaigns" in out and "raftlab campaign INVALID (exit 1, seed 9)" in out
    report = next(store.glob("register/*/report.html"))
    assert f"report: {report}" in out
    assert f"replay: raftlab replay {report.parent}" in out
    assert "not linearizable" in out
