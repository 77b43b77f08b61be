"""The importers: the fast EDN reader agrees with edn_format, EDN export round-trips, and
malformed input is one HistoryError naming the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import edn_format
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlab import formats
from raftlab.history import History, HistoryError, Op, OpType
from tests.conftest import need_histories

KEYWORD = st.from_regex(r"[a-z][a-z0-9\-]{0,6}", fullmatch=True)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.text(max_size=8),
                   KEYWORD.map(lambda k: edn_format.Keyword(k)))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(KEYWORD.map(lambda k: edn_format.Keyword(k)), inner, max_size=4)), max_leaves=12)


def to_edn_value(v: Any) -> Any:
    if isinstance(v, list):
        return [to_edn_value(x) for x in v]
    if isinstance(v, dict):
        return {k: to_edn_value(x) for k, x in v.items()}
    return v


@settings(max_examples=200, deadline=None)
@given(VALUE)
def test_fast_edn_reader_agrees_with_edn_format(value: Any) -> None:
    text = edn_format.dumps(to_edn_value(value))
    assert formats._loads(text) == formats._edn_value(edn_format.loads(text))


def test_edn_export_round_trips() -> None:
    events = [
        Op(process=0, type=OpType.INVOKE, f="cas", key="x", value=[1, 2]),
        Op(process=1, type=OpType.INVOKE, f="read", key="x"),
        Op(process=0, type=OpType.OK, f="cas", key="x", value=[1, 2]),
        Op(process=1, type=OpType.INFO, f="read", key="x", error="timed out"),
        Op(process="nemesis", type=OpType.INFO, f="partition", value="halves"),
    ]
    history = History(events)
    back = formats.parse_edn(formats.to_edn(history))
    assert [(e.process, e.type, e.f, e.key, e.value, e.error) for e in back] == \
        [(e.process, e.type, e.f, e.key, e.value, e.error) for e in history]


@pytest.mark.parametrize(("name", "text", "line", "words"), [
    ("bad.log", "INFO  jepsen.util - 1 :invoke :read nil\nINFO  jepsen.util - 1 :ok :read [1\n", 2, "value"),
    ("bad2.log", "INFO  jepsen.util - 1 :invoke :read nil\nhello\n", 2, "jepsen.util"),
    ("bad.edn", '{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok, :f :read, :value [1\n', 2, "EDN"),
    ("busy.edn", "{:process 0, :type :invoke, :f :read}\n{:process 0, :type :invoke, :f :read}\n", 2, "still open"),
    ("orphan.jsonl", '{"process": 0, "type": "ok", "f": "read"}\n', 1, "no open invoke"),
    ("bad.jsonl", '{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0,\n', 2, "bad JSON"),
])
def test_malformed_input_names_file_and_line(tmp_path: Path, name: str, text: str, line: int, words: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(HistoryError) as caught:
        formats.read_history(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message


def test_flat_map_fast_path_agrees_with_the_edn_reader() -> None:
    lines = ['{:process 8, :type :invoke, :f :get, :key "9", :value nil}',
             '{:a "x, y", :b nil, :c -3 :d :kw, :e true}', '{:a "q\\"x}"}', "{}"]
    root = need_histories()
    lines += [ln.strip() for ln in (root / "porcupine" / "kv" / "c10-bad.txt").read_text().splitlines()]
    for line in lines:
        assert formats._flat_map(line) == formats._loads(line), line
    for other in ("{:a [1 2]}", "{:a 1.5}", "{:a #{1}}", "{:a 1 :b}"):
        assert formats._flat_map(other) is None  # beyond the subset: the EDN reader's job


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYWORD.map(lambda k: edn_format.Keyword(k)), SCALAR, max_size=5))
def test_flat_map_agrees_on_random_maps(d: dict[Any, Any]) -> None:
    text = edn_format.dumps(d)
    flat = formats._flat_map(text)
    assert flat is None or flat == formats._loads(text)
