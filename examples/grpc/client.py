#!/usr/bin/env python3
"""Calls the demo service through a router: ``python client.py --target 127.0.0.1:4142 [--ca CA.pem] CALL [TEXT]``.

CALL is one of ``say``, ``count``, ``collect``, ``chat``, ``fail``. Prints one line per
message received, then ``status OK`` (or the gRPC status and its details). ``--ca``: call
over TLS, trusting this CA (the target's host name is checked against the certificate).
"""
from __future__ import annotations

import argparse
import sys

import grpc

from stubs import load

pb, pb_grpc = load()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:4142")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--ca", help="call over TLS, trusting this CA certificate (PEM)")
    ap.add_argument("call", choices=["say", "count", "collect", "chat", "fail"])
    ap.add_argument("text", nargs="?", default="hello")
    args = ap.parse_args()
    if args.ca:
        with open(args.ca, "rb") as f:
            channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(args.target)
    with channel:
        stub = pb_grpc.EchoStub(channel)
        msgs = [pb.Msg(text=t) for t in args.text.split(",")]
        try:
            if args.call == "say":
                out = [stub.Say(msgs[0], timeout=args.timeout, metadata=(("x-who", "client.py"),))]
            elif args.call == "count":
                out = list(stub.Count(pb.Msg(text=args.text, n=3), timeout=args.timeout))
            elif args.call == "collect":
                out = [stub.Collect(iter(msgs), timeout=args.timeout)]
            elif args.call == "chat":
                out = list(stub.Chat(iter(msgs), timeout=args.timeout))
            else:
                out = [stub.Fail(pb.Msg(text=args.text, n=5), timeout=args.timeout)]
        except grpc.RpcError as e:
            print(f"status {e.code().name}: {e.details()}")
            return 1
    for m in out:
        print(m.text)
    print("status OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
