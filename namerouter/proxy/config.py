"""Router configuration: Linkerd 1's ``routers[]`` schema as dataclasses.

Field names are Linkerd's camelCase keys so that a Linkerd ``config.yaml`` loads
unmodified; the config layer (``namerouter/config``) turns YAML into these classes
generically from the type hints and the ``metadata`` bounds declared here, and
reports errors with the key path and line. Defaults are Linkerd's.

Service (per logical name) and client (per bound id) policy blocks are accepted as
opaque mappings here; the policy stages read the keys they understand (see
``namerouter/proxy/routing.py``: ``ServiceStage`` and ``ClientStage``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..tls.config import ServerTlsConfig
from .balancer_config import BALANCER_KINDS as BALANCER_KINDS, LoadBalancerConfig as LoadBalancerConfig
from .policy.config import ClientBlock, ServiceBlock
from .accesslog import check_roll_policy, check_rotate_count
from .forwarded import AddForwardedHeaderConfig, check_header_name
from .socket_options import SocketOptionsConfig

#: Identifier kinds this package implements (see ``identifiers.py``).
IDENTIFIER_KINDS = (
    "io.l5d.header.token",
    "io.l5d.path",
    "io.l5d.methodAndHost",
    "io.l5d.header",
    "io.l5d.static",
)

@dataclass
class IdentifierConfig:
    """One identifier. Only the keys of its ``kind`` are meaningful:

    - ``io.l5d.header.token``: ``header`` (default ``Host``)
    - ``io.l5d.path``: ``segments`` (1), ``consume`` (false)
    - ``io.l5d.methodAndHost``: ``httpUriInDst`` (false)
    - ``io.l5d.header``: ``header`` (default ``l5d-name``)
    - ``io.l5d.static``: ``path`` (required)
    """

    kind: str = field(default="io.l5d.header.token", metadata={"choices": IDENTIFIER_KINDS})
    header: Optional[str] = None
    segments: int = field(default=1, metadata={"min": 1, "max": 1000})
    consume: bool = False
    httpUriInDst: bool = False
    path: Optional[str] = None


@dataclass
class BindingCacheConfig:
    """Linkerd's ``bindingCache``: bounds on the per-router caches."""

    paths: int = field(default=1000, metadata={"min": 1})
    trees: int = field(default=1000, metadata={"min": 1})
    bounds: int = field(default=1000, metadata={"min": 1})
    clients: int = field(default=1000, metadata={"min": 1})
    idleTtlSecs: int = field(default=600, metadata={"min": 1})
    #: ours: how many names bound under a request dtab (``l5d-dtab``, ``dtab`` in
    #: ``/delegator.json``) are kept, apart from ``paths``/``trees``: client-controlled
    #: state gets its own, smaller bound so that a flood of unique request dtabs neither
    #: evicts the configured names' bindings nor holds much memory (issue 17)
    requestDtabPaths: int = field(default=100, metadata={"min": 1})


@dataclass
class ServerSessionConfig:
    """Linkerd's ``serverSession`` (plus ``headerReadTimeoutMs``): time limits on a
    client's connection (namerouter/proxy/sessions.py). ``null`` means forever."""

    #: no request outstanding (or a request body sending nothing) for this long: closed.
    #: Linkerd's default is forever; ours bounds idle connections (issue 17)
    idleTimeMs: Optional[int] = field(default=60_000, metadata={"min": 1})
    #: a connection older than this finishes what it carries, then closes
    lifeTimeMs: Optional[int] = field(default=None, metadata={"min": 1})
    #: a request head must be complete this long after its first byte (the first
    #: request: after the connection opened), else 408 and close (slowloris)
    headerReadTimeoutMs: Optional[int] = field(default=5_000, metadata={"min": 1})


