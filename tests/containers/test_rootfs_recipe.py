"""The rootfs cache follows its recipe: a cache built without a package (libfaketime, for the
clock faults) is never used as if it had it (no root needed: the marker and paths only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlab.lab import containers_rootfs as rootfs


def test_the_recipe_has_libfaketime_and_names_the_cache_dir() -> None:
    assert "libfaketime" in rootfs.PACKAGES and "libfaketime" in rootfs.RECIPE
    digest = rootfs.default_path().name.rsplit("-", 1)[1]
    assert rootfs.default_path().name == f"rootfs-{rootfs.SUITE}-{digest}" and len(digest) == 10


def test_a_cache_made_by_another_recipe_is_not_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old"
    (old / "etc").mkdir(parents=True)
    without = rootfs.RECIPE.replace(",libfaketime", "")
    (old / rootfs.MARKER).write_text(without + "\n")
    assert not rootfs.is_ready(old)  # rebuilt by ensure(), not booted without the library
    (old / rootfs.MARKER).write_text(rootfs.RECIPE + "\n")
    assert rootfs.is_ready(old)
    assert not rootfs.is_ready(tmp_path / "missing")
    # another package list gets another cache directory, so two checkouts never rebuild each other's
    with_it = rootfs.default_path()
    monkeypatch.setattr(rootfs, "RECIPE", without)
    assert rootfs.default_path() != with_it and rootfs.default_path().parent == with_it.parent
