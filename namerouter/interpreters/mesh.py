"""``io.l5d.mesh``: a router that hands all binding to namerd's gRPC mesh interface.

The Linkerd 1.1+ default for routers using namerd (port 4321). Per distinct (dtab,
path) one ``Interpreter.StreamBoundTree`` stream (``root`` names the namespace; the
router's dtab ++ the request's travel in ``dtab``); per bound id one
``Resolver.StreamReplicas`` stream feeding that BoundName's addresses; the admin dtab
view is ``Delegator.StreamDtab``; the delegator calls ``Delegator.GetDelegateTree``. All
streams of one namerd share one HTTP/2 connection (grpclib).

The shared machinery — last known state while namerd is away, re-sync on its return,
fail-over across several ``dst`` addresses, bounded idle state, admin and metrics — is
``remote.py``'s, as for ``io.l5d.namerd.http``.

Config (Linkerd's keys; ``cache`` and ``retry.probeSeconds`` are ours, a list ``dst``
fails over)::

    interpreter:
      kind: io.l5d.mesh
      dst: /$/inet/namerd.example/4321
      root: /default                 # one element: the namerd namespace
      retry: {baseSeconds: 1, maxSeconds: 600}
      failureThreshold: {minPeriodMs: 5000, closeTimeoutMs: 4000}   # HTTP/2 pings
      initialStreamWindowSizeKB: 10240
      tls: {commonName: namerd, trustCertsBundle: ca.pem}   # TLS (ALPN h2), clientAuth for mTLS

Errors namerd reports: ``INVALID_ARGUMENT``/``UNIMPLEMENTED`` are final for that watch
(a bad root, a namerd without the method); anything else keeps the last value and
retries with backoff.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, AsyncIterator, Optional, Union

from grpclib.client import Channel, Stream as ClientStream
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from ..dtab import Dtab, Leaf, NameTree, Path
from ..mesh import codec_pb2, convert, delegator_pb2, interpreter_pb2, resolver_pb2
from ..mesh.grpc import message_types, service_path
from ..metrics import MetricsRegistry
from ..naming.addr import Addr
from ..naming.bound import BoundName
from ..tls.config import ClientTlsConfig, check_common_name_vars
from .namerd_client import CLOSE_TIMEOUT_S, Endpoint, NamerdEndpoints, NamerdUnreachable, parse_endpoints
from .remote import (
    AddrWatch,
    BindWatch,
    FailureThresholdConfig,
    NamerdCacheConfig,
    NamerdError,
    NamerdRetryConfig,
    RemoteFailure,
    RemoteInterpreter,
    StreamLost,
    Watch,
    check_dst,
)

log = logging.getLogger(__name__)

KIND = "io.l5d.mesh"
#: Errors after which asking again cannot help.
PERMANENT = {Status.INVALID_ARGUMENT, Status.UNIMPLEMENTED}
CONNECTION_ERRORS = (OSError, ConnectionError, StreamTerminatedError, ProtocolError, asyncio.TimeoutError)
DELEGATE_TIMEOUT = 5.0

_INTERPRETER = interpreter_pb2.DESCRIPTOR.services_by_name["Interpreter"]
_RESOLVER = resolver_pb2.DESCRIPTOR.services_by_name["Resolver"]
_DELEGATOR = delegator_pb2.DESCRIPTOR.services_by_name["Delegator"]
_CODEC = codec_pb2.DESCRIPTOR.services_by_name["Codec"]


def _check_root(value: str) -> str:
    p = Path.read(value)
    if len(p.labels) != 1:
        raise ValueError(f"`root` may only contain a single path element: {value}")
    return value


@dataclass
class MeshRetryConfig(NamerdRetryConfig):
    baseSeconds: float = field(default=1.0, metadata={"min": 0})  # Linkerd's mesh default


@dataclass
class MeshInterpreterConfig:
    dst: Union[str, list[str]] = field(metadata={
        "check": check_dst, "min_items": 1,
        "doc": "namerd mesh address (/$/inet/<host>/<port>) or a list of them to fail over between"})
    kind: str = KIND
    root: str = field(default="/default", metadata={"check": _check_root})
    retry: MeshRetryConfig = field(default_factory=MeshRetryConfig)
    cache: NamerdCacheConfig = field(default_factory=NamerdCacheConfig)
    failureThreshold: FailureThresholdConfig = field(default_factory=FailureThresholdConfig)
    initialStreamWindowSizeKB: int = field(default=10240, metadata={"min": 64, "max": 2 * 1024 * 1024})
    tls: Optional[ClientTlsConfig] = None
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})
    experimental: bool = False

    def __post_init__(self) -> None:
        check_common_name_vars(self.tls, None)


class MeshClient(NamerdEndpoints):
    """:class:`NamerdEndpoints` over gRPC: one grpclib channel per namerd address."""

    def __init__(self, *args: Any, ping_interval: float = 5.0, ping_timeout: float = 4.0,
                 stream_window: int = 10 * 1024 * 1024, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._channels: dict[Endpoint, Channel] = {}
        self._config = Configuration(_keepalive_time=ping_interval, _keepalive_timeout=ping_timeout,
                                     _keepalive_permit_without_calls=True,
                                     http2_stream_window_size=stream_window,
                                     http2_connection_window_size=max(stream_window, 4 * 1024 * 1024),
                                     ssl_target_name_override=self.tls.server_hostname if self.tls else None)

    def channel(self, ep: Endpoint) -> Channel:
        """The channel to ``ep``; over TLS it takes the context of the moment, so a
        rotated certificate applies once a failed channel is replaced."""
        if self.closed:
            raise NamerdUnreachable("the namerd client is closed")
        ch = self._channels.get(ep)
        if ch is None:
            ssl = self.tls.context if self.tls is not None else None
            ch = self._channels[ep] = Channel(ep.host, ep.port, ssl=ssl, config=self._config)
        return ch

    def unreachable(self, ep: Endpoint, e: BaseException) -> NamerdUnreachable:
        self._drop_channel(ep)
        return NamerdUnreachable(f"cannot reach namerd at {ep}: {self.describe_failure(e, ep)}")

    async def open_stream(self, ep: Endpoint, service: Any, method: str, request: Any) -> "GrpcStream":
        """A server stream whose response headers arrived (namerd accepted the call)."""
        req_type, rsp_type = message_types(service, method)
        stream: ClientStream[Any, Any] = self.channel(ep).request(service_path(service, method),
                                                                  Cardinality.UNARY_STREAM, req_type, rsp_type)
        gs = GrpcStream(stream, ep, self)
        await gs.start(request)
        return gs

    async def unary(self, ep: Endpoint, service: Any, method: str, request: Any, timeout: float) -> Any:
        req_type, rsp_type = message_types(service, method)
        try:
            async with asyncio.timeout(timeout):
                call: ClientStream[Any, Any] = self.channel(ep).request(service_path(service, method),
                                                                        Cardinality.UNARY_UNARY, req_type, rsp_type)
                async with call as stream:
                    await stream.send_message(request, end=True)
                    reply = await stream.recv_message()
        except GRPCError:
            raise
        except CONNECTION_ERRORS as e:
            raise self.unreachable(ep, e) from None
        if reply is None:
            raise NamerdUnreachable(f"namerd {ep} sent no answer")
        return reply

    async def _probe(self, ep: Endpoint) -> bool:
        """Any gRPC answer (even an error status) means namerd is there."""
        try:
            await self.unary(ep, _CODEC, "ReadPath", codec_pb2.ReadPathReq(text="/"),
                             max(self.probe_seconds, 1.0))
        except GRPCError:
            return True
        except NamerdUnreachable as e:
            self.last_error = str(e)
            return False
        return True

    def _drop_channel(self, ep: Endpoint) -> None:
        ch = self._channels.pop(ep, None)
        if ch is not None:
            ch.close()

    async def _close_transport(self) -> None:
        for ep in list(self._channels):
            self._drop_channel(ep)
        await asyncio.sleep(0)


class GrpcStream:
    """One server stream as an async iterator of messages, with the error mapping of
    the module doc; ``aclose()`` resets it if it is still open."""

    def __init__(self, stream: Any, ep: Endpoint, client: MeshClient) -> None:
        self.stream = stream
        self.ep = ep
        self.client = client
        self._entered = False
        self._done = False

    async def start(self, request: Any) -> None:
        try:
            await self.stream.__aenter__()
            self._entered = True
            await self.stream.send_message(request, end=True)
            await self.stream.recv_initial_metadata()
        except GRPCError as e:
            await self.aclose()
            raise RemoteFailure(f"{e.status.name}: {e.message}", permanent=e.status in PERMANENT) from None
        except CONNECTION_ERRORS as e:
            await self.aclose()
            raise self.client.unreachable(self.ep, e) from None
        except BaseException:
            await self.aclose()
            raise

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        try:
            while True:
                msg = await self.stream.recv_message()
                if msg is None:
                    await self.stream.recv_trailing_metadata()  # raises GRPCError for an error status
                    self._done = True
                    return
                yield msg
        except GRPCError as e:
            self._done = True
            raise RemoteFailure(f"{e.status.name}: {e.message}", permanent=e.status in PERMANENT) from None
        except CONNECTION_ERRORS as e:
            raise StreamLost(str(e) or type(e).__name__) from None

    async def aclose(self) -> None:
        if not self._entered:
            return
        self._entered = False
        try:
            if not self._done:
                try:
                    await asyncio.wait_for(self.stream.cancel(), CLOSE_TIMEOUT_S)
                except Exception:
                    pass  # already reset or the connection is gone
            await self.stream.__aexit__(asyncio.CancelledError, asyncio.CancelledError(), None)
        except Exception:
            pass


class MeshInterpreter(RemoteInterpreter["MeshClient"]):
    """Name interpreter backed by namerd's gRPC mesh interface (see module docstring)."""

    kind = KIND
    config_class = MeshInterpreterConfig

    alpn = ["h2"]

    def __init__(self, config: MeshInterpreterConfig, metrics: Optional[MetricsRegistry] = None,
                 scope: str = f"interpreter/{KIND}", transformers: Optional[list[Any]] = None,
                 tls_registry: Any = None) -> None:
        self.root = Path.read(config.root)
        super().__init__(config, self.root.labels[0].decode("utf-8"), metrics, scope, transformers, tls_registry)

    def _make_client(self, config: Any, options: dict[str, Any]) -> "MeshClient":
        return MeshClient(parse_endpoints(config.dst), **options,
                          ping_interval=config.failureThreshold.minPeriodMs / 1000.0,
                          ping_timeout=config.failureThreshold.closeTimeoutMs / 1000.0,
                          stream_window=config.initialStreamWindowSizeKB * 1024)

    # -- transport -----------------------------------------------------------------------
    async def _open(self, watch: Watch, ep: Endpoint) -> AsyncIterable[Any]:
        root = convert.path_to_proto(self.root)
        client = self.client
        if isinstance(watch, BindWatch):
            bind = interpreter_pb2.BindReq(root=root, name=convert.path_to_proto(watch.path),
                                           dtab=convert.dtab_to_proto(watch.dtab))
            return await client.open_stream(ep, _INTERPRETER, "StreamBoundTree", bind)
        if isinstance(watch, AddrWatch):
            replicas = resolver_pb2.ReplicasReq(id=convert.path_to_proto(watch.id))
            return await client.open_stream(ep, _RESOLVER, "StreamReplicas", replicas)
        return await client.open_stream(ep, _DELEGATOR, "StreamDtab", delegator_pb2.DtabReq(root=root))

    def decode_tree(self, doc: Any) -> NameTree[BoundName]:
        if not doc.HasField("tree"):
            raise ValueError("a bound tree answer without a tree")
        return convert.bound_tree_from_proto(doc.tree, self._bound_name)

    def decode_addr(self, doc: Any) -> Addr:
        return convert.replicas_to_addr(doc)

    def decode_dtab(self, doc: Any) -> Dtab:
        return convert.dtab_from_proto(doc.dtab.dtab)

    async def delegate(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> dict[str, Any]:
        """namerd's delegation of ``path`` (``Delegator.GetDelegateTree``), as the
        delegate-tree JSON the admin shows."""
        req = delegator_pb2.DelegateTreeReq(root=convert.path_to_proto(self.root),
                                            tree=convert.tree_to_proto(Leaf(path)),
                                            dtab=convert.dtab_to_proto(dtab))
        client = self.client
        try:
            rsp = await client.on_any(lambda ep: client.unary(ep, _DELEGATOR, "GetDelegateTree", req,
                                                              DELEGATE_TIMEOUT))
        except GRPCError as e:
            raise NamerdError(f"namerd answered {e.status.name}: {e.message}") from None
        except NamerdUnreachable as e:
            raise NamerdError(f"namerd unreachable: {e}") from None
        return convert.delegate_proto_to_json(rsp.tree)
