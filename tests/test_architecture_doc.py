"""docs/architecture.md's layout block is true to the tree: every module is listed, every listed
module exists. A newcomer finds the room for a change there, so a stale line misleads.

A folder line with no lines under it stands for its files (``commands/``: one per subcommand);
a line whose description says ``(later)`` names a planned module and may not exist yet; a
package's ``__init__.py`` (and ``__main__.py``) needs a line only when it holds more than names.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raftlab", "impl", "checker", "nemesis", "workloads")


def layout() -> dict[str, str]:
    """Each path the layout block names, with its description."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("### Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        name, _, description = line.strip().partition(" ")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(p for _, p in stack) + name
        entries[path] = description.strip()
        if name.endswith("/"):
            stack.append((indent, name))
    return entries


def _only_names(path: Path) -> bool:
    """A package marker: docstring, imports, ``__all__`` and the like, no function or class."""
    import ast

    tree = ast.parse(path.read_text())
    return not any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in tree.body)


def test_every_module_is_listed_and_every_listed_module_exists() -> None:
    entries = layout()
    folders = {p for p in entries if p.endswith("/")}
    covering = {f for f in folders if not any(q != f and q.startswith(f) for q in entries)}
    unlisted = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in entries or any(rel.startswith(f) for f in covering):
                continue
            if path.name in ("__init__.py", "__main__.py") and _only_names(path):
                continue
            unlisted.append(rel)
    assert unlisted == [], f"modules missing from docs/architecture.md's layout block: {unlisted}"
    missing = [p for p, what in entries.items()
               if p.endswith(".py") and not re.search(r"\(later\)", what) and not (ROOT / p).exists()]
    assert missing == [], f"docs/architecture.md lists modules that do not exist: {missing}"


def test_the_parser_sees_nested_folders() -> None:
    """The check above is only as good as its reading of the block."""
    entries = layout()
    assert "impl/raft/core.py" in entries and "raftlab/lab/local.py" in entries
    assert "raftlab/commands/" in entries and "nemesis/member.py" in entries
