"""HTTP/2 test support: an h2 router harness, the gRPC example's server, a small HTTP/2
backend and a raw HTTP/2 client for the protocol attacks.

The backend and the raw client are written on the ``h2`` package (python-hyper) — the
same framing library as the router, but driven independently here — and on hyperframe
for frames ``h2`` refuses to send (the attacks). Real servers and clients are used
wherever the tests need them (grpcio, nghttpd, curl, nghttp).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Optional

import h2.config
import h2.connection
import h2.events

from .ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRPC_EXAMPLE = os.path.join(ROOT, "examples", "grpc")


class H2Harness:
    """A real h2 router (HttpRouter with an H2RouterConfig) on a free port."""

    def __init__(self, dtab: str, servers: Any = None, **fields: Any) -> None:
        from namerouter.metrics import MetricsRegistry
        from namerouter.naming.interpreter import DefaultInterpreter
        from namerouter.proxy import HttpRouter
        from namerouter.proxy.h2.config import H2RouterConfig, H2ServerConfig

        self.metrics = MetricsRegistry()
        self.interpreter = DefaultInterpreter(namers=[])
        if servers is None:
            servers = [H2ServerConfig(port=free_port())]
        fields.setdefault("label", "h2")
        self.config = H2RouterConfig(dtab=dtab, servers=servers, **fields)
        self.router = HttpRouter(self.config, self.interpreter, self.metrics)

    @property
    def port(self) -> int:
        return self.router.servers[0].port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metric(self, name: str) -> Any:
        m = self.metrics.snapshot().get(name)
        if m is None:
            return None
        return getattr(m, "value", m)

    async def __aenter__(self) -> "H2Harness":
        await self.router.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.router.close(2.0)


class GrpcServer:
    """examples/grpc/server.py in a subprocess (grpcio, the reference implementation)."""

    def __init__(self, name: str = "echo", unavailable: int = 0, tls: Optional[tuple[str, str]] = None) -> None:
        self.port = free_port()
        self.args = ["--port", str(self.port), "--name", name, "--unavailable", str(unavailable)]
        if tls is not None:  # (certificate chain, key): gRPC over TLS
            self.args += ["--tls", *tls]
        self.proc: Optional[asyncio.subprocess.Process] = None

    async def __aenter__(self) -> "GrpcServer":
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.join(GRPC_EXAMPLE, "server.py"), *self.args, cwd=GRPC_EXAMPLE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)  # type: ignore[union-attr]
        assert line.startswith(b"listening"), line
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def grpc_stubs() -> tuple[Any, Any]:
    """(echo_pb2, echo_pb2_grpc) of the example's echo.proto."""
    if GRPC_EXAMPLE not in sys.path:
        sys.path.insert(0, GRPC_EXAMPLE)
    from stubs import load  # type: ignore[import-not-found]

    return load()


# --- a small HTTP/2 backend ---------------------------------------------------------------

