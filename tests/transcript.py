"""A ~100-line runner for data-driven transcripts (etcd's cockroachdb/datadriven, in Python).

A transcript file is a sequence of blocks:

    # comments and blank lines between blocks are kept as they are
    command arg key=value
    ----
    expected output (one or more lines, no blank line inside)

Each command goes to a handler (``handle(line) -> str``); its output must equal the expected
text. ``pytest --rewrite`` writes the actual outputs back into the file instead of comparing:
review that diff like code and commit it only if you understand every changed line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    preamble: tuple[str, ...]  # comment and blank lines before the command
    command: str
    line_no: int
    expected: str


def parse(text: str, path: str = "<transcript>") -> tuple[list[Block], tuple[str, ...]]:
    """Blocks, and the trailing comment lines after the last one."""
    lines = text.splitlines()
    blocks: list[Block] = []
    preamble: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            preamble.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"{path}:{i + 1}: command {line!r} is not followed by a '----' line")
        j = i + 2
        while j < len(lines) and lines[j].strip():
            j += 1
        blocks.append(Block(preamble=tuple(preamble), command=line, line_no=i + 1,
                            expected="\n".join(lines[i + 2:j])))
        preamble = []
        i = j
    return blocks, tuple(preamble)


def render(blocks: list[Block], outputs: list[str], trailer: tuple[str, ...]) -> str:
    out: list[str] = []
    for block, output in zip(blocks, outputs, strict=True):
        out.extend(block.preamble)
        out.extend([block.command, "----", output])
    out.extend(trailer)
    return "\n".join(out).rstrip("\n") + "\n"


def run_transcript(path: Path, handle: Callable[[str], str], *, rewrite: bool = False) -> None:
    """Run every block of ``path``; assert outputs match (or rewrite them)."""
    blocks, trailer = parse(path.read_text(), str(path))
    outputs: list[str] = []
    for block in blocks:
        actual = handle(block.command).rstrip("\n")
        if "\n\n" in actual or not actual.strip():
            raise AssertionError(f"{path}:{block.line_no}: output of {block.command!r} has a blank line")
        outputs.append(actual)
        if not rewrite and actual != block.expected:
            raise AssertionError(
                f"{path}:{block.line_no}: {block.command!r} produced different output "
                f"(run pytest with --rewrite to accept it)\n--- expected\n{block.expected}\n--- actual\n{actual}")
    if rewrite:
        path.write_text(render(blocks, outputs, trailer))
