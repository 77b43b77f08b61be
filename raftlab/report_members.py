"""The membership over time, for the report and the text summary, from the history alone.

Why: under ``--nemesis member`` the cluster a client talks to changes (a voter removed, the
leader removed, a member wiped and added back), and a violation means something different
when it happened with four voters, or during a re-add. The member nemesis (nemesis/member.py)
writes what it saw into its completions, so a stored run needs nothing else:

* ``membership`` ops (value ``when``: ``start`` / ``end``) observe the configuration as the run
  starts and once the final reads are done;
* every ``shrink`` / ``grow`` completion names the change (``removed``, ``wiped``, ``added``)
  and the configuration the DB showed right after it (``membership``: voters, learners, the old
  voters while joint, the leader), or, in runs recorded before that, the voters left
  (``members``); a change that did not take effect carries an ``error`` and changes nothing.

``changes`` turns those records into ``Change`` rows (pure; an empty list for a run without the
member nemesis, whose report stays as it was); ``lane_svg`` draws one row per host, coloured by
its role between one record and the next, on the same time axis as the report's other charts;
``table_html`` lists the rows; ``describe`` says them in text for ``raftlab run``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raftlab.history import NEMESIS, Op, OpType
from raftlab.report_plots import PAD_L, PAD_R, PAD_T, Axes, W, esc

MEMBER_FS = ("membership", "shrink", "grow")
ROLE_COLORS = {"leader": "#1b6e3a", "voter": "#7CC3A8", "learner": "#8fb3e0", "outgoing": "#e8c35a",
               "out": "#eeeeee"}
ROLE_WORDS = {"leader": "leader (when observed)", "voter": "voter", "learner": "learner",
              "outgoing": "leaving (joint)", "out": "not a member"}
ROW_H = 18


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One record of the membership: what happened at ``time`` and the configuration after it."""

    time: float  # seconds since the run started
    event: str  # start, end, shrink one / leader / wipe, grow
    voters: tuple[str, ...] | None  # None: the membership could not be read
    learners: tuple[str, ...] = ()
    outgoing: tuple[str, ...] = ()  # the old voters while a joint change is in progress
    leader: str | None = None
    note: str = ""  # removed / wiped / added, or why it changed nothing
    touched: tuple[str, ...] = ()  # the hosts it removed, wiped or added
    applied: bool = True  # False: a change that did not take effect

    @property
    def joint(self) -> bool:
        return bool(self.outgoing)

    def role(self, host: str) -> str:
        if self.voters is None:
            return "out"
        if host in self.voters:
            return "leader" if host == self.leader else "voter"
        if host in self.learners:
            return "learner"
        return "outgoing" if host in self.outgoing else "out"


def _hosts(value: Any) -> tuple[str, ...]:
    return tuple(sorted((str(h) for h in value), key=host_order)) if isinstance(value, list | tuple) else ()


def host_order(host: str) -> tuple[str, int]:
    """n2 before n10."""
    m = re.fullmatch(r"(.*?)(\d+)", host)
    return (m.group(1), int(m.group(2))) if m else (host, -1)


def _note(value: dict[str, Any]) -> str:
    parts = []
    if value.get("removed"):
        parts.append(f"removed {value['removed']}")
    if value.get("wiped"):
        parts.append(f"wiped {value['wiped']}, restarted empty to be added again")
    if value.get("added"):
        parts.append(f"added {' '.join(_hosts(value['added']))}")
    elif "added" in value:
        parts.append("nobody was missing")
    return "; ".join(parts)


def changes(history: Sequence[Op]) -> list[Change]:
    """Every membership record of the member nemesis, in history order (``[]`` without one)."""
    asked: dict[str, Any] = {}
    out: list[Change] = []
    for op in history:
        if op.process != NEMESIS or op.f not in MEMBER_FS:
            continue
        if op.type is OpType.INVOKE:
            asked[op.f] = op.value
            continue
        value = op.value if isinstance(op.value, dict) else {}
        when = value.get("when", asked.get(op.f)) if op.f == "membership" else asked.get(op.f)
        event = str(when or op.f) if op.f == "membership" else f"shrink {when}" if op.f == "shrink" and when else op.f
        t = op.time / 1e9
        if op.error:  # nothing changed: the configuration is the previous one
            before = out[-1] if out else None
            out.append(Change(time=t, event=event, voters=before.voters if before else None,
                              learners=before.learners if before else (), outgoing=before.outgoing if before else (),
                              leader=before.leader if before else None, note=f"not applied: {op.error}",
                              applied=False))
            continue
        seen = value.get("membership") if isinstance(value.get("membership"), dict) else {}
        note = _note(value)
        if "error" in seen:
            note = "; ".join(p for p in (note, f"the membership could not be read: {seen['error']}") if p)
        voters = seen.get("voters", value.get("members"))
        touched = _hosts([*(value.get("added") or []), *(str(value[k]) for k in ("removed", "wiped") if value.get(k))])
        out.append(Change(time=t, event=event, voters=_hosts(voters) if voters is not None else None,
                          learners=_hosts(seen.get("learners")), outgoing=_hosts(seen.get("outgoing")),
                          leader=str(seen["leader"]) if seen.get("leader") else None, note=note,
                          touched=tuple(dict.fromkeys(touched))))
    return out


