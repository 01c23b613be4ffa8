"""``clearContext: true`` on an HTTP/2 server, as on HTTP/1.1 ones (Linkerd's
ClearMiscServerFilter; tests/test_parity_behaviours.py for HTTP/1.1): router-made answers
are the status only — no ``l5d-err``, no ``l5d-retryable``, no body; a gRPC call keeps
its ``grpc-status`` but gets a generic ``grpc-message`` — and no ``l5d-*`` field reaches
the client (the router's classification, a backend's headers and trailers). The same
router's server without clearContext explains as before. Real clients: curl with HTTP/2
prior knowledge and grpcio; real backends: examples/grpc/server.py and an h2 server.
"""
from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from namerouter.proxy.h2.config import H2ClassifierConfig, H2GlobalServiceConfig, H2IdentifierConfig, H2ServerConfig
from tests.support.h2 import GrpcServer, H2Backend, H2Harness, curl_h2, grpc_stubs
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

pb, pb_grpc = grpc_stubs()


def _servers() -> list[H2ServerConfig]:
    """servers[0]: clearContext; servers[1]: a plain one."""
    return [H2ServerConfig(port=free_port(), clearContext=True), H2ServerConfig(port=free_port())]


def _head_and_body(out: str) -> tuple[str, str]:
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    return head.lower(), body


async def test_http_answers_carry_the_status_only_and_no_l5d_field():
    async with H2Backend("web") as b, H2Harness(
            f"/svc/web => /$/inet/127.1/{b.port}; /svc/down => /$/inet/127.1/1", servers=_servers(),
            service=H2GlobalServiceConfig(responseClassifier=H2ClassifierConfig(kind="io.l5d.h2.nonRetryable5XX"))
    ) as h:
        hidden, plain = h.router.servers[0].port, h.router.servers[1].port
        for host in ("ghost", "down"):  # no route; a backend that refuses connections
            rc, out, err = await curl_h2("-i", "-H", f"Host: {host}", f"http://127.0.0.1:{hidden}/x")
            assert rc == 0, err
            head, body = _head_and_body(out)
            assert head.startswith("http/2 502"), out
            assert "l5d-" not in head and body == "", out
            rc, out, err = await curl_h2("-i", "-H", f"Host: {host}", f"http://127.0.0.1:{plain}/x")
            head, body = _head_and_body(out)
            assert rc == 0 and head.startswith("http/2 502") and "l5d-err: " in head and body, out
        # a relayed answer: the backend's l5d-* header and trailer and our classification are
        # dropped on the clearContext server only
        args = ("-i", "-H", "Host: web", "-H", "x-want-l5d: 1", "-H", "x-want-trailers: 1", "-H", "TE: trailers")
        rc, out, err = await curl_h2(*args, f"http://127.0.0.1:{plain}/echo")
        assert rc == 0 and "l5d-internal: from-backend" in out and "l5d-success-class" in out, out
        assert out.count("l5d-internal") == 2, out  # header and trailer
        rc, out, err = await curl_h2(*args, f"http://127.0.0.1:{hidden}/echo")
        assert rc == 0 and "x-backend: web" in out and "x-trailer: yes" in out, out
        assert "l5d-" not in out.split("\r\n\r\n", 1)[0].lower() and "l5d-internal:" not in out, out


async def _rpc_error(target: str) -> grpc.RpcError:
    def run() -> Any:
        with grpc.insecure_channel(target) as ch:
            try:
                pb_grpc.EchoStub(ch).Say(pb.Msg(text="x"), timeout=10)
            except grpc.RpcError as e:
                return e
        raise AssertionError("the call succeeded")
    return await asyncio.to_thread(run)


async def test_grpc_answers_keep_their_status_with_a_generic_message():
    ident = H2IdentifierConfig(kind="io.l5d.header.path", segments=1)
    async with GrpcServer("a") as srv, H2Harness("/svc/demo.Echo => /$/nil", identifier=ident,
                                                 servers=_servers()) as h:
        hidden, plain = h.router.servers[0].port, h.router.servers[1].port
        e = await _rpc_error(f"127.0.0.1:{hidden}")
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAVAILABLE, "Bad Gateway")
        assert not [k for k, _ in e.trailing_metadata() or () if k.startswith("l5d-")], e.trailing_metadata()
        e = await _rpc_error(f"127.0.0.1:{plain}")
        assert e.code() == grpc.StatusCode.UNAVAILABLE and "No hosts are available for /svc/demo.Echo" in e.details()
        assert [k for k, _ in e.trailing_metadata() or () if k == "l5d-err"], e.trailing_metadata()
