"""Trace context codecs: byte-exact vectors, round trips, precedence, hostile input.

Vectors: ``l5d-ctx-trace`` bytes are written out by hand from Finagle's layout
(``TraceId.serialize``: span id, parent id, trace id, flags, [trace id high], 64-bit
big-endian each; the base64 strings were made with ``xxd -r -p | openssl base64``);
B3 from the examples of openzipkin/b3-propagation's README; W3C from the Trace Context
spec's "Examples of HTTP traceparent Headers" and its versioning rules.
"""
from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namerouter.tracing.propagation import (
    B3_MULTI, B3_SINGLE, DEBUG, L5D, TRACE_HEADERS, TRACESTATE_MAX, W3C, ZIPKIN_ORDER, bound_tracestate,
    decode_b3_multi, decode_b3_single, decode_l5d, decode_traceparent, encode_b3_multi, encode_b3_single,
    encode_l5d, encode_traceparent, extract, parse_sample_rate,
)
from namerouter.tracing.tracer import NO_TELEMETERS

# Finagle's TraceId doc example: SERVICE M  e4bbb7c0f6a2ff07.a5f47e9fced314a2<:694eb2f05b8fd7d1
SPAN, PARENT, TRACE = 0xa5f47e9fced314a2, 0x694eb2f05b8fd7d1, 0xe4bbb7c0f6a2ff07
# 32 bytes: span, parent, trace, flags 6 (SamplingKnown | Sampled)
L5D_SAMPLED = b"pfR+n87TFKJpTrLwW4/X0eS7t8D2ov8HAAAAAAAAAAY="
# 40 bytes: the same with flags 3 (Debug | SamplingKnown) and trace id high 4bf92f3577b34da6
L5D_128_DEBUG = b"pfR+n87TFKJpTrLwW4/X0eS7t8D2ov8HAAAAAAAAAANL+S81d7NNpg=="
# a root id (Finagle: trace = parent = span) with flags 2 (SamplingKnown, not sampled)
L5D_ROOT_UNSAMPLED = b"NEKbBLa79Hg0QpsEtrv0eDRCmwS2u/R4AAAAAAAAAAI="


def router():
    return NO_TELEMETERS.router("test")


def header_lines(block: bytes) -> dict[bytes, bytes]:
    out = {}
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            assert name not in out, f"{name!r} written twice"
            out[name] = value
    return out


# --- l5d-ctx-trace ---------------------------------------------------------------------------

def test_l5d_decode_finagle_layout():
    inc = decode_l5d(L5D_SAMPLED)
    assert (inc.span_id, inc.trace_id, inc.trace_hi, inc.sampled, inc.flags) == (SPAN, TRACE, 0, True, 0)


def test_l5d_decode_128_bit_and_debug():
    inc = decode_l5d(L5D_128_DEBUG)
    assert (inc.span_id, inc.trace_id, inc.trace_hi) == (SPAN, TRACE, 0x4bf92f3577b34da6)
    assert inc.sampled is True  # debug implies sampled (Finagle's TraceId.sampled)
    assert inc.flags == DEBUG


def test_l5d_decode_root_not_sampled():
    inc = decode_l5d(L5D_ROOT_UNSAMPLED)
    assert inc.span_id == inc.trace_id == 0x34429b04b6bbf478 and inc.sampled is False


def test_l5d_decode_unknown_sampling_and_no_padding():
    raw = struct.pack(">QQQQ", 1, 2, 3, 0)
    inc = decode_l5d(base64.b64encode(raw).rstrip(b"="))  # Java's decoder takes it unpadded
    assert (inc.span_id, inc.trace_id, inc.sampled) == (1, 3, None)


def test_l5d_encode_is_byte_exact():
    assert encode_l5d(SPAN, PARENT, TRACE, 0, 0, True) == L5D_SAMPLED
    assert encode_l5d(SPAN, PARENT, TRACE, 0x4bf92f3577b34da6, DEBUG, False) == L5D_128_DEBUG
    assert encode_l5d(0x34429b04b6bbf478, 0x34429b04b6bbf478, 0x34429b04b6bbf478, 0, 0, False) == L5D_ROOT_UNSAMPLED
    # deferred: no SamplingKnown bit
    assert base64.b64decode(encode_l5d(1, 2, 3, 0, 0, None))[24:] == bytes(8)