@dataclass
class ServerConfig:
    port: int = field(default=4140, metadata={"min": 1, "max": 65535})
    #: Linkerd binds loopback unless told otherwise.
    ip: str = "127.0.0.1"
    clearContext: bool = False
    maxConcurrentRequests: Optional[int] = field(default=None, metadata={"min": 1})
    maxCallDepth: int = field(default=1000, metadata={"min": 1})
    #: Linkerd's server ``announce``: names to register this server under with the
    #: router's ``announcers`` (the main job does that, not the data plane).
    announce: Optional[list[str]] = None
    #: Linkerd's server TLS block (namerouter/tls/config.py): this server terminates TLS
    #: (rotated without restart when its files change; see docs/architecture.md "TLS").
    tls: Optional[ServerTlsConfig] = None
    #: Requests received on this server over TLS with a verified client certificate carry
    #: it as ``x-forwarded-client-cert`` (Envoy's format). Linkerd has this key on the
    #: ``client`` block only, which is accepted too (README "TLS"). A client's own
    #: ``x-forwarded-client-cert`` is never forwarded.
    forwardClientCert: bool = False
    #: whether request dtabs (l5d-dtab, l5d-ctx-dtab) may name system namers that reach
    #: an address (/$/inet, /$/io.buoyant.rinet, the rewriting /$/io.buoyant.* namers);
    #: /$/nil, /$/fail and /$/io.buoyant.http.status always may. Default (null): true on a
    #: loopback address, false otherwise (request_dtab.py; Linkerd: always true)
    localDtabSystemNamers: Optional[bool] = None
    #: connection time limits (idle, lifetime, header read): see ServerSessionConfig
    serverSession: ServerSessionConfig = field(default_factory=ServerSessionConfig)
    #: client connections this server keeps open at most (beyond: 503 and close); the
    #: process's share of RLIMIT_NOFILE applies anyway (namerouter/proxy/sessions.py)
    maxConnections: Optional[int] = field(default=None, metadata={"min": 1})
    #: Linkerd's ``socketOptions`` (noDelay, reuseAddr, reusePort, keepAlive, backlog,
    #: readTimeoutMs, writeTimeoutMs): see namerouter/proxy/socket_options.py
    socketOptions: Optional[SocketOptionsConfig] = None
    #: Linkerd's ``timestampHeader``: requests carry the time the router received them
    #: (ms since the epoch) in this header; ``addForwardedHeader``: an RFC 7239
    #: ``Forwarded`` field with Linkerd's ``by``/``for`` labelers (forwarded.py)
    timestampHeader: Optional[str] = field(default=None, metadata={"check": check_header_name})
    addForwardedHeader: Optional[AddForwardedHeaderConfig] = None


@dataclass
class TracePropagatorConfig:
    """Linkerd's ``tracePropagator``: which trace format the router reads first
    (``io.l5d.default``: ``l5d-ctx-trace``; ``io.l5d.zipkin``: B3, which it then also
    writes on every request). Every format is read and written either way (see
    namerouter/tracing/propagation.py)."""

    kind: str = field(default="io.l5d.default", metadata={"choices": ("io.l5d.default", "io.l5d.zipkin")})


