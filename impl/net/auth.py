"""Who is on the other end of a connection: an HMAC challenge-response over a cluster secret.

Theory of operation (sans-I/O: the shell passes the nonces in and moves the frames). Every
connection to either port starts with a handshake of three frames before anything else:

1. the acceptor sends ``[b"raftlab-auth", 1, nonce_a, acceptor_id]`` (a fresh 16-byte nonce);
2. the connector answers ``[role, sender_id, nonce_c, mac_c]``: ``role`` is ``peer`` (a member),
   ``rw`` or ``ro`` (a client, read-write or read-only); ``sender_id`` is the member id (0 for a
   client); ``mac_c = HMAC-SHA256(key(role), "c" | nonce_a | nonce_c | role | sender_id |
   acceptor_id)``;
3. the acceptor checks it and answers ``[b"ok", mac_a]`` with ``mac_a = HMAC(key(role), "a" | the
   same fields)``, which the connector checks in turn (mutual: a member never talks to an
   impostor that merely listens on a peer's port), or ``[b"refused", reason]`` and closes.

The result binds the connection: a peer connection's messages are taken as from ``sender_id``
and nothing else (a frame whose ``from`` differs closes the connection), a read-only client
cannot write. Both nonces are fresh, so a recorded handshake cannot be replayed, and the macs
cover both ids, so one member's handshake cannot be passed off as another's.

Keys: a cluster secret (32 random bytes, ``raftlab node secret``) is held by every member.
Each role's key is derived from it, ``key(role) = HMAC(secret, "raftlab " + role)``, so a client
is given the ``rw`` or ``ro`` key alone and can never pose as a member. Key files are one line,
``raftlab-key 1 <kind> <hex>``, with ``kind`` one of ``cluster``, ``rw``, ``ro``.

Why this and not TLS: the threat is a local process or a host on the lab network sending forged
frames (docs/node.md, security); proof of membership on every connection is what stops it, and
this gives that with the standard library alone, works through the lab's byte-forwarding proxy
unchanged, and costs nothing per message. It does not encrypt, and it does not protect a stream
against an attacker who can inject into an established TCP connection (root on a host, or a
position on the path); TLS would be the next step for that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

MAGIC = b"raftlab-auth"
VERSION = 1
NONCE_BYTES = 16
ROLES = ("peer", "rw", "ro")
KINDS = ("cluster", "rw", "ro")
HANDSHAKE_FRAME_MAX = 512  # bytes: the decoder's budget until the peer is authenticated
CHALLENGE_PREFIX = b"\x94\xc4\x0c" + MAGIC  # how a challenge frame starts (msgpack of the list above)


class AuthError(Exception):
    """The handshake failed: wrong key, wrong role, garbage, or a member id that is not ours."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """A key as read from a key file: ``kind`` is cluster (members), rw or ro (clients)."""

    kind: str
    secret: bytes

    def for_role(self, role: str) -> bytes:
        if self.kind == "cluster":
            return hmac.new(self.secret, b"raftlab " + role.encode(), hashlib.sha256).digest()
        if self.kind != role:
            raise AuthError(f"a {self.kind} key cannot authenticate as {role}")
        return self.secret

    def client_role(self) -> str:
        return "rw" if self.kind == "cluster" else self.kind

    def derive(self, kind: str) -> Key:
        """The client key of ``kind`` (rw or ro) derived from a cluster key."""
        if kind not in ("rw", "ro") or self.kind != "cluster":
            raise ValueError("only rw and ro keys are derived, from a cluster key")
        return Key(kind=kind, secret=self.for_role(kind))


def new_cluster_key() -> Key:
    return Key(kind="cluster", secret=os.urandom(32))


def encode_key(key: Key) -> str:
    return f"raftlab-key {VERSION} {key.kind} {key.secret.hex()}\n"


def write_key_file(path: Path, key: Key) -> None:
    """Write a key file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, encode_key(key).encode())
    finally:
        os.close(fd)


def read_key_file(path: Path) -> Key:
    try:
        words = path.read_text().split()
    except OSError as e:
        raise AuthError(f"{path}: cannot read the key file: {e.strerror}") from None
    if len(words) != 4 or words[0] != "raftlab-key" or words[1] != str(VERSION) or words[2] not in KINDS:
        raise AuthError(f"{path}: not a raftlab key file (expected 'raftlab-key 1 cluster|rw|ro HEX')")
    try:
        secret = bytes.fromhex(words[3])
    except ValueError:
        raise AuthError(f"{path}: the key is not hex") from None
    if len(secret) < 16:
        raise AuthError(f"{path}: the key is shorter than 16 bytes")
    return Key(kind=words[2], secret=secret)


