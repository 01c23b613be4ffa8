"""gRPC over HTTP/2 with grpclib, tuned for Linkerd 1's peers and for hostile ones.

Serving (:class:`GrpcServer`): services are plain objects whose methods are named as in
the ``.proto`` service (``GetBoundTree``, ``StreamBoundTree`` ...). A unary method is
``async def M(self, request) -> reply``; a server-streaming one returns an async
iterator of replies. They raise :class:`grpclib.exceptions.GRPCError` for a status
other than OK; any other exception becomes ``INTERNAL`` with its message (Linkerd's
namerd does the same) and is logged.

What grpclib alone would not do, and why:

* **No ``te: trailers`` required.** Linkerd 1's gRPC runtime sends ``content-type:
  application/grpc+proto`` and no ``te`` header; grpclib answers such requests with 400.
  The connection handler adds the header before grpclib looks.
* **Bounded requests.** grpclib reads a message of whatever length its 5-byte prefix
  claims. Here a request longer than ``max_message_bytes`` is refused with
  ``RESOURCE_EXHAUSTED`` before its body is read, and all requests being read at once
  share a byte budget, so many streams cannot add up to unbounded memory.
* **Malformed messages** answer ``INTERNAL`` ("error parsing request proto", as gRPC
  libraries do); unknown methods ``UNIMPLEMENTED`` (grpclib). Each is logged as one
  line (rate-limited), never a traceback, and the connection keeps serving.
* **Many streams per connection.** A router multiplexes one stream per name and per
  bound id on one connection; HTTP/2's default limit of 100 would stall the 101st
  watch, so the server advertises ``max_streams`` (Linkerd's namerd: unlimited).
"""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Callable, Iterable, Optional

import h2.settings
from google.protobuf.message import DecodeError
from grpclib.const import Cardinality, Handler as MethodHandler, Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol
from grpclib.server import Handler, Server, Stream

from ..ratelog import RateLimitedLog

log = logging.getLogger(__name__)
# grpclib logs every stream a client cancels at INFO; for namerd that is every watch a
# router closes. Keep its warnings and errors.
logging.getLogger("grpclib.server").setLevel(logging.WARNING)

#: Largest request message accepted (a BindReq carries the router's dtab: a few KB).
MAX_MESSAGE_BYTES = 1024 * 1024
#: All request bodies being read at one time, across connections.
READ_BUDGET_BYTES = 64 * 1024 * 1024
#: Concurrent streams one client connection may hold open (one per watched name/id).
MAX_STREAMS = 10_000
#: Inbound flow-control windows: requests are small; keep what a peer may push unread small.
STREAM_WINDOW = 64 * 1024
CONNECTION_WINDOW = 1024 * 1024


bad_input_log = RateLimitedLog(log)


class BadRequest(GRPCError):
    """A client sent something wrong: answered with this status and logged as one line."""


class _ReadBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


async def read_request(stream: Stream[Any, Any], request_type: type, max_bytes: int, budget: _ReadBudget,
                       method: str) -> Any:
    """The one request message of a unary-request call, bounded (see module doc)."""
    h2_stream = stream._stream  # grpclib's HTTP/2 stream: its recv_message reads unbounded
    meta = await h2_stream.recv_data(5)
    if len(meta) < 5:
        raise BadRequest(Status.INTERNAL, f"{method}: no request message")
    compressed, length = struct.unpack(">?I", meta)
    if compressed:
        raise BadRequest(Status.UNIMPLEMENTED, f"{method}: compressed messages are not supported")
    if length > max_bytes:
        raise BadRequest(Status.RESOURCE_EXHAUSTED,
                        f"{method}: request message of {length} bytes is larger than the limit of {max_bytes}")
    if not budget.take(length):
        raise BadRequest(Status.RESOURCE_EXHAUSTED, f"{method}: server busy reading other requests; retry")
    try:
        try:
            body = await h2_stream.recv_data(length) if length else b""
        except AssertionError:  # grpclib: the stream ended inside the message
            raise BadRequest(Status.INTERNAL, f"{method}: request message truncated") from None
        if len(body) != length:
            raise BadRequest(Status.INTERNAL, f"{method}: request message truncated")
        msg = request_type()
        try:
            msg.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as e:
            raise BadRequest(Status.INTERNAL, f"{method}: error parsing request proto: {e}") from None
        return msg
    finally:
        budget.give(length)


