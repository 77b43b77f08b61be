"""Every shared history gets the verdict its MANIFEST.json states (porcupine's and Knossos's suites).

The histories are read in place from ../shared/histories; they are never copied into the project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from raftlab.checker import check

from raftlab import formats
from tests import conftest
from tests.checker.test_shrink import assert_faithful
from tests.conftest import HISTORIES, need_histories

VERDICT = {"ok": True, "illegal": False}


def expected(entry: dict[str, Any]) -> bool | str:
    """The manifest's verdict; but a history with no operations (or only failed ones) proves
    nothing: ``unknown`` (porcupine and Knossos call the empty etcd_095 and the all-failed
    mongodb-v0-ack-rollback-10 trivially ok; raftlab reports that nothing was checked)."""
    if entry.get("ops") == 0 or entry.get("ops_after_dropping_failed") == 0:
        return "unknown"
    return VERDICT[entry["expected"]]


def manifest(suite: str) -> list[dict[str, Any]]:
    path = HISTORIES / suite / "MANIFEST.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())["histories"]


def options(suite: str, entry: dict[str, Any]) -> dict[str, Any]:
    if suite == "porcupine":
        return {"model": "cas-register" if entry["file"].startswith("jepsen/") else "kv-append"}
    model = entry["model"]
    if model == "cas-register":
        return {"model": model, "initial_value": 0, "nil_reads_unknown": True}
    if model == "multi-register":
        return {"model": model, "initial_value": entry["initial_value"]}
    return {"model": model}


CASES = [(s, e) for s in ("porcupine", "knossos") for e in manifest(s)]


@pytest.mark.parametrize(("suite", "entry"), CASES, ids=[f"{s}/{e['file']}" for s, e in CASES])
def test_manifest_verdict(suite: str, entry: dict[str, Any]) -> None:
    root = need_histories()
    history = formats.read_history(root / suite / entry["file"])
    opts = options(suite, entry)
    result = check(history, opts.pop("model"), time_limit=60, **opts)
    assert result.valid == expected(entry), result.explanation
    if result.valid == "unknown":  # the reason is named: nothing, or only failed operations
        assert "proves nothing" in result.explanation and ("no operations" in result.explanation
                                                            or "failed" in result.explanation)
    if result.valid is False:
        assert result.explanation.startswith("not linearizable")
        # the minimal sub-history is illegal to the search and (when small) to brute force, and
        # keeps what its observations depend on
        assert_faithful(history, result, result.model, **opts)


def test_shrinking_is_deterministic() -> None:
    """The same history gives the same minimal sub-history every run (the budget is in steps)."""
    root = need_histories()
    for name, model in (("jepsen/etcd_099.log", "cas-register"), ("kv/c50-bad.txt", "kv-append")):
        history = formats.read_history(root / "porcupine" / name)
        first, second = check(history, model), check(history, model)
        assert first.failing is not None and second.failing is not None
        assert first.failing.minimal == second.failing.minimal
        assert first.failing.minimal_finished == second.failing.minimal_finished
    assert first.failing.minimal


def test_manifests_are_present() -> None:
    need_histories()
    assert len(CASES) > 200


def test_a_missing_suite_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(conftest, "HISTORIES", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.need_histories()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not found"):
        conftest.need_histories()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftlab.cli", "check", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_etcd_batch_json_and_exit_code() -> None:
    root = need_histories()
    files = sorted((root / "porcupine" / "jepsen").glob("etcd_00*.log"))
    proc = run_cli("--model", "cas-register", "--json", *map(str, files))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = {str(root / "porcupine" / e["file"]): VERDICT.get(e["expected"], True)
                for e in manifest("porcupine")}
    assert [r["file"] for r in rows] == [str(f) for f in files]
    for r in rows:
        assert r["valid"] is expected[r["file"]]
        assert r["model"] == "cas-register" and r["operations"] > 0
    assert proc.returncode == (1 if any(r["valid"] is False for r in rows) else 0)


def test_cli_knossos_options_and_html(tmp_path: Path) -> None:
    root = need_histories()
    good = root / "knossos" / "multi-register" / "good" / "multi-register.edn"
    proc = run_cli("--model", "multi-register", "--initial-value", '{"x": 0, "y": 0}', str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "linearizable" in proc.stdout
    bad = root / "knossos" / "cas-register" / "bad" / "cas-failure.edn"
    out = tmp_path / "t.html"
    proc = run_cli("--model", "cas-register", "--initial-value", "0", "--nil-reads-unknown",
                   "--html", str(out), str(bad))
    assert proc.returncode == 1
    assert "NOT linearizable" in proc.stdout and "could be linearized next" in proc.stdout
    page = out.read_text()
    assert "<canvas" in page and "could not be placed next" in page and "<script src" not in page
    data = json.loads(page.split("<script id='data' type='application/json'>")[1].split("</script>")[0])
    stuck = [op for key in data["keys"] for op in key["ops"] if op[7] == 2]
    assert data["keys"][0]["valid"] is False and stuck  # the operations that could not be placed next


def test_budgets_give_unknown_naming_partitions() -> None:
    root = need_histories()
    history = formats.read_history(root / "porcupine" / "kv" / "c50-ok.txt")
    result = check(history, "kv-append", max_memo=1)
    assert result.valid == "unknown"
    assert "memory budget" in result.explanation and "unsettled partitions" in result.explanation
    proc = run_cli("--model", "kv-append", "--time-limit", "0", str(root / "porcupine" / "kv" / "c50-ok.txt"))
    assert proc.returncode == 3 and "time limit" in proc.stdout


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok", "f": "write"}\n')
    proc = run_cli(str(bad))
    assert proc.returncode == 2
    assert f"{bad}:2:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("--model", "nope", str(bad))
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    proc = run_cli(str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2


def test_cli_no_minimise_json_and_crashing_model(tmp_path: Path) -> None:
    root = need_histories()
    bad = root / "porcupine" / "jepsen" / "etcd_000.log"
    rows = [json.loads(line) for line in
            run_cli("--model", "cas-register", "--json", str(bad)).stdout.splitlines()]
    example = rows[0]["counterexample"]
    assert rows[0]["valid"] is False and example["minimal"] and example["minimal_finished"] is True
    assert all(str(i) in example["described"] for i in example["minimal"])
    rows = [json.loads(line) for line in
            run_cli("--model", "cas-register", "--json", "--no-minimise", str(bad)).stdout.splitlines()]
    assert rows[0]["valid"] is False and rows[0]["counterexample"]["minimal"] == []
    history = tmp_path / "h.jsonl"
    history.write_text('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok", "f": "read"}\n')
    proc = run_cli("--model", "tests.checker.crashing_model:Crashing", str(history))
    assert proc.returncode == 3 and "the checker crashed: TypeError: cannot read" in proc.stdout
