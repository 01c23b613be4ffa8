"""The tracer: sampling decisions (Linkerd's rules), the spans a sampled request leaves,
and that an unsampled request makes no span at all."""
from __future__ import annotations

import random

import pytest

import namerouter.tracing.tracer as tracer_mod
from namerouter.tracing.propagation import decode_l5d, encode_l5d
from namerouter.tracing.sampler import Sampler
from namerouter.tracing.span import CLIENT, SERVER
from namerouter.tracing.tracer import DECIDES, FOLLOWS, NO_TELEMETERS, OWN, TraceTelemeter, Tracer


class Sink(TraceTelemeter):
    """A telemeter that keeps what it is given."""

    def __init__(self, rate: float, mode: str = DECIDES, kind: str = "sink") -> None:
        super().__init__(rate)
        self.mode = mode
        self.kind = kind
        self.records = []

    def record(self, rec) -> None:
        self.records.append(rec)


def b3(sampled: bytes):
    return [(b"x-b3-traceid", b"1111111111111111"), (b"x-b3-spanid", b"2222222222222222"), (b"x-b3-sampled", sampled)]


def hdr(block: bytes, name: bytes) -> bytes:
    for line in block.split(b"\r\n"):
        if line.lower().startswith(name + b": "):
            return line.split(b": ", 1)[1]
    raise KeyError(name)


# --- sampler ----------------------------------------------------------------------------------

def test_sampler_is_a_function_of_the_trace_id():
    s = Sampler(0.3)
    rng = random.Random(7)
    ids = [rng.getrandbits(64) for _ in range(20_000)]
    first = [s(i) for i in ids]
    assert first == [s(i) for i in ids]  # same id, same answer
    assert 0.27 < sum(first) / len(ids) < 0.33
    assert not any(Sampler(0)(i) for i in ids[:1000]) and all(Sampler(1)(i) for i in ids[:1000])
    assert Sampler(5).rate == 1.0 and Sampler(-1).rate == 0.0
    # Linkerd's formula: abs(id ^ salt) % 10000 < rate * 10000, ids as signed longs
    assert Sampler(0.5)(0, salt=4999) and not Sampler(0.5)(0, salt=5000)
    assert Sampler(0.5)((1 << 64) - 4999, salt=0)  # -4999 as a long: abs → 4999


# --- decisions -------------------------------------------------------------------------------------

def test_no_telemeters_no_spans_but_a_context():
    t = NO_TELEMETERS.router("r").begin(b3(b"1"))
    assert not t.recording and t.span is None
    t.routed("/svc/web")
    block = t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8080)
    t.attempt_done(200)
    t.finish(200)
    assert decode_l5d(hdr(block, b"l5d-ctx-trace")).trace_id == 0x1111111111111111


def test_unsampled_requests_allocate_no_span(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a span was made for an unsampled request")

    monkeypatch.setattr(tracer_mod, "Span", boom)
    monkeypatch.setattr(tracer_mod, "Endpoint", boom)
    tr = Tracer([Sink(0.0), Sink(0.0, FOLLOWS), Sink(0.0, OWN)])
    r = tr.router("r", dtab="/svc=>/#/io.l5d.fs")
    for headers in (None, b3(b"0"), [(b"l5d-sample", b"0")]):
        t = r.begin(headers, remote=("127.0.0.1", 5000), local=("127.0.0.1", 4140), method=b"GET", uri=b"/")
        assert not t.recording
        t.routed("/svc/web", "/svc=>/x")
        t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8080)
        t.attempt_done(503, "boom", True)
        t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8081, retry=True)
        t.attempt_done(200)
        t.tag("k", "v")
        t.finish(200)


def test_deciding_telemeters_decide_deferred_traces_and_the_decision_travels():
    sink = Sink(1.0)
    r = Tracer([sink]).router("r")
    t = r.begin()
    assert t.sampled is True and t.recording
    assert decode_l5d(hdr(t.attempt("/#/x"), b"l5d-ctx-trace")).sampled is True
    t = Tracer([Sink(0.0)]).router("r").begin()
    assert t.sampled is False and not t.recording
    assert decode_l5d(hdr(t.attempt("/#/x"), b"l5d-ctx-trace")).sampled is False