class _BackendConn(asyncio.Protocol):
    """One connection of :class:`H2Backend` (see its docstring for the paths)."""

    def __init__(self, backend: "H2Backend") -> None:
        self.backend = backend
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.transport: Any = None
        self.reqs: dict[int, dict] = {}
        self.sending: dict[int, int] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.backend.conns.append(self)
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except Exception:
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.reqs[ev.stream_id] = {"headers": [(n.decode(), v.decode()) for n, v in ev.headers],
                                           "body": b"", "trailers": None}
                self.backend.requests.append(self.reqs[ev.stream_id])
                path = dict(ev.headers).get(b":path", b"")
                if path.startswith(b"/early"):  # answer before the request ends
                    self._respond(ev.stream_id, early=True)
            elif isinstance(ev, h2.events.DataReceived):
                self.reqs[ev.stream_id]["body"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                self.reqs[ev.stream_id]["trailers"] = [(n.decode(), v.decode()) for n, v in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                self._respond(ev.stream_id)
            elif isinstance(ev, h2.events.WindowUpdated):
                self._pump()
        self.transport.write(self.conn.data_to_send())

    def _respond(self, sid: int, early: bool = False) -> None:
        req = self.reqs.get(sid)
        if req is None or req.get("answered"):
            return
        req["answered"] = True
        headers = dict(req["headers"])
        path = headers[":path"]
        if path.startswith("/reset"):
            code = int(headers.get("x-reset-code", "2"))
            if path.startswith("/reset-mid"):
                self.conn.send_headers(sid, [(":status", "200")])
                self.conn.send_data(sid, b"partial")
            self.conn.reset_stream(sid, code)
            return
        if path.startswith("/goaway"):
            self.conn.close_connection(last_stream_id=max(0, sid - 2))
            return
        if path.startswith("/status/"):
            self.conn.send_headers(sid, [(":status", path.split("/")[2])], end_stream=True)
            return
        if path.startswith("/grpc/"):  # /grpc/<code>: a gRPC answer with grpc-status <code> in
            # trailers after a message ("none": the stream ends without trailers)
            code = path.split("/")[2]
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            self.conn.send_data(sid, b"\x00\x00\x00\x00\x02hi", end_stream=code == "none")
            if code != "none":
                self.conn.send_headers(sid, [("grpc-status", code), ("grpc-message", "from trailers")],
                                       end_stream=True)
            return
        if path.startswith("/bytes/"):  # /bytes/<n>: n bytes, sent as the window allows
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream")])
            self.sending[sid] = int(path.split("/")[2])
            self._pump()
            return
        body = json.dumps({"headers": req["headers"], "body_len": len(req["body"]),
                           "trailers": req["trailers"], "early": early}).encode()
        trailers = "x-want-trailers" in headers
        l5d = [("l5d-internal", "from-backend")] if "x-want-l5d" in headers else []  # clearContext tests
        self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                     ("x-backend", self.backend.name), *l5d])
        self.conn.send_data(sid, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(sid, [("x-trailer", "yes"), ("x-checksum", str(len(req["body"]))), *l5d],
                                   end_stream=True)

    def _pump(self) -> None:
        chunk = b"x" * 16384
        for sid in list(self.sending):
            left = self.sending[sid]
            while left > 0:
                try:
                    window = self.conn.local_flow_control_window(sid)
                except Exception:
                    left = 0
                    break
                n = min(left, window, len(chunk), self.conn.max_outbound_frame_size)
                if n <= 0:
                    break
                left -= n
                self.conn.send_data(sid, chunk[:n], end_stream=left == 0)
                if self.transport.get_write_buffer_size() > 1 << 20:
                    break
            if left <= 0:
                del self.sending[sid]
            else:
                self.sending[sid] = left

    def resume_writing(self) -> None:
        self._pump()
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self in self.backend.conns:
            self.backend.conns.remove(self)


class H2Backend:
    """An HTTP/2 server (h2c prior knowledge). Paths: ``/echo…`` answers JSON with the
    request's headers, body length and trailers (response trailers when the request has
    ``x-want-trailers``; an ``l5d-internal`` header and trailer with ``x-want-l5d``); ``/early…`` answers before the request ends; ``/reset…``
    resets the stream (``x-reset-code``), ``/reset-mid…`` after a head and some data;
    ``/status/<n>``; ``/grpc/<code>`` a gRPC answer whose ``grpc-status`` comes in
    trailers (``none``: no trailers); ``/bytes/<n>`` streams n bytes within the flow-control windows;
    ``/goaway`` sends GOAWAY refusing this stream. ``ssl``: a server context (HTTP/2 over
    TLS; give it ALPN ``h2``)."""

    def __init__(self, name: str = "h2", ssl: Any = None) -> None:
        self.name = name
        self.ssl = ssl
        self.port = free_port()
        self.requests: list[dict] = []
        self.conns: list[_BackendConn] = []
        self.server: Any = None

    @property
    def last(self) -> dict:
        return self.requests[-1]

    async def __aenter__(self) -> "H2Backend":
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _BackendConn(self), "127.0.0.1", self.port, ssl=self.ssl)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()
        for c in list(self.conns):
            c.transport.close()
        await self.server.wait_closed()


def header(req: dict, name: str) -> Optional[str]:
    for n, v in req["headers"]:
        if n == name:
            return v
    return None


async def curl_h2(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """curl with HTTP/2 prior knowledge; (returncode, stdout, stderr)."""
    p = await asyncio.create_subprocess_exec("curl", "-sS", "--http2-prior-knowledge", "--max-time", str(timeout),
                                             *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    return p.returncode or 0, out.decode("latin-1"), err.decode("latin-1")


# --- a raw HTTP/2 client (for the attacks) ------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RawH2:
    """A TCP connection to the router that sends whatever bytes a test wants and reads
    the frames the router answers (parsed by hyperframe)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: Any = None
        self.writer: Any = None
        self.buf = b""

    async def __aenter__(self) -> "RawH2":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.writer.close()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frames(self, timeout: float = 5.0) -> list[Any]:
        """Every frame until the router closes the connection or goes quiet for ``timeout``."""
        from hyperframe.frame import Frame

        out = []
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except asyncio.TimeoutError:
                break
            if not data:
                break
            self.buf += data
            while len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                f.parse_body(memoryview(self.buf[9:9 + length]))
                out.append(f)
                self.buf = self.buf[9 + length:]
        return out

    async def until(self, pred: Any, timeout: float = 10.0) -> Any:
        """Read frames until ``pred(frame)`` holds for one (returned); None on close/timeout."""
        from hyperframe.frame import Frame

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                f.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                if pred(f):
                    return f
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                return None
            if not data:
                return None
            self.buf += data


def client_h2() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    return c
