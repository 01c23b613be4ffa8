"""Trace context on the wire: reading and writing the headers that carry it.

Four formats, all optional on a request:

``l5d-ctx-trace`` (Linkerd / Finagle)
    base64 of Finagle's ``TraceId.serialize``: four big-endian 64-bit words, span id,
    parent id, trace id (low 64 bits), flags; a fifth word holds the high 64 bits of a
    128-bit trace id (40 bytes instead of 32). Flags: bit 0 debug, bit 1 "sampling
    known", bit 2 sampled; bits 3-34 a sample rate (float bits) and bits 43-62 extension
    flags, both carried through untouched. A parent id equal to the span id means "root".
``b3`` (Zipkin single header)
    ``{traceid}-{spanid}[-{1|0|d}[-{parentspanid}]]`` or a sampling state alone.
``x-b3-traceid`` / ``x-b3-spanid`` / ``x-b3-parentspanid`` / ``x-b3-sampled`` / ``x-b3-flags``
    (Zipkin multi headers). ``x-b3-flags: 1`` is debug; ``x-b3-sampled`` takes ``1``/``0``
    and, leniently, ``true``/``false``.
``traceparent`` (+ ``tracestate``) (W3C Trace Context)
    ``{version}-{trace-id 32}-{parent-id 16}-{flags 2}``, lower-case hex, bit 0 of the
    flags = sampled. Future versions are parsed as the spec says; ``ff`` is refused.

**Which one wins** when a request carries several: Linkerd reads the format of the
router's ``tracePropagator`` (``io.l5d.default``: ``l5d-ctx-trace``; ``io.l5d.zipkin``:
the B3 headers) and nothing else, and the B3 spec says the single ``b3`` header beats
the multi headers. So the default order is ``l5d-ctx-trace``, ``b3``, ``x-b3-*``,
``traceparent`` (:data:`DEFAULT_ORDER`), and the B3-first order (:data:`ZIPKIN_ORDER`)
serves ``io.l5d.zipkin``. The first format in the order whose header *parses* gives the
context; a malformed one is skipped (and if none parses, a new trace starts). Each
header's first value is used (B3: "the first value wins"); ``tracestate`` values are
joined as RFC 7230 says.

**What is written** on the outgoing request: always ``l5d-ctx-trace`` (as Linkerd), and
every other format the incoming request carried (valid or not), describing the same
context: a proxy must not drop the format its neighbours speak. ``tracestate`` is passed
through when the incoming ``traceparent`` was valid (bounded to 512 characters by the
spec's truncation rule).

Nothing here raises on hostile input: every decoder returns None (or a safe default) for
anything malformed, too long or out of range, after a length check that comes before any
work proportional to the input.
"""
from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Iterable, Optional

MASK64 = (1 << 64) - 1

# Finagle's flag bits (com.twitter.finagle.tracing.Flags)
DEBUG = 1
SAMPLING_KNOWN = 2
SAMPLED = 4
#: flag bits that encode the sampling decision; the rest is carried through as it came
DECISION_BITS = SAMPLING_KNOWN | SAMPLED

# Formats, as bits of a mask (what a request carried, what to write)
L5D = 1
B3_SINGLE = 2
B3_MULTI = 4
W3C = 8

DEFAULT_ORDER = (L5D, B3_SINGLE, B3_MULTI, W3C)
ZIPKIN_ORDER = (B3_SINGLE, B3_MULTI, L5D, W3C)

#: Linkerd's ``tracePropagator`` kinds → the order in which the formats are read
PROPAGATOR_ORDERS = {"io.l5d.default": DEFAULT_ORDER, "io.l5d.zipkin": ZIPKIN_ORDER}
#: … and the formats each writes on every outgoing request besides ``l5d-ctx-trace`` and
#: those the incoming request carried
PROPAGATOR_WRITES = {"io.l5d.default": 0, "io.l5d.zipkin": B3_MULTI}

#: Request headers that carry trace context (lower case). The data plane collects these
#: ``(name, value)`` pairs for :meth:`RouterTracer.begin` and does not forward them as
#: received: the tracer writes them again for the next hop.
TRACE_HEADERS = frozenset((
    b"l5d-ctx-trace", b"l5d-sample", b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid",
    b"x-b3-sampled", b"x-b3-flags", b"traceparent", b"tracestate",
))

