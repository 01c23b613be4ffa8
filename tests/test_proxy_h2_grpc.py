"""gRPC through an h2 router: grpcio (the reference implementation) on both ends.

The service is examples/grpc/server.py (a subprocess); the client is grpcio in a worker
thread, while the router runs on this test's uvloop loop. Names come from the call's
``:path`` (``io.l5d.header.path`` with one segment: ``/svc/demo.Echo``).
"""
from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from namerouter.proxy.h2.config import H2ClassifierConfig, H2GlobalServiceConfig, H2IdentifierConfig
from namerouter.proxy.h2.config import RetryBufferSizeConfig
from tests.support.h2 import GrpcServer, H2Backend, H2Harness, curl_h2, grpc_stubs

pytestmark = pytest.mark.integration

pb, pb_grpc = grpc_stubs()
PATH_ID = H2IdentifierConfig(kind="io.l5d.header.path", segments=1)


def grpc_default(**kw: Any) -> H2GlobalServiceConfig:
    return H2GlobalServiceConfig(responseClassifier=H2ClassifierConfig(kind="io.l5d.h2.grpc.default"), **kw)


async def call(target: str, fn: Any) -> Any:
    """Run ``fn(stub)`` on a fresh channel in a thread (grpcio is blocking)."""
    def run() -> Any:
        with grpc.insecure_channel(target) as ch:
            return fn(pb_grpc.EchoStub(ch))
    return await asyncio.to_thread(run)


async def rpc_error(target: str, fn: Any) -> grpc.RpcError:
    def run() -> Any:
        with grpc.insecure_channel(target) as ch:
            try:
                fn(pb_grpc.EchoStub(ch))
            except grpc.RpcError as e:
                return e
        raise AssertionError("the call succeeded")
    return await asyncio.to_thread(run)


async def test_all_four_kinds_of_call_metadata_and_trailers():
    async with GrpcServer("a") as srv, H2Harness(f"/svc/demo.Echo => /$/inet/127.1/{srv.port}",
                                                 identifier=PATH_ID) as h:
        def unary(stub: Any) -> Any:
            return stub.Say.with_call(pb.Msg(text="hi"), timeout=10, metadata=(("x-who", "test"),))
        reply, c = await call(h.target, unary)
        assert reply.text == "a: hi from test"
        assert reply.data == b"/svc/demo.Echo"  # l5d-dst-service as the backend saw it
        assert ("x-served-by", "a") in c.trailing_metadata()
        assert dict(c.initial_metadata()).get("via") == "h2 linkerd"

        got = await call(h.target, lambda s: [m.text for m in s.Count(pb.Msg(text="n", n=50), timeout=10)])
        assert got == [f"n {i}" for i in range(50)]
        got = await call(h.target, lambda s: s.Collect(iter([pb.Msg(text=str(i)) for i in range(20)]), timeout=10))
        assert (got.text, got.n) == (",".join(str(i) for i in range(20)), 20)
        got = await call(h.target, lambda s: [m.text for m in s.Chat(iter([pb.Msg(text=t) for t in "xyz"]),
                                                                        timeout=10)])
        assert got == ["a heard x", "a heard y", "a heard z"]
        assert h.metric("rt/h2/service/svc/demo.Echo/requests") == 4
        assert h.metric("rt/h2/server/127.0.0.1/%d/stream/stream_success" % h.port) == 4


async def test_trailers_only_errors_and_deadlines_pass_through():
    async with GrpcServer("a") as srv, H2Harness(f"/svc/demo.Echo => /$/inet/127.1/{srv.port}",
                                                 identifier=PATH_ID, service=grpc_default()) as h:
        e = await rpc_error(h.target, lambda s: s.Fail(pb.Msg(text="no such thing", n=5), timeout=10))
        assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing")
        e = await rpc_error(h.target, lambda s: s.Say(pb.Msg(text="slow", n=-3000), timeout=0.3))
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # NOT_FOUND (5) is a failure for the gRPC classifier although the HTTP status is 200
        assert h.metric("rt/h2/service/svc/demo.Echo/failures") >= 1
        assert h.metric("rt/h2/service/svc/demo.Echo/status/200") >= 1


async def test_router_made_failures_answer_as_grpc_expects():
    async with H2Harness("/svc/demo.Echo => /$/nil", identifier=PATH_ID) as h:
        e = await rpc_error(h.target, lambda s: s.Say(pb.Msg(text="x"), timeout=10))
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert "No hosts are available for /svc/demo.Echo" in e.details()
        assert h.metric(f"rt/h2/server/127.0.0.1/{h.port}/failures") == 1
    dead = 1  # nothing listens on port 1
    async with H2Harness(f"/svc/demo.Echo => /$/inet/127.1/{dead}", identifier=PATH_ID) as h:
        e = await rpc_error(h.target, lambda s: s.Say(pb.Msg(text="x"), timeout=10))
        assert e.code() == grpc.StatusCode.UNAVAILABLE and "unable to connect" in e.details()
    async with H2Harness("/svc => /$/inet/127.1/1", identifier=H2IdentifierConfig(kind="io.l5d.header.path",
                                                                                  segments=3)) as h:
        e = await rpc_error(h.target, lambda s: s.Say(pb.Msg(text="x"), timeout=10))
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED and "segment" in e.details()


