"""A tiny HTTP service for the ZooKeeper walkthrough (ping and pong are both this file).

    python service.py NAME PORT [--bind IP] [--peer PEER --router PORT] [--zk HOST:PORT]

GET /      answers "NAME (IP:PORT)"
GET /call  asks PEER through this host's *outgoing* router (Host: PEER) and answers
           "NAME -> <what PEER answered>", so one request shows the whole path:
           service -> outgoing router -> ZooKeeper serverset -> peer's incoming router -> peer.

Registration: either wrap the service with ``namerouter announce ... -- python service.py``
(ping does that in the walkthrough), or pass ``--zk`` and it registers itself with the
Python API, ``namerouter.announce.announce`` (pong does that).
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import signal
import sys


def make_handler(name: str, bind: str, port: int, peer: str | None, router_port: int | None):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"{name}/1"

        def _reply(self, status: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/call":
                self._call_peer()
            else:
                self._reply(200, f"{name} ({bind}:{port})")

        def _call_peer(self) -> None:
            if not peer or not router_port:
                self._reply(404, f"{name} has no peer to call (start it with --peer and --router)")
                return
            conn = http.client.HTTPConnection("127.0.0.1", router_port, timeout=10)
            try:
                # The logical name is the Host header: /svc/<peer> in the outgoing router.
                conn.request("GET", "/", headers={"Host": peer})
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace").strip()
                via = resp.getheader("Via", "")
            except OSError as e:
                self._reply(502, f"{name} -> {peer}: outgoing router on port {router_port} unreachable: {e}")
                return
            finally:
                conn.close()
            if resp.status != 200:
                self._reply(502, f"{name} -> {peer}: {resp.status} {text}")
                return
            self._reply(200, f"{name} -> {text}   [Via: {via}]")

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write(f"{name}: {self.address_string()} {fmt % args}\n")

    return Handler


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("port", type=int)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--peer", help="the other service's name (its Host header)")
    p.add_argument("--router", type=int, help="port of this host's outgoing router")
    p.add_argument("--zk", help="register with the Python API in ZooKeeper HOST:PORT")
    p.add_argument("--path", help="serverset path (default /discovery/NAME)")
    p.add_argument("--announce-host", help="address to register (default: --bind)")
    args = p.parse_args()

    # SIGTERM ends serve_forever like Ctrl-C does, so `with announce(...)` deregisters.
    signal.signal(signal.SIGTERM, _interrupt)

    server = http.server.ThreadingHTTPServer(
        (args.bind, args.port), make_handler(args.name, args.bind, args.port, args.peer, args.router))
    registration: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.zk:
        from namerouter.announce import announce

        registration = announce(args.zk, args.path or f"/discovery/{args.name}",
                                args.announce_host or args.bind, args.port)
    sys.stderr.write(f"{args.name}: listening on {args.bind}:{args.port}\n")
    try:
        with registration:  # listening already: registering now sends no one to a closed port
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.stderr.write(f"{args.name}: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