_FORMAT_OF = {
    b"l5d-ctx-trace": L5D, b"b3": B3_SINGLE, b"x-b3-traceid": B3_MULTI, b"x-b3-spanid": B3_MULTI,
    b"x-b3-parentspanid": B3_MULTI, b"x-b3-sampled": B3_MULTI, b"x-b3-flags": B3_MULTI,
    b"traceparent": W3C,
}

#: W3C: "vendors SHOULD propagate at least 512 characters" of tracestate; we keep 512.
TRACESTATE_MAX = 512
_TRACESTATE_ENTRY_MAX = 128
_TRACESTATE_MEMBERS_MAX = 32
#: Longest header value any decoder looks at (a 40-byte l5d-ctx-trace is 56 characters,
#: a b3 header with a 128-bit id 68); longer values are refused before any parsing.
_MAX_VALUE = 128

_HEX = frozenset(b"0123456789abcdefABCDEF")
_LOWER_HEX = frozenset(b"0123456789abcdef")
_WORDS4 = struct.Struct(">QQQQ")
_WORDS5 = struct.Struct(">QQQQQ")
_b64 = binascii.b2a_base64


class Incoming:
    """The context a request carried: the caller's span (our server span's parent).

    ``span_id == 0`` means the header gave a sampling decision but no ids (``b3: 0``).
    ``flags`` holds Finagle's flag bits other than the decision bits (debug, sample
    rate, extension flags); ``sampled`` is None when the caller deferred the decision.
    ``wide``: the trace id came as 32 hex characters (written back the same way)."""

    __slots__ = ("trace_id", "trace_hi", "span_id", "sampled", "flags", "wide")

    def __init__(self, trace_id: int, trace_hi: int, span_id: int, sampled: Optional[bool],
                 flags: int = 0, wide: bool = False) -> None:
        self.trace_id = trace_id
        self.trace_hi = trace_hi
        self.span_id = span_id
        self.sampled = sampled
        self.flags = flags
        self.wide = wide

    def __repr__(self) -> str:
        return (f"Incoming(trace={self.trace_hi:x}:{self.trace_id:016x} span={self.span_id:016x} "
                f"sampled={self.sampled} flags={self.flags:#x})")


# --- l5d-ctx-trace ----------------------------------------------------------------------

def decode_l5d(value: bytes) -> Optional[Incoming]:
    """Finagle's ``TraceId.deserialize(base64 decode(value))``; None if malformed."""
    value = value.strip()
    if not 40 <= len(value) <= 56:  # base64 of 32 or 40 bytes, padded or not
        return None
    if len(value) % 4:
        value += b"=" * (4 - len(value) % 4)  # Java's decoder does not require padding
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) == 32:
        span, _parent, trace, flags = _WORDS4.unpack(raw)
        hi = 0
    elif len(raw) == 40:
        span, _parent, trace, flags, hi = _WORDS5.unpack(raw)
    else:
        return None
    if span == 0 or trace == 0:
        return None
    sampled = bool(flags & SAMPLED) if flags & SAMPLING_KNOWN else None
    if flags & DEBUG:
        sampled = True
    return Incoming(trace, hi, span, sampled, flags & ~DECISION_BITS, hi != 0)


def encode_l5d(span_id: int, parent_id: int, trace_id: int, trace_hi: int, flags: int,
               sampled: Optional[bool]) -> bytes:
    """Finagle's ``TraceId.serialize``, base64 with padding (as Java's encoder writes).
    ``flags`` are the bits to carry; the decision bits come from ``sampled``."""
    if flags:
        flags &= ~DECISION_BITS & MASK64
    if sampled is not None:
        flags |= (SAMPLING_KNOWN | SAMPLED) if sampled else SAMPLING_KNOWN
    if trace_hi:
        return _b64(_WORDS5.pack(span_id, parent_id, trace_id, flags, trace_hi), newline=False)
    return _b64(_WORDS4.pack(span_id, parent_id, trace_id, flags), newline=False)


# --- B3 -----------------------------------------------------------------------------------

def _hex_id(v: bytes, max_len: int) -> int:
    """An id of 1..max_len hex characters (B3 readers are lenient about case and short
    ids, as Finagle's SpanId.fromString and Brave are); 0 when invalid or all zeros."""
    if not 0 < len(v) <= max_len or not _HEX.issuperset(v):
        return 0
    return int(v, 16)


def _split_trace_id(v: bytes) -> Optional[tuple[int, int, bool]]:
    n = _hex_id(v, 32)
    if n == 0:
        return None
    return n & MASK64, n >> 64, len(v) > 16