@dataclass
class RouterConfig:
    protocol: str = field(default="http", metadata={"choices": ("http",)})
    label: Optional[str] = None
    dstPrefix: str = "/svc"
    dtab: str = ""
    identifier: Union[IdentifierConfig, list[IdentifierConfig], None] = None
    bindingTimeoutMs: int = field(default=10000, metadata={"min": 1})
    bindingCache: BindingCacheConfig = field(default_factory=BindingCacheConfig)
    maxHeadersKB: int = field(default=8, metadata={"min": 1, "max": 1024})
    #: l5d-ctx-dtab + l5d-dtab together; larger request dtabs get 400 (README "Limits")
    maxLocalDtabKB: int = field(default=8, metadata={"min": 1, "max": 1024})
    maxInitialLineKB: int = field(default=4, metadata={"min": 1, "max": 1024})
    maxErrResponseKB: int = field(default=5120, metadata={"min": 1})
    #: Bodies are always streamed, piece by piece with backpressure, and keep their framing:
    #: a Content-Length message is forwarded with its Content-Length, a chunked one chunked
    #: (HTTP/1.0 clients get close-delimited responses instead).
    #: ``streamAfterContentLengthKB``: Linkerd buffers Content-Length messages up to this
    #: size and streams larger ones. Accepted; it has no effect here, because relaying the
    #: bytes as they arrive gives the peer the same message, with the same Content-Length.
    #: ``streamingEnabled: false`` (Linkerd/Finagle ``withStreaming(false)``): requests and
    #: responses are buffered whole before they are forwarded (lifecycle.py). A request body
    #: over ``maxRequestKB`` is refused with 413 before any backend sees it; a response over
    #: ``maxResponseKB`` is answered 502 (``l5d-err``), never cut. Buffered requests are
    #: replayable, so retries work for bodies up to the limit; buffered responses go out with
    #: a Content-Length. The limits bound the memory of one exchange; with streaming (the
    #: default) they do not apply. (tests/test_streaming_disabled.py)
    streamingEnabled: bool = True
    maxRequestKB: int = field(default=5120, metadata={"min": 1})
    maxResponseKB: int = field(default=5120, metadata={"min": 1})
    streamAfterContentLengthKB: int = field(default=5, metadata={"min": 0})
    #: Path of the access log (none when absent); ``httpAccessLogAppend`` false truncates it.
    httpAccessLog: Optional[str] = None
    httpAccessLogAppend: bool = True
    #: rotation of the access log (Linkerd's values; accesslog.py): never, hourly, daily,
    #: weekly(n), or a size (3.megabytes); rotated files kept (-1: all)
    httpAccessLogRollPolicy: str = field(default="never", metadata={"check": check_roll_policy})
    #: gzip responses for clients that accept it (compression.py): -1 textual types at
    #: level 6, 1-9 everything at that level, 0 never; absent: never (Linkerd: -1)
    compressionLevel: Optional[int] = field(default=None, metadata={"min": -1, "max": 9})
    httpAccessLogRotateCount: int = field(default=-1, metadata={"min": -1, "check": check_rotate_count})
    #: ``{kind: default, ...}``; the interpreter plugin validates its own keys, and the
    #: main job hands the built interpreter to ``HttpRouter``.
    interpreter: Optional[dict[str, Any]] = None
    servers: list[ServerConfig] = field(default_factory=lambda: [ServerConfig()])
    #: Policy per logical name / per bound id: ``io.l5d.global`` (default kind) or
    #: ``io.l5d.static`` with prefix ``configs`` (see namerouter/proxy/policy/).
    service: Optional[ServiceBlock] = field(default=None, metadata={"default_kind": "io.l5d.global"})
    client: Optional[ClientBlock] = field(default=None, metadata={"default_kind": "io.l5d.global"})
    #: Linkerd's router ``announcers`` (``[{kind: io.l5d.serversets, zkAddrs, pathPrefix}]``),
    #: validated by kind against ``plugins.ANNOUNCERS`` into each announcer's config class;
    #: the main job (namerouter/linker.py) builds them and announces each server's
    #: ``announce`` paths once the router listens (see ServerConfig.announce).
    announcers: list[Any] = field(default_factory=list, metadata={"plugins": "ANNOUNCERS"})
    #: Linkerd's ``tracePropagator`` (see TracePropagatorConfig)
    tracePropagator: Optional[TracePropagatorConfig] = None
    #: Linkerd's ``originator``: this router is the first hop of linker-to-linker requests;
    #: its stats say so with the gauge ``rt/<label>/originator`` = 1 (Linkerd's Router)
    originator: bool = False

    @property
    def effective_label(self) -> str:
        return self.label or self.protocol

    def identifiers(self) -> list[IdentifierConfig]:
        if self.identifier is None:
            return [IdentifierConfig()]
        if isinstance(self.identifier, list):
            return list(self.identifier) or [IdentifierConfig()]
        return [self.identifier]