def test_l5d_carries_other_flag_bits_through():
    # Finagle's sample-rate bits (float bits << 3) and an extension flag (bit 43)
    flags = (struct.unpack(">I", struct.pack(">f", 0.25))[0] << 3) | (1 << 43)
    value = encode_l5d(5, 6, 7, 0, flags, True)
    t = router().begin([(b"l5d-ctx-trace", value)])
    out = header_lines(t.attempt("/#/x"))
    sent = base64.b64decode(out[b"l5d-ctx-trace"])
    assert struct.unpack(">Q", sent[24:32])[0] == flags | 6


@pytest.mark.parametrize("value", [
    b"", b"not-a-trace", b"!!!!" * 11, L5D_SAMPLED[:-8], L5D_SAMPLED + b"AAAA",
    base64.b64encode(bytes(24)), base64.b64encode(bytes(33)), base64.b64encode(bytes(48)),
    base64.b64encode(bytes(32)),  # span and trace 0
    base64.urlsafe_b64encode(b"\xfb" * 32),  # '-' and '_' are not Java's basic alphabet
    b"A" * 100_000,
])
def test_l5d_malformed_is_none(value):
    assert decode_l5d(value) is None


# --- B3 -----------------------------------------------------------------------------------------

def test_b3_multi_spec_example():
    inc = decode_b3_multi(b"463ac35c9f6413ad48485a3953bb6124", b"a2fb4a1d1a96d312", b"1", None)
    assert (inc.trace_hi, inc.trace_id, inc.span_id, inc.sampled, inc.wide) == (
        0x463ac35c9f6413ad, 0x48485a3953bb6124, 0xa2fb4a1d1a96d312, True, True)


@pytest.mark.parametrize("sampled,flags,want,debug", [
    (b"1", None, True, False), (b"0", None, False, False), (b"true", None, True, False),
    (b"false", None, False, False), (None, None, None, False), (b"maybe", None, None, False),
    (None, b"1", True, True), (b"0", b"1", True, True),
])
def test_b3_multi_sampling_states(sampled, flags, want, debug):
    inc = decode_b3_multi(b"80f198ee56343ba8", b"e457b5a2e4d86bd1", sampled, flags)
    assert inc.sampled is want and bool(inc.flags & DEBUG) is debug