def _b3_sampled(v: bytes) -> tuple[Optional[bool], bool]:
    """(sampled, debug) of a single-header sampling state; raises ValueError if invalid."""
    if v == b"1":
        return True, False
    if v == b"0":
        return False, False
    if v == b"d":
        return True, True
    raise ValueError(v)


def decode_b3_single(value: bytes) -> Optional[Incoming]:
    value = value.strip()
    if not value or len(value) > _MAX_VALUE:
        return None
    parts = value.split(b"-")
    try:
        if len(parts) == 1:  # sampling state alone
            sampled, debug = _b3_sampled(parts[0])
            return Incoming(0, 0, 0, sampled, DEBUG if debug else 0)
        if len(parts) > 4:
            return None
        trace = _split_trace_id(parts[0])
        span = _hex_id(parts[1], 16)
        if trace is None or span == 0:
            return None
        sampled, debug = _b3_sampled(parts[2]) if len(parts) >= 3 else (None, False)
        if len(parts) == 4 and _hex_id(parts[3], 16) == 0:
            return None
    except ValueError:
        return None
    return Incoming(trace[0], trace[1], span, sampled, DEBUG if debug else 0, trace[2])


def decode_b3_multi(trace_id: Optional[bytes], span_id: Optional[bytes], sampled: Optional[bytes],
                    flags: Optional[bytes]) -> Optional[Incoming]:
    """The ``x-b3-*`` headers (the parent id is not needed: we start a child of the span)."""
    s: Optional[bool] = None
    if sampled is not None:
        v = sampled.strip().lower()
        if v in (b"1", b"true"):
            s = True
        elif v in (b"0", b"false"):
            s = False
    debug = flags is not None and flags.strip() == b"1"
    if debug:
        s = True
    if trace_id is None or span_id is None:
        if s is None:
            return None
        return Incoming(0, 0, 0, s, DEBUG if debug else 0)  # a decision without ids
    trace = _split_trace_id(trace_id.strip())
    span = _hex_id(span_id.strip(), 16)
    if trace is None or span == 0:
        return None
    return Incoming(trace[0], trace[1], span, s, DEBUG if debug else 0, trace[2])


def _b3_state(sampled: Optional[bool], debug: bool) -> bytes:
    if debug:
        return b"d"
    return b"" if sampled is None else (b"1" if sampled else b"0")


def trace_id_hex(trace_id: int, trace_hi: int, wide: bool = False) -> bytes:
    if trace_hi or wide:
        return b"%016x%016x" % (trace_hi, trace_id)
    return b"%016x" % trace_id


def encode_b3_single(trace_hex: bytes, span_id: int, parent_id: int, sampled: Optional[bool],
                     debug: bool) -> bytes:
    state = _b3_state(sampled, debug)
    if state:
        return b"%s-%016x-%s-%016x" % (trace_hex, span_id, state, parent_id)
    # Defer: the spec's positional form cannot skip the state, so the parent goes too.
    return b"%s-%016x" % (trace_hex, span_id)


def encode_b3_multi(trace_hex: bytes, span_id: int, parent_id: int, sampled: Optional[bool],
                    debug: bool) -> bytes:
    """Header lines (each ending in CRLF). Debug is ``X-B3-Flags: 1`` *instead of*
    ``X-B3-Sampled`` (the spec: "don't also send the sampled header")."""
    out = b"x-b3-traceid: %s\r\nx-b3-spanid: %016x\r\nx-b3-parentspanid: %016x\r\n" % (
        trace_hex, span_id, parent_id)
    if debug:
        return out + b"x-b3-flags: 1\r\n"
    if sampled is not None:
        return out + (b"x-b3-sampled: 1\r\n" if sampled else b"x-b3-sampled: 0\r\n")
    return out


# --- W3C trace context ---------------------------------------------------------------------

def decode_traceparent(value: bytes) -> Optional[Incoming]:
    """W3C ``traceparent``; None when the spec says to ignore it (restart the trace)."""
    value = value.strip()
    n = len(value)
    if n < 55 or n > 512:
        return None
    version = value[:2]
    if value[2:3] != b"-" or not _LOWER_HEX.issuperset(version) or version == b"ff":
        return None
    if version == b"00" and n != 55:
        return None
    if n > 55 and value[55:56] != b"-":  # a future version: more fields after a dash
        return None
    trace, parent, flags = value[3:35], value[36:52], value[53:55]
    if value[35:36] != b"-" or value[52:53] != b"-":
        return None
    if not (_LOWER_HEX.issuperset(trace) and _LOWER_HEX.issuperset(parent) and _LOWER_HEX.issuperset(flags)):
        return None
    t = int(trace, 16)
    p = int(parent, 16)
    if t == 0 or p == 0:
        return None
    return Incoming(t & MASK64, t >> 64, p, bool(int(flags, 16) & 1), 0, True)


