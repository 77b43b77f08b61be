"""msgpack <-> values: the only place bytes from a socket become Raft messages or client requests.

Peer frames carry one ``Message`` as a flat list (field order below, entries as
``[term, index, type, data]``), followed by the Raft group's id when it is not 0 (impl/groups.py:
a 15-field frame is group 0's, the format of a single-group node; a 16th field names the group).
Client frames carry a request ``[id, op, ...arguments]`` (``op`` a DtKV command from
``dtkv/commands.py``, or ``"status"`` / ``"hello"`` / ``"snapshot"`` / ``"groups"`` (the group
ids the node serves, answered by the process, not a group), or ``"admin"`` with one map of
arguments: ``{"action": ..., ...}``, impl/admin.py) and replies ``[id, error, body]``: ``error``
is None or an error kind string, ``body`` a map with any of ``index value values children count
message leader id status token``, or for a ``watch`` ``events next``. A request to a group
other than 0 is wrapped: ``{"group": G, "request": [id, op, ...]}`` (a bare list is group 0's);
replies are never wrapped (the id already says which request).

Every decoder validates the shape and types and raises ``WireError`` naming the offending field
(h11's RemoteProtocolError): the caller closes that one connection and keeps serving the rest. A
request that is well framed but asks for something invalid (a bad key, an oversized value) is
not a wire error: it decodes to a ``Request`` carrying the ``CommandError``, so the client gets a
typed ``validation``/``too-large`` reply on the same connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
from raftlab.impl.dtkv.commands import Command, CommandError, Result, from_wire, to_wire
from raftlab.impl.raft.messages import Entry, EntryType, Message, MsgType

NODE_OPS = ("status", "hello", "snapshot", "admin", "groups")  # answered by the node itself, not the tree

_MSG_TYPES = {int(t): t for t in MsgType}
_ENTRY_TYPES = {int(t): t for t in EntryType}


class WireError(Exception):
    """A frame that is not a valid message of the protocol; names the field."""


def _unpack(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for malformed input
        raise WireError(f"frame is not valid msgpack: {e}") from None


def _int(value: object, field: str) -> int:
    if type(value) is not int or value < 0:
        raise WireError(f"field '{field}': expected a non-negative int, got {value!r:.40}")
    return value


def _bytes(value: object, field: str) -> bytes:
    if type(value) is not bytes:
        raise WireError(f"field '{field}': expected bytes, got {type(value).__name__}")
    return value


# -- peer messages ---------------------------------------------------------------------------


def encode_message(m: Message, group: int = 0) -> bytes:
    fields = [int(m.type), m.to, m.from_, m.term, m.log_term, m.index,
              [(e.term, e.index, int(e.type), e.data) for e in m.entries],
              m.commit, m.reject, m.reject_hint, m.hint_term, m.context, m.offset, m.data, m.done]
    if group:
        fields.append(group)
    return msgpack.packb(fields, use_bin_type=True)


_MSG_FIELDS = 15


def decode_message(payload: bytes) -> Message:
    """A peer frame's message, whatever its group (``decode_group_message`` says which)."""
    return decode_group_message(payload)[1]


def decode_group_message(payload: bytes) -> tuple[int, Message]:
    """(group id, message) of a peer frame; whether this node serves that group is the router's
    question (impl/groups.py), not the codec's."""
    obj = _unpack(payload)
    if type(obj) is not list or len(obj) not in (_MSG_FIELDS, _MSG_FIELDS + 1):
        raise WireError(f"field 'message': expected a list of {_MSG_FIELDS} fields (and a group id)")
    group = _int(obj.pop(), "group") if len(obj) > _MSG_FIELDS else 0
    mtype, to, frm, term, log_term, index, raw_entries, commit, reject, hint, hint_term, ctx, offset, data, done = obj
    msg_type = _MSG_TYPES.get(mtype) if type(mtype) is int else None
    if msg_type is None:
        raise WireError(f"field 'type': unknown message type {mtype!r:.40}")
    if type(raw_entries) is not list:
        raise WireError("field 'entries': expected a list")
    entries = []
    for i, e in enumerate(raw_entries):
        if type(e) is not list or len(e) != 4:
            raise WireError(f"field 'entries[{i}]': expected [term, index, type, data]")
        etype = _ENTRY_TYPES.get(e[2]) if type(e[2]) is int else None
        if etype is None:
            raise WireError(f"field 'entries[{i}].type': unknown entry type {e[2]!r:.40}")
        entries.append(Entry(term=_int(e[0], f"entries[{i}].term"), index=_int(e[1], f"entries[{i}].index"),
                             type=etype, data=_bytes(e[3], f"entries[{i}].data")))
    if type(reject) is not bool:
        raise WireError("field 'reject': expected a bool")
    if type(done) is not bool:
        raise WireError("field 'done': expected a bool")
    return group, Message(type=msg_type, to=_int(to, "to"), from_=_int(frm, "from"), term=_int(term, "term"),
                   log_term=_int(log_term, "log_term"), index=_int(index, "index"), entries=tuple(entries),
                   commit=_int(commit, "commit"), reject=reject, reject_hint=_int(hint, "reject_hint"),
                   hint_term=_int(hint_term, "hint_term"), context=_bytes(ctx, "context"),
                   offset=_int(offset, "offset"), data=_bytes(data, "data"), done=done)


