"""The dependency rules of docs/architecture.md, checked by parsing imports.

They are what keeps the Raft core replayable and the checker usable on foreign histories.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def py_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_impl_imports_nothing_from_the_harness() -> None:
    for path in py_files("impl"):
        for name in imports_of(path):
            assert not name.startswith(("raftlab.checker", "raftlab.nemesis", "raftlab.workloads")), (path, name)
            if name.startswith("raftlab."):
                assert name.startswith("raftlab.impl"), (path, name)


@pytest.mark.parametrize("folder", ["impl/raft", "impl/machine.py", "impl/dtkv"])
def test_raft_core_is_sans_io(folder: str) -> None:
    """The Raft core, the node machine and the tree decide everything and touch no I/O, clock or
    global random: the simulator and the transcripts replay them exactly."""
    forbidden = {"asyncio", "socket", "os", "time", "threading", "selectors", "uvloop"}
    paths = [ROOT / folder] if folder.endswith(".py") else py_files(folder)
    assert paths and all(p.exists() for p in paths), folder
    for path in paths:
        text = path.read_text()
        assert "async def" not in text and "await " not in text, path
        for name in imports_of(path):
            assert name.split(".")[0] not in forbidden, (path, name)
            if name == "random":  # only as a type: the rng is injected, never the global one
                assert "TYPE_CHECKING" in text and "random.random(" not in text, (path, "global random")


def test_history_and_protocols_use_only_the_standard_library() -> None:
    for path in (ROOT / "raftlab" / "history.py", ROOT / "raftlab" / "protocols.py"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top != "raftlab" or name in ("raftlab.history", "raftlab.checker.result"), (path, name)
            assert top in {"raftlab", "__future__", "collections", "dataclasses", "enum", "io", "json",
                           "math", "os", "pathlib", "typing"}, (path, name)


def test_checker_depends_only_on_history_and_protocols() -> None:
    for path in py_files("checker"):
        for name in imports_of(path):
            if name.startswith("raftlab.") and not name.startswith("raftlab.checker"):
                assert name in ("raftlab.history", "raftlab.protocols"), (path, name)