def test_the_highest_decider_rate_decides():
    low, high = Sink(0.0), Sink(1.0)
    t = Tracer([low, high]).router("r").begin()
    t.finish(200)
    assert len(low.records) == len(high.records) == 1  # Finagle: once sampled, every tracer records


def test_incoming_decisions_are_kept():
    sink = Sink(1.0)
    r = Tracer([sink]).router("r")
    assert not r.begin(b3(b"0")).recording
    sink0 = Sink(0.0)
    assert Tracer([sink0]).router("r").begin(b3(b"1")).recording
    assert Tracer([sink0]).router("r").begin([(b"x-b3-traceid", b"1111111111111111"),
                                              (b"x-b3-spanid", b"2222222222222222"),
                                              (b"x-b3-flags", b"1")]).recording  # debug


def test_l5d_sample_forces_a_rate():
    sink = Sink(0.0)
    r = Tracer([sink]).router("r")
    assert r.begin([(b"l5d-sample", b"1.0")]).recording
    assert not Tracer([Sink(1.0)]).router("r").begin(b3(b"1") + [(b"l5d-sample", b"0.0")]).recording


def test_follower_and_own_rates():
    follow, own = Sink(1.0, FOLLOWS), Sink(1.0, OWN)
    r = Tracer([follow, own]).router("r")
    r.begin().finish(200)  # nobody decided: both use their own rate (1.0)
    r.begin(b3(b"0")).finish(200)  # decided "no": tracelog follows, recentRequests does not
    assert len(follow.records) == 1 and len(own.records) == 2
    follow0 = Sink(0.0, FOLLOWS)
    Tracer([follow0]).router("r").begin(b3(b"1")).finish(200)  # decided "yes": followed
    assert len(follow0.records) == 1


# --- spans -------------------------------------------------------------------------------------------

def test_spans_of_a_request_with_a_requeue_and_a_retry():
    sink = Sink(1.0)
    r = Tracer([sink]).router("outgoing", dtab="/svc=>/#/io.l5d.fs")
    t = r.begin(b3(b"1"), remote=("10.0.0.9", 51000), local=("127.0.0.1", 4140), method=b"GET",
                uri=b"/users/1?x=2", host=b"web")
    t.routed("/svc/web", "/svc/web=>/#/io.l5d.fs/web2")
    h1 = t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8080)
    t.attempt_done(None, "connection refused", True)
    h2 = t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8081)
    t.attempt_done(503, "503 Service Unavailable", True)
    h3 = t.attempt("/#/io.l5d.fs/web", "/", "127.0.0.1", 8080, retry=True)
    t.attempt_done(200)
    t.finish(200)
    t.finish(500)  # a second finish changes nothing
    assert len(sink.records) == 1
    rec = sink.records[0]
    s = rec.server
    assert s.kind == SERVER and s.name == "/svc/web" and s.parent_id == 0x2222222222222222
    assert (s.trace_id, s.trace_hi) == (0x1111111111111111, 0)
    assert (s.local.service, s.local.host, s.local.port) == ("outgoing", "127.0.0.1", 4140)
    assert (s.remote.host, s.remote.port) == ("10.0.0.9", 51000)
    assert s.tags["router.label"] == "outgoing" and s.tags["service"] == "/svc/web"
    assert s.tags["dtab.base"] == "/svc=>/#/io.l5d.fs" and s.tags["dtab.local"] == "/svc/web=>/#/io.l5d.fs/web2"
    assert s.tags["http.uri"] == "/users/1?x=2" and s.tags["http.path"] == "/users/1"
    assert s.tags["http.req.method"] == "GET" and s.tags["http.req.host"] == "web"
    assert s.tags["http.rsp.status"] == "200" and s.tags["l5d.success"] == "1.0"
    assert s.duration_us >= 1 and s.status == 200 and s.error is None
    assert len(rec.attempts) == 3
    for a, h in zip(rec.attempts, (h1, h2, h3)):
        assert a.kind == CLIENT and a.parent_id == s.id and a.trace_id == s.trace_id
        assert decode_l5d(hdr(h, b"l5d-ctx-trace")).span_id == a.id  # the next hop's parent
        assert hdr(h, b"x-b3-spanid") == b"%016x" % a.id
        assert a.tags["client"] == "/#/io.l5d.fs/web" and a.tags["clnt/namer.path"] == "/svc/web"
        assert a.remote.service == "/#/io.l5d.fs/web" and a.local.service == "outgoing"
    a1, a2, a3 = rec.attempts
    assert a1.error == "connection refused" and "http.rsp.status" not in a1.tags
    assert [v for _, v in a1.annotations] == ["l5d.retryable"]
    assert a2.tags["clnt/requeue_attempt"] == "1" and a2.tags["http.rsp.status"] == "503"
    assert a3.tags["clnt/retry_attempt"] == "2" and [v for _, v in a3.annotations] == ["finagle.retry"]
    assert a3.tags["l5d.success"] == "1.0" and a3.remote.port == 8080