def _mac(key: bytes, side: bytes, first: bytes, second: bytes, role: str, sender: int, acceptor: int) -> bytes:
    msg = side + first + second + role.encode() + struct.pack(">QQ", sender, acceptor)
    return hmac.new(key, msg, hashlib.sha256).digest()


def _unpack(payload: bytes, what: str) -> list[Any]:
    try:
        obj = msgpack.unpackb(payload, raw=False, use_list=True)
    except Exception:
        raise AuthError(f"{what}: not a handshake frame") from None
    if type(obj) is not list:
        raise AuthError(f"{what}: not a handshake frame")
    return obj


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who authenticated: ``role`` (peer, rw, ro) and, for a peer, its member id."""

    role: str
    member: int = 0


class Acceptor:
    """The accepting side: ``challenge()``, then ``check(answer)`` -> (Identity, reply frame)."""

    def __init__(self, key: Key, my_id: int, nonce: bytes, *, members: tuple[int, ...] = ()) -> None:
        self.key = key
        self.my_id = my_id
        self.nonce = nonce
        self.members = members

    def challenge(self) -> bytes:
        return msgpack.packb([MAGIC, VERSION, self.nonce, self.my_id], use_bin_type=True)

    def check(self, payload: bytes) -> tuple[Identity, bytes]:
        obj = _unpack(payload, "answer")
        if len(obj) != 4 or obj[0] not in ROLES or type(obj[1]) is not int or type(obj[2]) is not bytes \
                or type(obj[3]) is not bytes or len(obj[2]) != NONCE_BYTES:
            raise AuthError("answer: malformed")
        role, sender, nonce_c, mac_c = obj
        if role == "peer" and (sender not in self.members or sender == self.my_id):
            raise AuthError(f"answer: member {sender} is not another member of this cluster")
        if role != "peer" and sender != 0:
            raise AuthError("answer: a client claims a member id")
        key = self.key.for_role(role)
        if not hmac.compare_digest(_mac(key, b"c", self.nonce, nonce_c, role, sender, self.my_id), mac_c):
            raise AuthError(f"wrong key for {role}" + (f" {sender}" if sender else ""))
        reply = msgpack.packb([b"ok", _mac(key, b"a", self.nonce, nonce_c, role, sender, self.my_id)],
                              use_bin_type=True)
        return Identity(role=role, member=sender), reply


def refusal(reason: str) -> bytes:
    return msgpack.packb([b"refused", reason[:200]], use_bin_type=True)


class Connector:
    """The connecting side: ``answer(challenge)`` -> frame, then ``confirm(reply)``."""

    def __init__(self, key: Key, role: str, nonce: bytes, *, my_id: int = 0, expect: int | None = None) -> None:
        self.key = key
        self.role = role
        self.my_id = my_id
        self.nonce = nonce
        self.expect = expect
        self._acceptor_nonce = b""
        self._acceptor = 0

    def answer(self, payload: bytes) -> bytes:
        obj = _unpack(payload, "challenge")
        if len(obj) != 4 or obj[0] != MAGIC or obj[1] != VERSION or type(obj[2]) is not bytes \
                or type(obj[3]) is not int:
            raise AuthError("challenge: not a raftlab node that requires authentication")
        if self.expect is not None and obj[3] != self.expect:
            raise AuthError(f"challenge: reached member {obj[3]}, expected {self.expect}")
        self._acceptor_nonce, self._acceptor = obj[2], obj[3]
        key = self.key.for_role(self.role)
        mac = _mac(key, b"c", self._acceptor_nonce, self.nonce, self.role, self.my_id, self._acceptor)
        return msgpack.packb([self.role, self.my_id, self.nonce, mac], use_bin_type=True)

    def confirm(self, payload: bytes) -> int:
        """Check the acceptor's proof; returns its member id."""
        obj = _unpack(payload, "reply")
        if len(obj) == 2 and obj[0] == b"refused":
            raise AuthError(f"refused by member {self._acceptor}: {obj[1]}")
        if len(obj) != 2 or obj[0] != b"ok" or type(obj[1]) is not bytes:
            raise AuthError("reply: malformed")
        key = self.key.for_role(self.role)
        want = _mac(key, b"a", self._acceptor_nonce, self.nonce, self.role, self.my_id, self._acceptor)
        if not hmac.compare_digest(want, obj[1]):
            raise AuthError(f"member {self._acceptor} failed to prove it holds the cluster key")
        return self._acceptor