def test_b3_single_spec_examples():
    inc = decode_b3_single(b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-1-e457b5a2e4d86bd1")
    assert (inc.trace_hi, inc.trace_id, inc.span_id, inc.sampled) == (
        0x80f198ee56343ba8, 0x64fe8b2a57d3eff7, 0x05e3ac9a4f6e3b90, True)
    inc = decode_b3_single(b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-d")
    assert inc.sampled is True and inc.flags == DEBUG
    inc = decode_b3_single(b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90")
    assert inc.sampled is None
    deny = decode_b3_single(b"0")
    assert deny.span_id == 0 and deny.sampled is False
    assert decode_b3_single(b"d").flags == DEBUG


@pytest.mark.parametrize("value", [
    b"", b"-", b"1-2-3-4-5", b"80f198ee56343ba8-", b"80f198ee56343ba8-e457b5a2e4d86bd1-2",
    b"80f198ee56343ba8-e457b5a2e4d86bd1-1-", b"0000000000000000-e457b5a2e4d86bd1-1",
    b"80f198ee56343ba8-0000000000000000", b"g0f198ee56343ba8-e457b5a2e4d86bd1",
    b"80f198ee56343ba864fe8b2a57d3eff7a-e457b5a2e4d86bd1", b"80f198ee56343ba8-e457b5a2e4d86bd1a",
    b"x", b"80f198ee56343ba8-e457b5a2e4d86bd1-1-" + b"f" * 20_000,
])
def test_b3_single_malformed_is_none(value):
    assert decode_b3_single(value) is None


def test_b3_encoders_are_byte_exact():
    th = b"80f198ee56343ba864fe8b2a57d3eff7"
    assert encode_b3_single(th, 0x05e3ac9a4f6e3b90, 0xe457b5a2e4d86bd1, True, False) == \
        b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-1-e457b5a2e4d86bd1"
    assert encode_b3_single(th, 0x05e3ac9a4f6e3b90, 0xe457b5a2e4d86bd1, True, True) == \
        b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-d-e457b5a2e4d86bd1"
    assert encode_b3_single(th, 0x05e3ac9a4f6e3b90, 0xe457b5a2e4d86bd1, None, False) == \
        b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90"
    assert encode_b3_multi(b"463ac35c9f6413ad48485a3953bb6124", 0xa2fb4a1d1a96d312, 0x0020000000000001, True,
                           False) == (b"x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124\r\n"
                                      b"x-b3-spanid: a2fb4a1d1a96d312\r\n"
                                      b"x-b3-parentspanid: 0020000000000001\r\n"
                                      b"x-b3-sampled: 1\r\n")
    # debug is X-B3-Flags: 1 *instead of* X-B3-Sampled
    lines = header_lines(encode_b3_multi(b"80f198ee56343ba8", 1, 2, True, True))
    assert lines[b"x-b3-flags"] == b"1" and b"x-b3-sampled" not in lines


# --- W3C -----------------------------------------------------------------------------------------

def test_traceparent_spec_examples():
    inc = decode_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert (inc.trace_hi, inc.trace_id, inc.span_id, inc.sampled) == (
        0x4bf92f3577b34da6, 0xa3ce929d0e0e4736, 0x00f067aa0ba902b7, True)
    assert decode_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").sampled is False
    # flags is a bit field: 09 = sampled + an unknown bit
    assert decode_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09").sampled is True


def test_traceparent_future_versions():
    # "If a higher version is detected": parse the first fields, ignore the rest after a dash
    inc = decode_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds")
    assert inc.span_id == 0x00f067aa0ba902b7
    assert decode_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is not None
    assert decode_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what") is None


@pytest.mark.parametrize("value", [
    b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
    b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has 4 fields
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    b"0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    b"00-" + b"a" * 100_000,
])
def test_traceparent_invalid_is_none(value):
    assert decode_traceparent(value) is None


def test_traceparent_encode_is_byte_exact():
    assert encode_traceparent(0xa3ce929d0e0e4736, 0x4bf92f3577b34da6, 0x00f067aa0ba902b7, True) == \
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # a 64-bit trace id is the low half of a 128-bit one
    assert encode_traceparent(0xa3ce929d0e0e4736, 0, 1, False) == \
        b"00-0000000000000000a3ce929d0e0e4736-0000000000000001-00"


def test_tracestate_passes_through_only_with_a_valid_traceparent():
    tp = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    ex = extract([tp, (b"tracestate", b"rojo=00f067aa0ba902b7"), (b"tracestate", b"congo=t61rcWkgMzE")])
    assert ex.tracestate == b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    bad = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z")
    assert extract([bad, (b"tracestate", b"rojo=1")]).tracestate is None
    assert extract([(b"tracestate", b"rojo=1")]).tracestate is None


def test_tracestate_truncation_follows_the_spec():
    long_entry = b"big=" + b"x" * 200
    entries = [b"k%d=%s" % (i, b"v" * 20) for i in range(30)]
    out = bound_tracestate([b",".join([entries[0], long_entry] + entries[1:])])
    assert len(out) <= TRACESTATE_MAX
    kept = out.split(b",")
    assert long_entry not in kept  # entries over 128 characters go first
    assert kept == entries[:len(kept)]  # then entries from the end
    assert bound_tracestate([b",".join(b"k%d=v" % i for i in range(40))]).count(b",") == 31  # 32 members
    assert bound_tracestate([b" , ,"]) is None


# --- l5d-sample ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,want", [
    (b"0.5", 0.5), (b"1", 1.0), (b"1.0", 1.0), (b"0", 0.0), (b"2", 1.0), (b"-1", 0.0), (b" 0.25 ", 0.25),
    (b"0.5f", 0.5), (b"0.5d", 0.5), (b"1e-1", 0.1), (b"NaN", 0.0), (b"Infinity", 1.0), (b"-Infinity", 0.0),
    (b"abc", None), (b"", None), (b"1_0", None), (b"0x1", None), (b"9" * 100, None),
])
def test_l5d_sample_values(value, want):
    assert parse_sample_rate(value) == want


# --- which header wins, what is written -------------------------------------------------------

B3_OTHER = (b"b3", b"80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-0")
MULTI_OTHER = [(b"x-b3-traceid", b"1111111111111111"), (b"x-b3-spanid", b"2222222222222222"),
               (b"x-b3-sampled", b"1")]
W3C_OTHER = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def test_default_order_l5d_then_b3_single_then_multi_then_w3c():
    r = router()
    all_ = [(b"l5d-ctx-trace", L5D_SAMPLED), B3_OTHER, *MULTI_OTHER, W3C_OTHER]
    assert r.begin(all_).parent_id == SPAN
    assert r.begin(all_[1:]).parent_id == 0x05e3ac9a4f6e3b90  # b3 beats x-b3-* (B3 spec)
    assert r.begin(all_[2:]).parent_id == 0x2222222222222222
    assert r.begin([W3C_OTHER]).parent_id == 0x00f067aa0ba902b7


def test_zipkin_propagator_reads_b3_first():
    r = NO_TELEMETERS.router("test", propagator="io.l5d.zipkin")
    t = r.begin([(b"l5d-ctx-trace", L5D_SAMPLED), *MULTI_OTHER])
    assert t.parent_id == 0x2222222222222222 and t.trace_id == 0x1111111111111111
    assert ZIPKIN_ORDER[0] == B3_SINGLE


def test_a_malformed_header_falls_through_to_the_next_format():
    t = router().begin([(b"l5d-ctx-trace", b"garbage"), *MULTI_OTHER])
    assert t.parent_id == 0x2222222222222222


def test_first_value_wins():
    t = router().begin([(b"x-b3-traceid", b"1111111111111111"), (b"x-b3-traceid", b"3333333333333333"),
                        (b"x-b3-spanid", b"2222222222222222")])
    assert t.trace_id == 0x1111111111111111


def test_a_b3_sampling_state_alone_starts_a_trace_with_that_decision():
    t = router().begin([(b"b3", b"0")])
    assert t.parent_id is None and t.sampled is False
    out = header_lines(t.attempt("/#/x"))
    assert out[b"b3"].endswith(b"-0-%016x" % t.span_id)


def test_outgoing_headers_are_the_incoming_formats_plus_l5d():
    r = router()
    cases = [
        ([], {b"l5d-ctx-trace", b"l5d-reqid"}),
        ([(b"l5d-ctx-trace", L5D_SAMPLED)], {b"l5d-ctx-trace", b"l5d-reqid"}),
        (MULTI_OTHER, {b"l5d-ctx-trace", b"l5d-reqid", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid",
                       b"x-b3-sampled"}),
        ([B3_OTHER], {b"l5d-ctx-trace", b"l5d-reqid", b"b3"}),
        ([W3C_OTHER, (b"tracestate", b"a=b")], {b"l5d-ctx-trace", b"l5d-reqid", b"traceparent", b"tracestate"}),
        ([(b"traceparent", b"garbage")], {b"l5d-ctx-trace", b"l5d-reqid", b"traceparent"}),
    ]
    for incoming, want in cases:
        assert set(header_lines(r.begin(incoming).attempt("/#/x"))) == want, incoming
    assert {b"l5d-ctx-trace", b"l5d-sample", b"b3", b"traceparent", b"tracestate"} <= TRACE_HEADERS


def test_outgoing_context_is_a_child_of_the_server_span():
    t = router().begin([B3_OTHER, *MULTI_OTHER, W3C_OTHER])
    server_span = t.span_id
    out = header_lines(t.attempt("/#/x"))
    l5d = decode_l5d(out[b"l5d-ctx-trace"])
    sent = struct.unpack(">QQQQQ", base64.b64decode(out[b"l5d-ctx-trace"]))
    assert sent[1] == server_span and l5d.span_id != server_span  # parent = our server span
    assert (l5d.trace_hi, l5d.trace_id) == (0x80f198ee56343ba8, 0x64fe8b2a57d3eff7)
    assert out[b"b3"] == b"80f198ee56343ba864fe8b2a57d3eff7-%016x-0-%016x" % (l5d.span_id, server_span)
    assert out[b"x-b3-spanid"] == b"%016x" % l5d.span_id and out[b"x-b3-parentspanid"] == b"%016x" % server_span
    assert out[b"x-b3-sampled"] == b"0"
    assert out[b"traceparent"] == b"00-80f198ee56343ba864fe8b2a57d3eff7-%016x-00" % l5d.span_id
    assert out[b"l5d-reqid"] == b"64fe8b2a57d3eff7"


def test_each_attempt_is_a_new_client_span():
    t = router().begin()
    ids = {decode_l5d(header_lines(t.attempt("/#/x"))[b"l5d-ctx-trace"]).span_id for _ in range(5)}
    assert len(ids) == 5 and t.span_id not in ids


def test_two_routers_one_trace_across_formats():
    """Router A gets a B3 request and forwards; router B reads A's l5d-ctx-trace and x-b3
    headers: same (128-bit) trace, B's server span is a child of A's client span."""
    a = router().begin([(b"x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
                        (b"x-b3-spanid", b"a2fb4a1d1a96d312"), (b"x-b3-sampled", b"1")])
    hop = header_lines(a.attempt("/#/io.l5d.fs/web"))
    client_span = int(hop[b"x-b3-spanid"], 16)
    for order in ("io.l5d.default", "io.l5d.zipkin"):
        b = NO_TELEMETERS.router("b", propagator=order).begin(list(hop.items()))
        assert (b.trace_hi, b.trace_id) == (0x463ac35c9f6413ad, 0x48485a3953bb6124)
        assert b.parent_id == client_span and b.sampled is True
        assert header_lines(b.attempt("/#/x"))[b"x-b3-traceid"] == b"463ac35c9f6413ad48485a3953bb6124"


def test_l5d_sample_overrides_the_incoming_decision():
    r = router()
    assert r.begin([(b"x-b3-traceid", b"1111111111111111"), (b"x-b3-spanid", b"2222222222222222"),
                    (b"x-b3-sampled", b"0"), (b"l5d-sample", b"1.0")]).sampled is True
    assert r.begin([(b"l5d-ctx-trace", L5D_SAMPLED), (b"l5d-sample", b"0")]).sampled is False
    assert r.begin([(b"l5d-sample", b"junk")]).sampled is None
    assert r.begin([(b"l5d-ctx-trace", L5D_128_DEBUG), (b"l5d-sample", b"0")]).sampled is True  # debug wins


# --- hostile input -------------------------------------------------------------------------------

HUGE = b"9" * 200_000


@pytest.mark.parametrize("name", sorted(TRACE_HEADERS))
def test_huge_values_start_a_new_trace(name):
    t = router().begin([(name, HUGE)])
    assert t.parent_id is None
    out = header_lines(t.attempt("/#/x"))
    assert len(b"".join(out.values())) < 1024
    assert decode_l5d(out[b"l5d-ctx-trace"]).trace_id == t.trace_id


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(TRACE_HEADERS) + [b"other"]), st.binary(max_size=80)),
                max_size=8))
