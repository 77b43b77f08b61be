"""Interaction transcripts (tests/raft/testdata/*.txt): one scenario per file, driven by the
commands of raftlab/sim/interaction.py. Regenerate with ``pytest tests/raft --rewrite``."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlab.sim.interaction import InteractionEnv
from tests.transcript import parse, render, run_transcript

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path, request: pytest.FixtureRequest) -> None:
    run_transcript(path, InteractionEnv().handle, rewrite=request.config.getoption("--rewrite"))


def test_parse_and_render_round_trip() -> None:
    text = "# a comment\nadd-nodes 1\n----\nadded nodes 1\n\nstatus 1\n----\nline one\nline two\n"
    blocks, trailer = parse(text)
    assert [b.command for b in blocks] == ["add-nodes 1", "status 1"]
    assert blocks[1].expected == "line one\nline two"
    assert render(blocks, [b.expected for b in blocks], trailer) == text


def test_a_command_without_separator_is_reported_with_its_line() -> None:
    with pytest.raises(ValueError, match="<transcript>:2: command 'status 1'"):
        parse("\nstatus 1\nno separator\n")
