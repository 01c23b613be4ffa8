"""Finagle's Mux session protocol: message framing and the bodies a name interpreter uses.

Written from the protocol description in Finagle (``com.twitter.finagle.mux`` package
documentation and ``mux/transport/Message.scala``); all numbers big-endian:

* frame: ``size:4 type:1 tag:3 body`` (``size`` counts type, tag and body). The tag's
  most significant bit marks a fragment that more fragments of the same tag follow.
* types: ``Tdispatch 2 / Rdispatch -2``, ``Treq 1 / Rreq -1`` (old), ``Tdrain 64 /
  Rdrain -64``, ``Tping 65 / Rping -65``, ``Tdiscarded 66 / Rdiscarded -66`` (Finagle
  still *sends* the old alias -62), ``Tlease 67``, ``Tinit 68 / Rinit -68``, ``Rerr
  -128`` (sent as the old alias 127).
* ``Tdispatch``: ``nctx:2 (key~2 val~2){nctx} dst~2 nd:2 (from~2 to~2){nd} payload``;
  ``Rdispatch``: ``status:1 nctx:2 (key~2 val~2){nctx} payload`` (status 0 ok, 1 error
  with UTF-8 text, 2 nack); ``Tinit/Rinit``: ``version:2 (key~4 val~4)*``;
  ``Tdiscarded``: ``which:3 why`` (tag 0); ``Rerr``: UTF-8 text.

Everything read from a peer is bounded: a frame larger than ``max_frame`` and a
reassembled fragment sequence larger than ``max_message`` raise :class:`MuxError`.
"""
from __future__ import annotations

import struct
from typing import Iterator, NamedTuple, Optional

TREQ, RREQ = 1, -1
TDISPATCH, RDISPATCH = 2, -2
TDRAIN, RDRAIN = 64, -64
TPING, RPING = 65, -65
TDISCARDED, RDISCARDED = 66, -66
TLEASE = 67
TINIT, RINIT = 68, -68
RERR = -128
BAD_TDISCARDED = -62  # what Finagle sends for Tdiscarded
BAD_RERR = 127  # what Finagle sends for Rerr

#: The Rerr a client sends first, and expects echoed, to say it will negotiate (Tinit).
CAN_TINIT = "tinit check"
INIT_TAG = 1
CONTROL_TAG = 1  # Finagle's tag for pings and drains
VERSION = 1
MAX_TAG = (1 << 23) - 1
TAG_MSB = 1 << 23

STATUS_OK, STATUS_ERROR, STATUS_NACK = 0, 1, 2

#: Frames and messages above these are refused (a name interpreter's are a few KB).
MAX_FRAME = 16 * 1024 * 1024
MAX_MESSAGE = 16 * 1024 * 1024


class MuxError(Exception):
    """A frame or body that is not valid Mux."""


class Message(NamedTuple):
    typ: int
    tag: int
    body: bytes


def frame(typ: int, tag: int, body: bytes = b"") -> bytes:
    if not 0 <= tag <= (MAX_TAG | TAG_MSB):
        raise MuxError(f"invalid tag {tag}")
    return struct.pack(">iB", 4 + len(body), typ & 0xFF) + tag.to_bytes(3, "big") + body


def fragments(typ: int, tag: int, body: bytes, max_size: int) -> Iterator[bytes]:
    """``body`` split into frames of at most ``max_size`` body bytes (the peer's
    ``mux-framer`` limit); all but the last carry the tag's fragment bit."""
    if len(body) <= max_size:
        yield frame(typ, tag, body)
        return
    for i in range(0, len(body), max_size):
        last = i + max_size >= len(body)
        yield frame(typ, tag if last else tag | TAG_MSB, body[i:i + max_size])


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


class FrameReader:
    """Incremental frame reader: ``feed(bytes)`` returns the complete frames so far as
    raw ``(type, tag, body)`` (fragments are joined by :class:`Reassembler`). The same
    4-byte size prefix frames plain thrift, which is how a server tells them apart."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Message]:
        """The complete frames, one by one: frames before a bad one are handed out
        before :class:`MuxError` is raised for it."""
        self._buf += data
        while len(self._buf) >= 4:
            (size,) = struct.unpack_from(">i", self._buf)
            if size < 4 or size > self.max_frame:
                raise MuxError(f"frame of {size} bytes (allowed: 4 to {self.max_frame})")
            if len(self._buf) < 4 + size:
                break
            head = bytes(self._buf[4:8])
            body = bytes(self._buf[8:4 + size])
            del self._buf[:4 + size]
            yield Message(_signed(head[0]), int.from_bytes(head[1:4], "big"), body)


class Reassembler:
    """Joins fragments (tag MSB set) into whole messages, bounded in size and count."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._partial: dict[int, tuple[int, list[bytes], int]] = {}

    def push(self, msg: Message) -> Optional[Message]:
        typ, tag, body = msg
        base = tag & MAX_TAG
        more = bool(tag & TAG_MSB)
        if not more and base not in self._partial:
            return msg
        ptyp, parts, size = self._partial.pop(base, (typ, [], 0))
        size += len(body)
        if size > self.max_message:
            raise MuxError(f"fragmented message for tag {base} over {self.max_message} bytes")
        parts.append(body)
        if more:
            self._partial[base] = (ptyp, parts, size)
            if len(self._partial) > 1024:
                raise MuxError("too many fragmented messages in flight")
            return None
        return Message(ptyp, base, b"".join(parts))


