#!/usr/bin/env python3
"""The demo gRPC service (grpcio): ``python server.py --port 50051 [--name a] [--unavailable N] [--tls CERT KEY]``.

``--unavailable N``: the first N ``Say`` calls fail with UNAVAILABLE (a flaky backend,
to see the router retry them). ``Say`` with ``n`` < 0 sleeps -n ms first (deadlines).
``--tls CERT KEY``: serve gRPC over TLS (HTTP/2 negotiated by ALPN) with this certificate
chain and key (PEM files). Prints ``listening <port>`` when ready.
"""
from __future__ import annotations

import argparse
import threading
import time
from concurrent import futures

import grpc

from stubs import load

pb, pb_grpc = load()


class Echo(pb_grpc.EchoServicer):
    def __init__(self, name: str, unavailable: int) -> None:
        self.name = name
        self.unavailable = unavailable
        self.calls = 0
        self.lock = threading.Lock()

    def Say(self, request, context):
        with self.lock:
            self.calls += 1
            n = self.calls
        if n <= self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is warming up (call {n})")
        if request.n < 0:
            time.sleep(-request.n / 1000.0)
        md = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-served-by", self.name),))
        who = md.get("x-who", "")
        return pb.Msg(text=f"{self.name}: {request.text}{' from ' + who if who else ''}", n=n,
                      data=md.get("l5d-dst-service", "").encode())

    def Count(self, request, context):
        for i in range(request.n):
            yield pb.Msg(text=f"{request.text} {i}", n=i, data=request.data)

    def Collect(self, request_iterator, context):
        texts = [m.text for m in request_iterator]
        return pb.Msg(text=",".join(texts), n=len(texts))

    def Chat(self, request_iterator, context):
        for m in request_iterator:
            yield pb.Msg(text=f"{self.name} heard {m.text}", n=m.n)

    def Fail(self, request, context):
        context.abort(grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == request.n)), request.text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument("--name", default="echo")
    ap.add_argument("--unavailable", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve over TLS with this certificate and key")
    args = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_EchoServicer_to_server(Echo(args.name, args.unavailable), server)
    if args.tls:
        with open(args.tls[0], "rb") as c, open(args.tls[1], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(f"127.0.0.1:{args.port}", creds)
    else:
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
