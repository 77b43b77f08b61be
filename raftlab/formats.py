"""Other tools' history formats, read into (and written from) raftlab's one ``History``.

So histories can be cross-checked with Knossos, Elle and porcupine:

* ``jepsen-log``: porcupine's etcd fixtures, lines ``INFO  jepsen.util - P :type :f value``.
  ``:info`` lines become info completions (the operation may take effect any time after its
  invoke, or never); ``:fail`` drops the operation (for ``:fail :read :timed-out`` that is the same
  as an unknown read, which constrains nothing).
* ``edn``: Jepsen/Knossos EDN: one vector of op maps, or one map per line (porcupine's kv files).
  Keywords become strings, ``nil`` becomes null. Knossos's rule that an ``:ok`` value replaces the
  invoke's is what ``History.operations`` already does. An ``:info`` with no open invoke (a
  nemesis event) becomes a nemesis event.
* ``jsonl``: ours (``raftlab.history``).

Every reader raises ``HistoryError`` naming the file and line of the first thing it cannot read.
"""

from __future__ import annotations

import functools
import io
import json
import re
import types
from pathlib import Path
from typing import Any

from raftlab.history import History, HistoryError, Op, OpType

FORMATS = ("auto", "jsonl", "edn", "jepsen-log")

_JEPSEN_LINE = re.compile(r"^\s*INFO\s+jepsen\.util\s+-\s+(\S+)\s+:(\w+)\s+:(\S+)\s*(.*?)\s*$")


def detect(text: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        if s.startswith("{\"") or s.startswith("{ \""):
            return "jsonl"
        if "jepsen.util" in s:
            return "jepsen-log"
        if s.startswith(("[", "{:", "{ :", "(")):
            return "edn"
        break
    return "jsonl"


def read_history(path: str | Path, fmt: str = "auto") -> History:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise HistoryError(f"cannot read history: {e.strerror or e}", source=str(p)) from None
    except UnicodeDecodeError as e:
        raise HistoryError(f"not UTF-8 text: {e.reason}", source=str(p)) from None
    if fmt not in FORMATS:
        raise HistoryError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})", source=str(p))
    if fmt == "auto":
        fmt = detect(text)
    if fmt == "jsonl":
        return History.parse(io.StringIO(text), source=str(p))
    if fmt == "jepsen-log":
        return parse_jepsen_log(text, source=str(p))
    return parse_edn(text, source=str(p))


@functools.cache
def _edn() -> types.ModuleType:
    """edn_format, imported on first use: it costs ~70 ms, which JSONL and jepsen-log never pay."""
    import edn_format

    return edn_format


def _edn_value(v: Any) -> Any:
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, dict) or hasattr(v, "items"):
        return {str(_edn_value(k)): _edn_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple) or type(v).__name__ == "ImmutableList":
        return [_edn_value(x) for x in v]
    if isinstance(v, frozenset | set):
        return sorted((_edn_value(x) for x in v), key=repr)
    if isinstance(v, _edn().Keyword):
        return v.name
    return v


_EDN_TOKEN = re.compile(r"""[\s,]*(?:([\[\](){}])|("(?:[^"\\]|\\.)*")|:([^\s,\[\](){}"]+)|(-?\d+)(?=[\s,\[\](){}]|$)|(nil|true|false)(?=[\s,\[\](){}]|$))""")
_CLOSE = {"[": "]", "(": ")", "{": "}"}
_WORDS = {"nil": None, "true": True, "false": False}


class _NotSimple(Exception):
    """EDN beyond the simple subset (sets, tags, floats, symbols, ...): edn_format reads it."""


def _loads(text: str) -> Any:
    """EDN -> plain values (keywords as their names). Jepsen histories use a small subset (maps,
    vectors, keywords, strings, ints, nil), read here ~50x faster than edn_format, which
    reads everything else (and reports syntax errors)."""
    try:
        value, end = _simple(text, 0)
        if text[end:].strip(" \t\r\n,"):
            raise _NotSimple
        return value
    except (_NotSimple, ValueError, RecursionError):
        return _edn_value(_edn().loads(text))


def _simple(text: str, pos: int) -> tuple[Any, int]:
    m = _EDN_TOKEN.match(text, pos)
    if m is None:
        raise _NotSimple
    bracket, string, keyword, integer, word = m.groups()
    end = m.end()
    if bracket is None:
        if string is not None:
            return json.loads(string), end
        if keyword is not None:
            return keyword, end
        if integer is not None:
            return int(integer), end
        if word is not None:
            return _WORDS[word], end
        raise _NotSimple
    close = _CLOSE.get(bracket)
    if close is None:
        raise _NotSimple  # a closing bracket where a value belongs
    items: list[Any] = []
    while True:
        m = _EDN_TOKEN.match(text, end)
        if m is not None and m.group(1) == close:
            end = m.end()
            break
        item, end = _simple(text, end)
        items.append(item)
    if bracket != "{":
        return items, end
    if len(items) % 2:
        raise _NotSimple
    return {str(k): v for k, v in zip(items[::2], items[1::2], strict=True)}, end


_INT = re.compile(r"^-?\d+$")

