"""Judging replicas: divergent digests, silent hosts and error lines in node logs are findings.

The digest comparison and the log scan are pure over what a run stored, so these tests feed them
the shapes a real run produces; tests/campaign/test_dtkv.py shows a real healthy campaign passes
both, and tests/impl/test_tree.py that equal states give equal tree digests.
"""

from __future__ import annotations

from pathlib import Path

from raftlab import replicas


def fp(applied: int, chain: str = "c", tree: str = "t") -> dict[str, object]:
    return {"applied": applied, "chain": chain, "tree": tree}


def test_equal_replicas_pass_and_a_divergent_log_or_state_is_a_violation() -> None:
    assert replicas.digests({"n1": fp(9), "n2": fp(9), "n3": fp(9)})[0] is True
    valid, why, _ = replicas.digests({"n1": fp(9), "n2": fp(9, chain="x"), "n3": fp(9)})
    assert valid is False and "applied logs differ at applied index 9" in why and "n2=x" in why
    valid, why, _ = replicas.digests({"n1": fp(9), "n2": fp(9, tree="y")})
    assert valid is False and "state machines differ" in why


def test_a_host_that_never_answered_or_never_caught_up_is_a_finding() -> None:
    valid, why, data = replicas.digests({"n1": fp(9), "n2": {"error": "connection refused"}})
    assert valid is False and "n2: connection refused" in why and data["silent"] == ["n2"]
    valid, why, _ = replicas.digests({"n1": fp(9), "n2": fp(7), "n3": fp(9)})
    assert valid is False and "n2 never caught up: applied 7 while the others reached 9" in why
    # hosts at equal indexes are still compared when others lag
    assert replicas.digests({"n1": fp(9), "n2": fp(7), "n3": fp(9, tree="z")})[0] is False


def test_node_logs_with_tracebacks_or_storage_errors_fail_the_run(tmp_path: Path) -> None:
    clean = tmp_path / "nodes" / "n1"
    clean.mkdir(parents=True)
    (clean / "node.log").write_text("node 1: recovered 12 log entries\nnode 1: became leader at term 3\n")
    assert replicas.logs(tmp_path / "nodes")[0] is True
    bad = tmp_path / "nodes" / "n2"
    bad.mkdir()
    (bad / "node.out").write_text("ok\nTraceback (most recent call last):\n  File x\nKeyError: 'a'\n")
    (bad / "node.log").write_text("n2 cannot start: wal/1.seg: offset 8: corrupt entry in the middle of the log\n")
    valid, why, data = replicas.logs(tmp_path / "nodes")
    assert valid is False and data["total"] == 2
    assert {h["pattern"] for h in data["hits"]} == {"traceback", "storage error"}
    assert "n2/node.log" in why or "n2/node.out" in why


def test_checks_reads_the_stored_digests_of_a_run(tmp_path: Path) -> None:
    (tmp_path / replicas.REPLICAS_FILE).write_text('{"rounds": 1, "hosts": {"n1": {"applied": 3, "chain": "a", '
                                                   '"tree": "b"}, "n2": {"applied": 3, "chain": "a", "tree": "c"}}}')
    found = replicas.checks(tmp_path)
    assert found["replicas"][0] is False and found["logs"][0] is True
    assert "replicas" not in replicas.checks(tmp_path / "elsewhere")