def test_any_header_bytes_give_a_usable_context(headers):
    t = router().begin(headers)
    out = header_lines(t.attempt("/#/x"))
    l5d = decode_l5d(out[b"l5d-ctx-trace"])
    assert l5d is not None and l5d.trace_id == t.trace_id and l5d.trace_hi == t.trace_hi
    for v in out.values():
        assert b"\r" not in v and b"\n" not in v
    if b"traceparent" in out:
        assert decode_traceparent(out[b"traceparent"]) is not None
    if b"b3" in out:
        assert decode_b3_single(out[b"b3"]) is not None


@settings(max_examples=200, deadline=None)
@given(span=st.integers(1, 2**64 - 1), parent=st.integers(0, 2**64 - 1), trace=st.integers(1, 2**64 - 1),
       hi=st.integers(0, 2**64 - 1), flags=st.integers(0, 2**63 - 1), sampled=st.sampled_from([None, True, False]))
def test_l5d_round_trip(span, parent, trace, hi, flags, sampled):
    inc = decode_l5d(encode_l5d(span, parent, trace, hi, flags, sampled))
    assert (inc.span_id, inc.trace_id, inc.trace_hi) == (span, trace, hi)
    assert inc.flags == flags & ~6
    assert inc.sampled == (True if flags & DEBUG else sampled)


def test_formats_mask_values_are_distinct():
    assert len({L5D, B3_SINGLE, B3_MULTI, W3C}) == 4