class _Reader:
    """Bounds-checked big-endian reads over one body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MuxError("message body ends too early")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def rest(self) -> bytes:
        b = self.data[self.pos:]
        self.pos = len(self.data)
        return b


def _pairs16(pairs: list[tuple[bytes, bytes]]) -> bytes:
    out = [struct.pack(">H", len(pairs))]
    for k, v in pairs:
        out.append(struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v)
    return b"".join(out)


def _read_pairs16(r: _Reader, n: int) -> list[tuple[bytes, bytes]]:
    return [(r.take(r.u16()), r.take(r.u16())) for _ in range(n)]


class Dispatch(NamedTuple):
    contexts: list[tuple[bytes, bytes]]
    dst: str
    dtab: list[tuple[str, str]]
    payload: bytes


def tdispatch_body(payload: bytes, contexts: Optional[list[tuple[bytes, bytes]]] = None, dst: str = "",
                   dtab: Optional[list[tuple[str, str]]] = None) -> bytes:
    d = dst.encode("utf-8")
    rules = [(a.encode("utf-8"), b.encode("utf-8")) for a, b in (dtab or [])]
    return _pairs16(contexts or []) + struct.pack(">H", len(d)) + d + _pairs16(rules) + payload


def parse_tdispatch(body: bytes) -> Dispatch:
    r = _Reader(body)
    contexts = _read_pairs16(r, r.u16())
    try:
        dst = r.take(r.u16()).decode("utf-8")
        dtab = [(a.decode("utf-8"), b.decode("utf-8")) for a, b in _read_pairs16(r, r.u16())]
    except UnicodeDecodeError as e:
        raise MuxError(f"Tdispatch destination or dtab is not UTF-8: {e}") from None
    return Dispatch(contexts, dst, dtab, r.rest())


def rdispatch_body(status: int, payload: bytes, contexts: Optional[list[tuple[bytes, bytes]]] = None) -> bytes:
    return bytes([status]) + _pairs16(contexts or []) + payload


def parse_rdispatch(body: bytes) -> tuple[int, bytes]:
    """(status, payload) — for status 1 the payload is the UTF-8 error text."""
    r = _Reader(body)
    status = r.take(1)[0]
    _read_pairs16(r, r.u16())
    if status not in (STATUS_OK, STATUS_ERROR, STATUS_NACK):
        raise MuxError(f"invalid Rdispatch status {status}")
    return status, r.rest()


def parse_treq(body: bytes) -> bytes:
    """The payload of an (old) Treq: skip its ``n:1 (key:1 value~1){n}`` header."""
    r = _Reader(body)
    n = r.take(1)[0]
    for _ in range(n):
        r.take(1)
        r.take(r.take(1)[0])
    return r.rest()


def init_body(version: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    out = [struct.pack(">H", version)]
    for k, v in headers:
        out.append(struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def parse_init(body: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    r = _Reader(body)
    version = r.u16()
    headers = []
    while r.pos < len(r.data):
        k = r.take(r.u32())
        headers.append((k, r.take(r.u32())))
    return version, headers


def tdiscarded_body(which: int, why: str) -> bytes:
    return which.to_bytes(3, "big") + why.encode("utf-8")


def parse_tdiscarded(body: bytes) -> tuple[int, str]:
    r = _Reader(body)
    which = int.from_bytes(r.take(3), "big")
    return which, r.rest().decode("utf-8", "replace")


def text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def header(headers: list[tuple[bytes, bytes]], key: bytes) -> Optional[bytes]:
    for k, v in headers:
        if k == key:
            return v
    return None


#: ``mux-framer``: the largest fragment the sender wants to receive (4-byte int).
FRAMER_KEY = b"mux-framer"
#: ``tls``: opportunistic TLS level (``off``/``desired``/``required``).
TLS_KEY = b"tls"