def hosts_of(rows: Sequence[Change]) -> list[str]:
    """Every host the records name, n2 before n10."""
    named: set[str] = set()
    for c in rows:
        named |= set(c.voters or ()) | set(c.learners) | set(c.outgoing) | set(c.touched)
    return sorted(named, key=host_order)


def lane_svg(rows: Sequence[Change], t_end: int) -> str:
    """One row per host; each stretch between two records coloured by the host's role then."""
    hosts = hosts_of(rows)
    known = [c for c in rows if c.applied and c.voters is not None]
    axes = Axes(t_end / 1e9, 0, 1, log=False)
    height = PAD_T + ROW_H * len(hosts) + 24
    parts = [f'<svg class="membership" viewBox="0 0 {W} {height}" width="100%">']
    for k, host in enumerate(hosts):
        y = PAD_T + ROW_H * k
        parts.append(f'<text x="{PAD_L - 6}" y="{y + ROW_H - 5}" text-anchor="end">{esc(host)}</text>')
        for i, c in enumerate(known):
            a = c.time
            b = known[i + 1].time if i + 1 < len(known) else t_end / 1e9
            role = c.role(host)
            x0, x1 = axes.x(a), axes.x(max(b, a))
            parts.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1):.1f}" height="{ROW_H - 4}" '
                         f'fill="{ROLE_COLORS[role]}"><title>{esc(host)}: {esc(ROLE_WORDS[role])}, '
                         f'{a:.2f}-{b:.2f}s (after {esc(c.event)})</title></rect>')
    bottom = PAD_T + ROW_H * len(hosts)
    for c in rows:
        x = axes.x(c.time)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{bottom}" stroke="#555" '
                     f'stroke-dasharray="{"2 3" if not c.applied else "none"}"><title>{c.time:.2f}s {esc(c.event)}'
                     f'{": " + esc(c.note) if c.note else ""}</title></line>')
    parts.append(axes.time_ticks(bottom + 14))
    parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{bottom}" y2="{bottom}" stroke="#999"/></svg>')
    return "".join(parts)


def _names(hosts: tuple[str, ...] | None) -> str:
    return "?" if hosts is None else " ".join(hosts) or "-"


def table_html(rows: Sequence[Change]) -> str:
    body = "".join(
        f"<tr{'' if c.applied else ' class=unk'}><td>{c.time:.2f}</td><td>{esc(c.event)}</td>"
        f"<td>{esc(_names(c.voters))}</td><td>{esc(_names(c.learners))}</td>"
        f"<td>{esc('joint, leaving ' + _names(c.outgoing) if c.joint else 'no')}</td>"
        f"<td>{esc(c.leader or '?')}</td><td>{esc(c.note)}</td></tr>" for c in rows)
    return ("<table class=membership><tr><th>time (s)</th><th>event</th><th>voters</th><th>learners</th>"
            f"<th>joint</th><th>leader</th><th>what changed</th></tr>{body}</table>")


def section_html(rows: Sequence[Change], t_end: int) -> str:
    """The report's "Membership over time" section; empty without membership records."""
    if not rows:
        return ""
    legend = "".join(f'<span><span style="background:{c}">&nbsp;&nbsp;&nbsp;</span> {esc(ROLE_WORDS[r])}</span>'
                     for r, c in ROLE_COLORS.items())
    changed = sum(1 for c in rows if c.applied and c.touched)
    return (f"<h2 id=membership>Membership over time</h2><p>{changed} membership changes took effect. Each "
            "host's role between one record of the member nemesis and the next (the leader as observed "
            f"at the record; a dashed line: a change that did not take effect).</p><div class=legend>{legend}</div>"
            f"{lane_svg(rows, t_end)}{table_html(rows)}")


def describe(rows: Sequence[Change]) -> list[str]:
    """The text summary's lines (none without membership records)."""
    if not rows:
        return []
    changed = sum(1 for c in rows if c.applied and c.touched)
    lines = [f"membership: {changed} changes took effect"]
    for c in rows:
        joint = f"  joint, leaving {_names(c.outgoing)}" if c.joint else ""
        learners = f"  learners {_names(c.learners)}" if c.learners else ""
        note = f"  ({c.note})" if c.note else ""
        lines.append(f"  {c.time:8.2f}s  {c.event:<14} voters {_names(c.voters)}{learners}{joint}"
                     f"  leader {c.leader or '?'}{note}")
    return lines


__all__ = ["Change", "changes", "describe", "lane_svg", "section_html", "table_html"]