def encode_traceparent(trace_id: int, trace_hi: int, span_id: int, sampled: Optional[bool]) -> bytes:
    return b"00-%016x%016x-%016x-%s" % (trace_hi, trace_id, span_id, b"01" if sampled else b"00")


def bound_tracestate(values: list[bytes]) -> Optional[bytes]:
    """The combined ``tracestate`` to pass on, at most :data:`TRACESTATE_MAX` characters
    and 32 members, truncated as the spec says (whole entries; those over 128 characters
    first, then from the end). Empty → None."""
    members = [m.strip() for v in values for m in v.split(b",")]
    members = [m for m in members if m]
    if not members:
        return None

    def size(ms: list[bytes]) -> int:
        return sum(len(m) for m in ms) + len(ms) - 1

    if len(members) > _TRACESTATE_MEMBERS_MAX or size(members) > TRACESTATE_MAX:
        members = [m for m in members if len(m) <= _TRACESTATE_ENTRY_MAX]
        del members[_TRACESTATE_MEMBERS_MAX:]
        while members and size(members) > TRACESTATE_MAX:
            members.pop()
        if not members:
            return None
    return b",".join(members)


# --- l5d-sample ------------------------------------------------------------------------------

def parse_sample_rate(value: bytes) -> Optional[float]:
    """``l5d-sample`` as Linkerd reads it (Java's Float.parseFloat, clamped to [0, 1]);
    None if it is not a number. NaN samples nothing (as Linkerd's sampler)."""
    v = value.strip()
    if not v or len(v) > 64 or b"_" in v:
        return None
    if v[-1:] in (b"f", b"F", b"d", b"D") and v[:-1].lower() not in (b"in", b"na"):  # Java's 0.5f / 0.5d
        v = v[:-1]
    try:
        rate = float(v)
    except ValueError:
        return None
    if math.isnan(rate):
        return 0.0
    return min(1.0, max(0.0, rate))


# --- reading a request ------------------------------------------------------------------------

class Extracted:
    """What :func:`extract` found: the winning context (or None), the formats present,
    the ``l5d-sample`` rate and the ``tracestate`` to pass on."""

    __slots__ = ("incoming", "formats", "sample_rate", "tracestate")

    def __init__(self, incoming: Optional[Incoming], formats: int, sample_rate: Optional[float],
                 tracestate: Optional[bytes]) -> None:
        self.incoming = incoming
        self.formats = formats
        self.sample_rate = sample_rate
        self.tracestate = tracestate


def extract(headers: Iterable[tuple[bytes, bytes]], order: tuple[int, ...] = DEFAULT_ORDER) -> Extracted:
    """Read the trace headers of a request: ``(lower-case name, value)`` pairs (other
    headers are ignored). Never raises."""
    first: dict[bytes, bytes] = {}
    states: list[bytes] = []
    formats = 0
    for name, value in headers:
        if name == b"tracestate":
            if len(states) < 64:  # more pieces than that cannot fit in 512 characters anyway
                states.append(value)
            continue
        fmt = _FORMAT_OF.get(name)
        if fmt is not None:
            formats |= fmt
        elif name != b"l5d-sample":
            continue
        first.setdefault(name, value)
    incoming: Optional[Incoming] = None
    for fmt in order:
        if not formats & fmt:
            continue
        if fmt == L5D:
            incoming = decode_l5d(first[b"l5d-ctx-trace"])
        elif fmt == B3_SINGLE:
            incoming = decode_b3_single(first[b"b3"])
        elif fmt == B3_MULTI:
            incoming = decode_b3_multi(first.get(b"x-b3-traceid"), first.get(b"x-b3-spanid"),
                                       first.get(b"x-b3-sampled"), first.get(b"x-b3-flags"))
        else:
            incoming = decode_traceparent(first[b"traceparent"])
        if incoming is not None:
            break
    rate = None
    raw_rate = first.get(b"l5d-sample")
    if raw_rate is not None:
        rate = parse_sample_rate(raw_rate)
    tracestate = None
    if states and formats & W3C and decode_traceparent(first[b"traceparent"]) is not None:
        tracestate = bound_tracestate(states)
    return Extracted(incoming, formats, rate, tracestate)