# -- log entries -----------------------------------------------------------------------------


def encode_command(cmd: Command) -> bytes:
    """The data of the Raft entry that carries ``cmd``."""
    return msgpack.packb(to_wire(cmd), use_bin_type=True)


def decode_command(data: bytes) -> Command:
    """Inverse of encode_command; raises WireError (a corrupt entry) naming the field."""
    try:
        return from_wire(_unpack(data))
    except CommandError as e:
        raise WireError(f"log entry: {e.message}") from None


# -- client requests and replies -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One client request. Exactly one of ``command`` (a DtKV op), ``error`` (an invalid op) or
    neither (``op`` in NODE_OPS) is set."""

    id: int
    op: str
    command: Command | None = None
    error: CommandError | None = None
    args: dict[str, Any] | None = None  # "admin": the action and its arguments
    group: int = 0  # the Raft group it is for (impl/groups.py routes it)


def encode_request(request_id: int, op: str, command: Command | None = None,
                   args: dict[str, Any] | None = None, group: int = 0) -> bytes:
    body = to_wire(command) if command is not None else [op] if args is None else [op, args]
    request = [request_id, *body]
    return msgpack.packb({"group": group, "request": request} if group else request, use_bin_type=True)


def decode_request(payload: bytes) -> Request:
    obj = _unpack(payload)
    group = 0
    if type(obj) is dict:
        if set(obj) != {"group", "request"}:
            raise WireError("field 'request': a wrapped request is {group, request}")
        group, obj = _int(obj["group"], "group"), obj["request"]
    if type(obj) is not list or len(obj) < 2:
        raise WireError("field 'request': expected [id, op, ...arguments]")
    request_id = _int(obj[0], "id")
    op = obj[1]
    if type(op) is not str:
        raise WireError("field 'op': expected a string")
    if op == "admin":
        if len(obj) != 3 or type(obj[2]) is not dict or type(obj[2].get("action")) is not str:
            raise WireError("field 'args': admin expects one map with a string 'action'")
        return Request(id=request_id, op=op, args=obj[2], group=group)
    if op in NODE_OPS:
        return Request(id=request_id, op=op, group=group)
    try:
        return Request(id=request_id, op=op, command=from_wire(obj[1:]), group=group)
    except CommandError as e:
        return Request(id=request_id, op=op, error=e, group=group)


def encode_reply(request_id: int, error: str | None, body: dict[str, Any]) -> bytes:
    return msgpack.packb([request_id, error, body], use_bin_type=True)


def result_body(result: Result) -> dict[str, Any]:
    """The reply body of a tree result (only the fields that carry something)."""
    body: dict[str, Any] = {"index": result.index}
    if result.value is not None:
        body["value"] = result.value
    if result.values:
        body["values"] = list(result.values)
    if result.children:
        body["children"] = list(result.children)
    if result.count:
        body["count"] = result.count
    if result.message:
        body["message"] = result.message
    if result.token:
        body["token"] = result.token
    return body


def decode_reply(payload: bytes) -> tuple[int, str | None, dict[str, Any]]:
    obj = _unpack(payload)
    if type(obj) is not list or len(obj) != 3:
        raise WireError("field 'reply': expected [id, error, body]")
    request_id, error, body = obj
    _int(request_id, "id")
    if error is not None and type(error) is not str:
        raise WireError("field 'error': expected a string or nil")
    if type(body) is not dict:
        raise WireError("field 'body': expected a map")
    return request_id, error, body