def _method_handlers(service: Any, descriptor: Any, max_bytes: int, budget: _ReadBudget,
                     on_error: Callable[[str, GRPCError], None]) -> dict[str, MethodHandler]:
    """grpclib's route table for ``service``, built from the ``.proto`` descriptor."""
    from google.protobuf import message_factory

    out: dict[str, MethodHandler] = {}
    for m in descriptor.methods:
        impl = getattr(service, m.name, None)
        if impl is None:
            continue  # not served: grpclib answers UNIMPLEMENTED
        req_cls = message_factory.GetMessageClass(m.input_type)
        rsp_cls = message_factory.GetMessageClass(m.output_type)
        path = f"/{descriptor.full_name}/{m.name}"
        streaming = m.server_streaming

        async def call(stream: Stream[Any, Any], impl: Any = impl, req_cls: type = req_cls, path: str = path,
                       streaming: bool = streaming) -> None:
            try:
                req = await read_request(stream, req_cls, max_bytes, budget, path)
                if streaming:
                    replies = impl(req)
                    try:
                        async for msg in replies:
                            await stream.send_message(msg)
                    finally:
                        aclose = getattr(replies, "aclose", None)
                        if aclose is not None:
                            await aclose()  # closes the observations it holds, now
                else:
                    await stream.send_message(await impl(req))
            except GRPCError as e:
                on_error(path, e)
                raise
            except (asyncio.CancelledError, ConnectionError):
                raise
            except Exception as e:  # a bug answers INTERNAL with a message, never kills the server
                log.exception("%s failed", path)
                raise GRPCError(Status.INTERNAL, f"{type(e).__name__}: {e}") from None

        cardinality = Cardinality.UNARY_STREAM if streaming else Cardinality.UNARY_UNARY
        out[path] = MethodHandler(call, cardinality, req_cls, rsp_cls)
    return out


class _Servable:
    def __init__(self, mapping: dict[str, MethodHandler]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> dict[str, MethodHandler]:
        return self._mapping


class _LenientHandler(Handler):
    """Per-connection handler: adds ``te: trailers`` when a Linkerd 1 client left it out,
    and logs requests for methods nobody serves."""

    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        headers = list(headers)
        names = {k for k, _ in headers}
        if "te" not in names:
            headers.append(("te", "trailers"))
        path = next((v for k, v in headers if k == ":path"), "")
        if path not in self.mapping:
            bad_input_log.warn("unimplemented", "gRPC: no method %s (answered UNIMPLEMENTED)", path[:200])
        super().accept(stream, headers, release_stream)


class _Protocol(H2Protocol):
    max_streams = MAX_STREAMS

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        conn = self.connection._connection  # the h2 connection grpclib drives
        conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        self.connection.flush()


class _Server(Server):
    def __init__(self, handlers: Any, max_streams: int, **kw: Any) -> None:
        from grpclib.config import Configuration

        super().__init__(handlers, config=Configuration(http2_stream_window_size=STREAM_WINDOW,
                                                        http2_connection_window_size=CONNECTION_WINDOW), **kw)
        self._max_streams = max_streams

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _LenientHandler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        self._handlers.add(handler)
        proto = _Protocol(handler, self._config, self._h2_config)
        proto.max_streams = self._max_streams
        return proto


class GrpcServer:
    """Serves ``(service object, service descriptor)`` pairs on one address."""

    def __init__(self, services: Iterable[tuple[Any, Any]], max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_streams: int = MAX_STREAMS, read_budget_bytes: int = READ_BUDGET_BYTES,
                 on_error: Optional[Callable[[str, GRPCError], None]] = None) -> None:
        self._budget = _ReadBudget(read_budget_bytes)
        on_error = on_error or _log_client_error
        mapping: dict[str, MethodHandler] = {}
        for service, descriptor in services:
            mapping.update(_method_handlers(service, descriptor, max_message_bytes, self._budget, on_error))
        self.paths = sorted(mapping)
        self._server = _Server([_Servable(mapping)], max_streams)
        self.port: Optional[int] = None

    async def start(self, host: str, port: int, tls: Any = None, failures: Any = None) -> int:
        """Listen; over TLS (``tls``: a ``namerouter.tls.TlsSource`` offering ALPN h2) with
        the TLS package's listener, which follows certificate rotation and counts failed
        handshakes in ``failures``."""
        if tls is None:
            await self._server.start(host, port, reuse_address=True, backlog=1024)
        else:
            from ..tls.server import serve_tls

            listener = await serve_tls(self._server._protocol_factory, tls, host, port, failures, backlog=1024)
            # grpclib's close()/wait_closed() drive whatever listener it holds.
            self._server._server = listener  # type: ignore[assignment]
            self._server._server_closed_fut = asyncio.get_running_loop().create_future()
        # asyncio's or uvloop's Server, or our TlsServer: each has ``sockets``
        listening: Any = self._server._server
        sockets = list(listening.sockets) if listening is not None else []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        self.port = bound
        return bound

    async def close(self) -> None:
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 5.0)
        except asyncio.TimeoutError:
            log.warning("gRPC server did not close within 5 s")


def _log_client_error(path: str, e: GRPCError) -> None:
    if isinstance(e, BadRequest):
        bad_input_log.warn(e.status.name, "gRPC %s: %s %s", path, e.status.name, e.message)


def service_path(descriptor: Any, method: str) -> str:
    return f"/{descriptor.full_name}/{method}"


def message_types(descriptor: Any, method: str) -> tuple[type, type]:
    from google.protobuf import message_factory

    m = descriptor.methods_by_name[method]
    return message_factory.GetMessageClass(m.input_type), message_factory.GetMessageClass(m.output_type)

