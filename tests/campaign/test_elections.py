"""Election safety judged from node logs (raftlab/elections.py): the lines are the reference
node's own (impl/raft/core.py, impl/machine.py, impl/node.py), written here by hand."""

from __future__ import annotations

from pathlib import Path

from raftlab import elections, replicas

T = "2026-12-02T06:23:41.{:03d}"


def log(host: str, *lines: str) -> str:
    return "\n".join(f"{T.format(k)} {host} {line}" for k, line in enumerate(lines)) + "\n"


def judge(*texts: str) -> tuple[bool, str]:
    valid, why, _ = elections.judge([e for t in texts for e in elections.events(t)])
    return valid, why


HEALTHY = (
    log("n1", "node 1: recovered no snapshot and log entries 1..0, Term:0 Vote:0 Commit:0; seed 1",
        "1 became candidate at term 1", "node 1: hard state Term:1 Vote:1 is durable", "1 became leader at term 1",
        "node 1: hard state Term:2 Vote:0 is durable", "node 1: hard state Term:2 Vote:2 is durable",
        "node 1: recovered snapshot 2/300 (11 bytes) and log entries 280..320, Term:2 Vote:2 Commit:300; seed 1"),
    log("n2", "node 2: hard state Term:1 Vote:1 is durable", "2 became leader at term 2",
        "group 3: 2 became leader at term 1"),  # another Raft group's term 1
)


def test_a_healthy_history_of_elections_and_restarts_passes() -> None:
    valid, why, data = elections.judge([e for t in HEALTHY for e in elections.events(t)])
    assert valid is True, why
    assert data["leaders"] == 3 and data["restarts"] == 2


def test_two_leaders_in_one_term_break_election_safety() -> None:
    valid, why = judge(HEALTHY[0], log("n3", "3 became leader at term 1"))
    assert valid is False and "1 and 3 both became leader at term 1" in why


def test_a_second_vote_in_a_term_is_a_violation_even_across_a_restart() -> None:
    valid, why = judge(log("n4", "node 4: hard state Term:5 Vote:4 is durable",
                           "node 4: recovered no snapshot and log entries 1..9, Term:5 Vote:4 Commit:3; seed 4",
                           "node 4: hard state Term:5 Vote:2 is durable"))
    assert valid is False and "n4 voted for 4" in why and "then for 2" in why and "term 5" in why


def test_a_restart_that_forgets_the_vote_or_the_term_is_a_violation() -> None:
    forgot = log("n5", "node 5: hard state Term:7 Vote:3 is durable",
                 "node 5: recovered no snapshot and log entries 1..9, Term:7 Vote:0 Commit:3; seed 5")
    valid, why = judge(forgot)
    assert valid is False and "Term:7 Vote:0" in why and "Term:7 Vote:3" in why
    older = log("n5", "node 5: hard state Term:7 Vote:3 is durable",
                "node 5: recovered no snapshot and log entries 1..9, Term:6 Vote:3 Commit:3; seed 5")
    assert judge(older)[0] is False


def test_a_node_that_comes_back_empty_starts_a_new_history() -> None:
    """A wiped node (term 0) lost everything on purpose: the replica and history checks judge that."""
    valid, _ = judge(log("n2", "node 2: hard state Term:4 Vote:1 is durable",
                         "node 2: recovered no snapshot and log entries 1..0, Term:0 Vote:0 Commit:0; seed 2",
                         "node 2: hard state Term:4 Vote:3 is durable"))
    assert valid is True


def test_the_runs_logs_are_read_once_per_line_and_other_systems_have_nothing_to_judge(tmp_path: Path) -> None:
    for host, text in (("n1", HEALTHY[0]), ("n3", log("n3", "3 became leader at term 1"))):
        (tmp_path / host).mkdir()
        (tmp_path / host / "node.log").write_text(text)
        (tmp_path / host / "node.out").write_text(text)  # the same lines, captured from stdout
    valid, why, data = elections.judge_dir(tmp_path)
    assert valid is False and data["total"] == 1, why
    (tmp_path / "n3" / "node.log").write_text("raft2026/12/02 06:23:41 INFO: 8e9e05c elected leader at term 1\n")
    (tmp_path / "n3" / "node.out").unlink()
    assert elections.judge_dir(tmp_path)[0] is True
    assert replicas.checks(tmp_path.parent)["elections"][0] is True  # no nodes/ folder: nothing to judge


def test_protocol_refusals_in_node_logs_fail_the_run_but_strays_do_not() -> None:
    """A refusal a correct member can never earn fails the run; a stale TIMEOUT_NOW or a frame from
    outside the cluster is not any member's fault (impl/raft/validate.py)."""
    bad = ["1 refuses 2->1 APP Term:5 Log:4/9: not-leader: APP from 2 at term 5, whose leader is 3",
           "2 refuses 1->2 APP Term:3 Log:1/4: conflict: the leader's entry 4 has term 3; we committed it with term 2",
           "3 refuses 4->3 APP_RESP Term:6 Log:0/99: never-sent: APP_RESP from 4 for index 99; we sent it up to 40"]
    fine = ["1 refuses 2->1 TIMEOUT_NOW Term:4: not-leader: TIMEOUT_NOW from 2 at term 4; we follow 3 at term 5",
            "1 refuses 9->1 APP Term:5: foreign: not meant for this cluster",
            "1 refuses VOTE from 3: rejoining, not caught up yet"]
    assert [name for name, _ in replicas.scan_text("\n".join(bad))] == ["protocol violation"] * 3
    assert replicas.scan_text("\n".join(fine)) == []