async def test_unavailable_is_retried_under_grpc_default():
    async with GrpcServer("flaky", unavailable=2) as srv, H2Harness(
            f"/svc/demo.Echo => /$/inet/127.1/{srv.port}", identifier=PATH_ID, service=grpc_default()) as h:
        reply = await call(h.target, lambda s: s.Say(pb.Msg(text="hi"), timeout=10))
        assert reply.text == "flaky: hi" and reply.n == 3  # the third call the backend saw
        assert h.metric("rt/h2/service/svc/demo.Echo/retries/total") == 2
        assert h.metric("rt/h2/service/svc/demo.Echo/success") == 1
        assert h.metric(f"rt/h2/client/$/inet/127.1/{srv.port}/requests") == 3


async def test_without_a_retrying_classifier_unavailable_reaches_the_client():
    async with GrpcServer("flaky", unavailable=1) as srv, H2Harness(
            f"/svc/demo.Echo => /$/inet/127.1/{srv.port}", identifier=PATH_ID,
            service=H2GlobalServiceConfig(responseClassifier=H2ClassifierConfig(
                kind="io.l5d.h2.grpc.neverRetryable"))) as h:
        e = await rpc_error(h.target, lambda s: s.Say(pb.Msg(text="hi"), timeout=10))
        assert e.code() == grpc.StatusCode.UNAVAILABLE and "warming up" in e.details()
        assert h.metric("rt/h2/service/svc/demo.Echo/retries/total") == 0


async def test_a_request_larger_than_the_retry_buffer_is_not_retried():
    svc = grpc_default(retryBufferSize=RetryBufferSizeConfig(requestBytes=1024, responseBytes=1024))
    async with GrpcServer("flaky", unavailable=1) as srv, H2Harness(
            f"/svc/demo.Echo => /$/inet/127.1/{srv.port}", identifier=PATH_ID, service=svc) as h:
        e = await rpc_error(h.target, lambda s: s.Say(pb.Msg(text="x" * 4096), timeout=10))
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert h.metric("rt/h2/service/svc/demo.Echo/retries/total") == 0
        assert h.metric("rt/h2/service/svc/demo.Echo/retries/request_stream_too_long") == 1
        # a small one is retried
        reply = await call(h.target, lambda s: s.Say(pb.Msg(text="small"), timeout=10))
        assert reply.text == "flaky: small"


async def test_streamed_responses_beyond_the_response_buffer_are_relayed_not_held():
    svc = grpc_default(retryBufferSize=RetryBufferSizeConfig(responseBytes=100), classificationTimeoutMs=60_000)
    async with GrpcServer("a") as srv, H2Harness(f"/svc/demo.Echo => /$/inet/127.1/{srv.port}",
                                                 identifier=PATH_ID, service=svc) as h:
        got = await call(h.target, lambda s: [m.n for m in s.Count(pb.Msg(text="y" * 50, n=40), timeout=20)])
        assert got == list(range(40))
        assert h.metric("rt/h2/service/svc/demo.Echo/retries/response_stream_too_long") == 1


async def test_bidi_ping_pong_needs_full_duplex():
    """Each message is sent only after the reply to the previous one arrived: the request
    keeps streaming while the response streams (the router relays both ways at once)."""
    import queue

    async with GrpcServer("a") as srv, H2Harness(f"/svc/demo.Echo => /$/inet/127.1/{srv.port}",
                                                 identifier=PATH_ID, service=grpc_default()) as h:
        def ping_pong(stub: Any) -> list[str]:
            replies: "queue.Queue[str]" = queue.Queue()

            def requests() -> Any:
                for i in range(5):
                    yield pb.Msg(text=f"ping {i}")
                    assert replies.get(timeout=5) == f"a heard ping {i}"

            out = []
            for m in stub.Chat(requests(), timeout=15):
                out.append(m.text)
                replies.put(m.text)
            return out

        for _ in range(3):
            assert await call(h.target, ping_pong) == [f"a heard ping {i}" for i in range(5)]


async def test_grpc_status_in_trailers_classifies_the_stream():
    """A response relayed before its class is known is classified by the ``grpc-status`` of
    its trailers (or as a failure when it ends without one): metrics count it so."""
    never = H2GlobalServiceConfig(responseClassifier=H2ClassifierConfig(kind="io.l5d.h2.grpc.neverRetryable"))
    async with H2Backend("g") as b, H2Harness(f"/svc/g => /$/inet/127.1/{b.port}", service=never) as h:
        for code in ("0", "5", "none", "0"):
            rc, out, err = await curl_h2("-H", "Host: g", "-H", "content-type: application/grpc", "-H", "te: trailers",
                                         "--data-binary", "\x00\x00\x00\x00\x00", f"http://{h.target}/grpc/{code}")
            assert rc == 0, err
        assert h.metric("rt/h2/service/svc/g/requests") == 4
        assert h.metric("rt/h2/service/svc/g/success") == 2
        assert h.metric("rt/h2/service/svc/g/failures") == 2
        assert h.metric("rt/h2/service/svc/g/status/200") == 4
