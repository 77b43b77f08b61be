"""Framing and codec: any byte stream is split exactly, and bad bytes are refused by name.

A frame split at any boundary decodes the same (property: feeding in arbitrary chunks equals
feeding at once); oversize and truncated frames raise FrameError; garbage payloads and schema
violations raise WireError naming the field, never another exception type.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raftlab.impl.dtkv.commands import BatchPut, Cas, CommandError, ErrorKind, Get, Put
from raftlab.impl.net.codec import (
    WireError,
    decode_command,
    decode_message,
    decode_reply,
    decode_request,
    encode_command,
    encode_message,
    encode_reply,
    encode_request,
)
from raftlab.impl.net.framing import FrameDecoder, FrameError, encode_frame
from raftlab.impl.raft.messages import Entry, EntryType, Message, MsgType


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), min_size=1))
def test_frames_survive_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out.extend(decoder.feed(stream[pos : pos + step]))
        pos += step
        i += 1
    decoder.eof()
    assert out == payloads
    assert decoder.pending() == 0


def test_oversize_frame_is_refused_from_its_header() -> None:
    decoder = FrameDecoder(max_size=1000)
    with pytest.raises(FrameError, match="1001 bytes exceeds the maximum of 1000"):
        decoder.feed((1001).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(b"x" * 11, max_size=10)


def test_truncated_frame_is_reported_at_eof() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"hello")[:-2]) == []
    with pytest.raises(FrameError, match="expected 5 payload bytes, got 3"):
        decoder.eof()
    header_only = FrameDecoder()
    header_only.feed(b"\x00\x00")
    with pytest.raises(FrameError, match="4-byte header"):
        header_only.eof()


def sample_message() -> Message:
    return Message(type=MsgType.APP, to=2, from_=1, term=7, log_term=6, index=41, commit=40,
                   entries=(Entry(term=7, index=42, data=b"\x00data"), Entry(term=7, index=43, type=EntryType.NOOP)),
                   context=b"\x01")


def test_message_round_trip() -> None:
    msg = sample_message()
    assert decode_message(encode_message(msg)) == msg
    resp = Message(type=MsgType.APP_RESP, to=1, from_=2, term=7, reject=True, reject_hint=3, hint_term=2)
    assert decode_message(encode_message(resp)) == resp


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda m: m.__setitem__(0, 99), "type"),
    (lambda m: m.__setitem__(3, -1), "term"),
    (lambda m: m.__setitem__(3, "x"), "term"),
    (lambda m: m.__setitem__(8, 1), "reject"),
    (lambda m: m.__setitem__(11, "text"), "context"),
    (lambda m: m[6].__setitem__(0, [1, 2]), "entries[0]"),
    (lambda m: m[6][1].__setitem__(2, 9), "entries[1].type"),
    (lambda m: m[6][0].__setitem__(3, 5), "entries[0].data"),
    (lambda m: m.pop(), "message"),
])
def test_schema_violations_name_the_field(mutate: Callable[[list[Any]], None], field: str) -> None:
    raw = msgpack.unpackb(encode_message(sample_message()))
    mutate(raw)
    with pytest.raises(WireError, match=re.escape(f"field '{field}'")):
        decode_message(msgpack.packb(raw))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_exception(garbage: bytes) -> None:
    for decode in (decode_message, decode_request, decode_reply, decode_command):
        with contextlib.suppress(WireError):
            decode(garbage)


def test_random_bit_flips_are_wire_errors_or_valid(seed: int) -> None:
    rng = random.Random(seed)
    good = encode_message(sample_message())
    for _ in range(2000):
        bad = bytearray(good)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        with contextlib.suppress(WireError):
            decode_message(bytes(bad))


def test_requests_and_replies() -> None:
    req = decode_request(encode_request(5, "cas", Cas(key="a.b", expected=None, new=b"1")))
    assert (req.id, req.op, req.command) == (5, "cas", Cas(key="a.b", expected=None, new=b"1"))
    assert decode_request(encode_request(6, "status")).command is None
    bad = decode_request(msgpack.packb([7, "put", "a..b", b"x"]))
    assert bad.id == 7 and bad.error is not None and bad.error.kind is ErrorKind.VALIDATION
    assert "field 'key'" in bad.error.message
    unknown = decode_request(msgpack.packb([8, "frobnicate", "k"]))
    assert unknown.error is not None and "unknown operation" in unknown.error.message
    with pytest.raises(WireError, match="field 'id'"):
        decode_request(msgpack.packb([-1, "get", "k"]))
    assert decode_reply(encode_reply(9, "not-leader", {"leader": 2})) == (9, "not-leader", {"leader": 2})


def test_commands_validate_when_built() -> None:
    with pytest.raises(CommandError, match=re.escape("field 'items[1].key'")):
        BatchPut(items=(("a", b"1"), ("", b"2")))
    with pytest.raises(CommandError) as e:
        Put(key="k", value=b"x" * (1024 * 1024 + 1))
    assert e.value.kind is ErrorKind.TOO_LARGE
    cmd = BatchPut(items=(("a", b"1"), ("b", b"2")))
    assert decode_command(encode_command(cmd)) == cmd
    assert decode_command(encode_command(Get(key="x.y"))) == Get(key="x.y")
