"""Election safety from the node logs: one leader per term, one vote per node per term, and
votes that survive a restart.

A broken vote shows in the client history only when it elects two leaders that both get writes
acknowledged, and only if a client then reads the difference: most runs of a vote bug stay
``valid``. The nodes say more than the clients see. The reference node logs each leadership it
takes (``2 became leader at term 7``), each term and vote once they are durable (``node 3: hard
state Term:7 Vote:2 is durable``, written by impl/machine.py after the fsync) and the hard state
it recovers at every start (``node 3: recovered ... Term:7 Vote:2 Commit:40``). From those lines
alone, ``judge`` checks, per Raft group:

* **one leader per term** (election safety, Raft §5.2): two nodes that became leader in the same
  term;
* **one vote per term**: a node whose durable vote in a term changed to another candidate (a
  candidate votes for itself, so granting a rival's vote in its own term counts);
* **durable votes** (Raft Figure 2: currentTerm and votedFor are persistent): a node that
  restarts with an older term, or with another vote in the same term, than its last durable line.

A node that restarts empty (term 0: its data was wiped by a fault, or it was repaired as a new
member) starts a new history: losing everything is judged by the replica and history checks,
not here. Lines of other systems do not match, so for them the check finds nothing to judge.

Pure: ``events`` parses text, ``judge`` decides; ``judge_dir`` reads a run's collected logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PREFIX = r"^(?P<at>\S+) (?P<host>\S+) (?:group (?P<group>\d+): )?"
_LEADER = re.compile(_PREFIX + r"(?P<id>\d+) became leader at term (?P<term>\d+)\b")
_DURABLE = re.compile(_PREFIX + r"node (?P<id>\d+): hard state Term:(?P<term>\d+) Vote:(?P<vote>\d+) is durable")
_RECOVERED = re.compile(_PREFIX + r"node (?P<id>\d+): recovered .*\bTerm:(?P<term>\d+) Vote:(?P<vote>\d+) Commit:")


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "leader", "durable" or "recovered"
    at: str  # the line's timestamp
    host: str
    group: int
    node: int
    term: int
    vote: int = 0


def events(text: str) -> list[Event]:
    """The election events of one node's log, in the order written."""
    out = []
    for line in text.splitlines():
        for kind, pattern in (("leader", _LEADER), ("durable", _DURABLE), ("recovered", _RECOVERED)):
            m = pattern.match(line)
            if m:
                vote = int(m.group("vote")) if "vote" in pattern.groupindex else 0
                out.append(Event(kind, m.group("at"), m.group("host"), int(m.group("group") or 0),
                                 int(m.group("id")), int(m.group("term")), vote))
                break
    return out


def judge(evs: list[Event]) -> tuple[bool, str, dict[str, Any]]:
    """(ok, the first violation, counts) over the events of every node (each node's in log order)."""
    leaders: dict[tuple[int, int], Event] = {}  # (group, term) -> the first leader seen
    durable: dict[tuple[int, int], Event] = {}  # (group, node) -> its last durable hard state
    votes: dict[tuple[int, int, int], Event] = {}  # (group, node, term) -> its durable vote there
    problems: list[str] = []
    for e in evs:
        g = f"group {e.group}: " if e.group else ""
        if e.kind == "leader":
            first = leaders.setdefault((e.group, e.term), e)
            if first.node != e.node:
                problems.append(f"{g}{first.node} and {e.node} both became leader at term {e.term} "
                                f"({first.host} at {first.at}, {e.host} at {e.at}): election safety, Raft §5.2")
        elif e.kind == "durable":
            durable[(e.group, e.node)] = e
            if e.vote:
                first = votes.setdefault((e.group, e.node, e.term), e)
                if first.vote != e.vote:
                    problems.append(f"{g}{e.host} voted for {first.vote} ({first.at}) and then for {e.vote} "
                                    f"({e.at}) in term {e.term}: one vote per term, Raft §5.2")
        else:
            last = durable.get((e.group, e.node))
            if e.term == 0:  # wiped or new: a new history
                durable.pop((e.group, e.node), None)
                for key in [k for k in votes if k[:2] == (e.group, e.node)]:
                    del votes[key]
            elif last is not None and (e.term < last.term or (e.term == last.term and e.vote != last.vote)):
                problems.append(f"{g}{e.host} restarted ({e.at}) with Term:{e.term} Vote:{e.vote}; its last durable "
                                f"hard state was Term:{last.term} Vote:{last.vote} ({last.at}): term and vote are "
                                "persistent, Raft Figure 2")
    data: dict[str, Any] = {"leaders": len(leaders), "votes": len(votes),
                            "restarts": sum(e.kind == "recovered" for e in evs),
                            "problems": problems[:20], "total": len(problems)}
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return False, problems[0] + more, data
    return True, "", data


def judge_dir(nodes_dir: Path) -> tuple[bool, str, dict[str, Any]]:
    """``judge`` over a run's collected node logs: one folder per host, whose files may repeat the
    same lines (a node's log file and its captured output)."""
    evs: list[Event] = []
    hosts = sorted(p for p in nodes_dir.iterdir() if p.is_dir()) if nodes_dir.is_dir() else []
    for host in hosts:
        lines: dict[str, None] = {}  # each line once, in the order first written
        for path in sorted(p for p in host.rglob("*") if p.is_file()):
            lines.update(dict.fromkeys(path.read_text(encoding="utf-8", errors="replace").splitlines()))
        evs.extend(events("\n".join(sorted(lines, key=lambda line: line.split(" ", 1)[0]))))
    return judge(evs)