def test_failures_and_unfinished_attempts():
    sink = Sink(1.0)
    t = Tracer([sink]).router("r").begin()
    t.attempt("/#/x", host="127.0.0.1", port=1)
    t.finish(504, "request timed out", retryable=False)  # the attempt was still open
    rec = sink.records[0]
    assert rec.server.error == "request timed out" and rec.server.tags["error"] == "request timed out"
    assert [v for _, v in rec.server.annotations] == ["l5d.failure"]
    assert rec.attempts[0].finished and rec.attempts[0].error == "request timed out"


def test_a_router_made_answer_has_only_a_server_span():
    sink = Sink(1.0)
    t = Tracer([sink]).router("r").begin(method="GET", uri="/")
    t.finish(400, "unidentified request")
    assert sink.records[0].attempts == [] and sink.records[0].server.name == "get"


def test_a_failing_telemeter_does_not_fail_the_request(caplog):
    class Broken(Sink):
        def record(self, rec):
            raise RuntimeError("broken sink")

    good = Sink(1.0)
    Tracer([Broken(1.0), good]).router("r").begin().finish(200)
    assert len(good.records) == 1 and "broken sink" in caplog.text


def test_tags_are_bounded():
    sink = Sink(1.0)
    t = Tracer([sink]).router("r").begin(uri=b"/" + b"a" * 100_000)
    t.finish(200)
    assert len(sink.records[0].server.tags["http.uri"]) <= 1024


def test_hooks_after_finish_leave_the_delivered_spans_alone():
    sink = Sink(1.0)
    t = Tracer([sink]).router("r").begin()
    t.finish(200)
    rec = sink.records[0]
    before = (dict(rec.server.tags), len(rec.attempts), rec.server.name)
    t.routed("/svc/late")
    t.tag("late", "yes")
    block = t.attempt("/#/late")  # still gives the headers
    t.attempt_done(500, "late")
    t.finish(500, "again")
    assert (dict(rec.server.tags), len(rec.attempts), rec.server.name) == before
    assert b"l5d-ctx-trace: " in block and len(sink.records) == 1


@pytest.mark.parametrize("hi", [0, 0x4bf92f3577b34da6])
def test_debug_and_128_bit_traces_are_kept(hi):
    sink = Sink(0.0)
    value = encode_l5d(5, 6, 7, hi, 1, None)  # debug flag
    t = Tracer([sink]).router("r").begin([(b"l5d-ctx-trace", value)])
    t.finish(200)
    s = sink.records[0].server
    assert s.debug and s.trace_hi == hi and s.trace_id == 7 and s.parent_id == 5