_SCALAR = r'''"(?:[^"\\]|\\.)*"|:[^\s,\[\](){}"]+|-?\d+(?=[\s,}]|$)|nil(?=[\s,}]|$)|true(?=[\s,}]|$)|false(?=[\s,}]|$)'''
_FLAT_MAP = re.compile(r"\{((?:[\s,]*:[^\s,\[\](){}\"]+[\s,]+(?:" + _SCALAR + r"))*)[\s,]*\}")
_PAIR = re.compile(r":([^\s,\[\](){}\"]+)[\s,]+(" + _SCALAR + ")")


def _flat_map(line: str) -> dict[str, Any] | None:
    """A one-line map of keywords to scalars (porcupine's kv lines), read with two regexes; None
    for anything else (then ``_loads`` reads it). The same values as ``_loads`` gives."""
    m = _FLAT_MAP.fullmatch(line)
    if m is None:
        return None
    out: dict[str, Any] = {}
    for key, raw in _PAIR.findall(m.group(1)):
        c = raw[0]
        if c == '"':
            out[key] = json.loads(raw) if "\\" in raw else raw[1:-1]
        elif c == ":":
            out[key] = raw[1:]
        elif raw in _WORDS:
            out[key] = _WORDS[raw]
        else:
            out[key] = int(raw)
    return out


def _value_token(token: str, *, source: str, line: int) -> Any:
    """Values of jepsen logs: nil, ints and [A B] vectors take the fast path; the rest goes to EDN."""
    if token in ("", "nil"):
        return None
    if _INT.match(token):
        return int(token)
    if token.startswith("[") and token.endswith("]"):
        items = token[1:-1].replace(",", " ").split()
        if all(_INT.match(x) or x == "nil" for x in items):
            return [None if x == "nil" else int(x) for x in items]
    try:
        return _loads(token)
    except Exception:
        raise HistoryError(f"cannot read value {token!r}", source=source, line=line) from None


def parse_jepsen_log(text: str, *, source: str | None = None) -> History:
    events: list[Op] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        m = _JEPSEN_LINE.match(raw)
        if m is None:
            raise HistoryError("not a 'INFO jepsen.util - PROCESS :type :f value' line", source=source, line=n)
        proc_s, type_s, f, value_s = m.groups()
        process: int | str = int(proc_s) if proc_s.isdigit() else proc_s.lstrip(":")
        if type_s not in ("invoke", "ok", "fail", "info"):
            raise HistoryError(f"unknown event type :{type_s}", source=source, line=n)
        value = None if value_s.startswith(":") else _value_token(value_s, source=source or "", line=n)
        events.append(Op(process=process, type=OpType(type_s), f=f, value=value, time=n, index=len(events)))
    return History(events, source=source)


_TYPES = {t.value: t for t in OpType}


def parse_edn(text: str, *, source: str | None = None) -> History:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(";")), "")
    maps: list[tuple[int, Any]] = []
    plain = False  # every map came from _flat_map: already plain values
    if first.startswith(("[", "(")):
        try:
            data = _loads(text)
        except Exception as e:
            raise HistoryError(f"bad EDN: {e}", source=source) from None
        maps = [(i + 1, m) for i, m in enumerate(data)]
        by_event = True
    else:
        by_event = False
        plain = True
        for n, raw in enumerate(text.splitlines(), start=1):
            s = raw.strip()
            if not s or s.startswith(";"):
                continue
            flat = _flat_map(s)
            if flat is not None:
                maps.append((n, flat))
                continue
            plain = False
            try:
                maps.append((n, _loads(s)))
            except Exception as e:
                raise HistoryError(f"bad EDN: {e}", source=source, line=n) from None
    events: list[Op] = []
    open_procs: set[Any] = set()
    for n, raw_map in maps:
        where = {"source": source, "line": n}
        if not hasattr(raw_map, "items"):
            raise HistoryError(f"{'event ' + str(n) if by_event else 'line'} is not a map", **where)
        d = raw_map if plain else _edn_value(raw_map)
        for name in ("process", "type", "f"):
            if name not in d:
                raise HistoryError(f"event has no :{name}", **where)
        process = d["process"]
        type_s = d["type"]
        if not isinstance(process, int) and process != "nemesis":
            process = str(process)
        if isinstance(process, int) and type_s == "info" and process not in open_procs:
            process = "nemesis"  # an :info with no open invoke is a nemesis event (Knossos rule 6)
        if isinstance(process, int):
            if type_s == "invoke":
                open_procs.add(process)
            else:
                open_procs.discard(process)
        try:
            events.append(Op(process=process, type=(isinstance(type_s, str) and _TYPES.get(type_s)) or OpType(type_s), f=str(d["f"]), value=d.get("value"),
                             key=d.get("key"), time=int(d["time"]) if isinstance(d.get("time"), int) else n,
                             index=len(events),
                             error=None if d.get("error") is None else str(d["error"])))
        except (HistoryError, ValueError) as e:
            raise HistoryError(str(e), **where) from None
    return History(events, source=source)


def to_edn(history: History) -> str:
    """Jepsen's history.edn: one map per line, keywords for type and f."""
    out = []
    for op in history:
        parts = [f":index {op.index}", f":time {op.time}", f":type :{op.type.value}", f":f :{op.f}"]
        parts.append(":process :nemesis" if op.process == "nemesis" else f":process {json.dumps(op.process)}")
        if op.key is not None:
            parts.append(f":key {_edn().dumps(op.key)}")
        parts.append(f":value {_edn().dumps(op.value)}")
        if op.error:
            parts.append(f":error {_edn().dumps(op.error)}")
        out.append("{" + ", ".join(parts) + "}")
    return "\n".join(out) + "\n"
