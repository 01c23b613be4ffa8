"""Linkerd 1's ``protocol: h2`` router schema (linkerd/docs/protocol-h2.md) as dataclasses.

An h2 router has the keys every router has (``RouterConfig``: label, dtab, dstPrefix,
bindingTimeoutMs, bindingCache, interpreter, announcers) plus its own:

- ``identifier``: ``io.l5d.header.token`` (default, header ``:authority``),
  ``io.l5d.header.path`` (``header`` default ``:path``, ``segments`` optional: all of
  them when absent), ``io.l5d.header`` (a header's value read as a path, default
  ``l5d-name``), ``io.l5d.static``;
- ``h2AccessLog`` / ``h2AccessLogAppend``;
- servers: the HTTP/2 settings (``maxConcurrentStreamsPerConnection`` default 1000,
  ``initialStreamWindowBytes``, ``windowUpdateRatio``, ``maxFrameBytes``,
  ``headerTableBytes``, ``maxHeaderListBytes`` — Linkerd's docs spell it
  ``maxHeaderListByts``, both are accepted); default port 4142;
- ``client``: the same settings for the connections to backends;
- ``service``: ``classificationTimeoutMs``, ``retryBufferSize {requestBytes,
  responseBytes}`` and the h2 / gRPC ``responseClassifier`` kinds.

The HTTP/1.1 router's own keys (``httpAccessLog``, ``maxHeadersKB``,
``maxInitialLineKB``, ``maxErrResponseKB``, ``streamingEnabled``,
``streamAfterContentLengthKB``) are not keys of an h2 router: they are redeclared here
with ``init=False``, which the config validator treats as unknown keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..accesslog import check_roll_policy, check_rotate_count
from ..config import RouterConfig, ServerConfig
from ..policy.config import (
    ClientPolicyFields, ClientPrefixConfig, GlobalClientConfig, GlobalServiceConfig, ServicePrefixConfig,
    StaticClientConfig, StaticServiceConfig,
)

#: Identifier kinds of h2 routers (``identifiers.py``).
H2_IDENTIFIER_KINDS = ("io.l5d.header.token", "io.l5d.header.path", "io.l5d.header", "io.l5d.static")

#: Response classifiers of h2 routers (``classifiers.py``): Linkerd's H2 and gRPC kinds.
H2_CLASSIFIER_KINDS = (
    "io.l5d.h2.nonRetryable5XX",
    "io.l5d.h2.retryableRead5XX",
    "io.l5d.h2.retryableIdempotent5XX",
    "io.l5d.h2.retryableAll5XX",
    "io.l5d.h2.allSuccessful",
    "io.l5d.h2.grpc.neverRetryable",
    "io.l5d.h2.grpc.alwaysRetryable",
    "io.l5d.h2.grpc.default",
    "io.l5d.h2.grpc.compliant",
    "io.l5d.h2.grpc.retryableStatusCodes",
)
DEFAULT_H2_CLASSIFIER = "io.l5d.h2.nonRetryable5XX"

#: ``retryBufferSize`` default (Linkerd's ClassifiedRetryFilter.DefaultBufferSize).
DEFAULT_RETRY_BUFFER = 16383
#: ``classificationTimeoutMs`` default.
DEFAULT_CLASSIFICATION_TIMEOUT_MS = 100

_MAX_WINDOW = 2**31 - 1


def _ratio(v: float) -> None:
    if not 0.0 < v < 1.0:
        raise ValueError(f"expected a number between 0 and 1 (exclusive), got {v}")


def _grpc_codes(codes: list[int]) -> None:
    for c in codes:
        if not 0 <= c <= 16:
            raise ValueError(f"expected gRPC status codes (0-16), got {c}")


@dataclass
class H2EndpointFields:
    """HTTP/2 settings of one side (a server, or the client connections to backends)."""

    #: SETTINGS_INITIAL_WINDOW_SIZE: what a peer may send on one stream before we let it
    #: send more; the bound on what one stream buffers here (default 64 KB)
    initialStreamWindowBytes: Optional[int] = field(default=None, metadata={"min": 1, "max": _MAX_WINDOW})
    #: SETTINGS_HEADER_TABLE_SIZE (HPACK dynamic table; default 4096)
    headerTableBytes: Optional[int] = field(default=None, metadata={"min": 0, "max": 2**32 - 1})
    #: SETTINGS_MAX_FRAME_SIZE (default 16 KB)
    maxFrameBytes: Optional[int] = field(default=None, metadata={"min": 16384, "max": 16777215})
    #: SETTINGS_MAX_HEADER_LIST_SIZE: decoded header block size; larger ones end the
    #: connection (HPACK bombs). Default 8 KB here (netty's and grpc-java's default)
    maxHeaderListBytes: Optional[int] = field(default=None, metadata={"min": 1, "max": 2**32 - 1})
    #: Linkerd's documentation spells the key this way; both are accepted
    maxHeaderListByts: Optional[int] = field(default=None, metadata={"min": 1, "max": 2**32 - 1})
    #: a WINDOW_UPDATE is sent once the open window is at most this share of its size
    windowUpdateRatio: Optional[float] = field(default=None, metadata={"check": _ratio})

    def __post_init__(self) -> None:
        if self.maxHeaderListBytes is not None and self.maxHeaderListByts is not None:
            e = ValueError("set maxHeaderListBytes or its misspelling maxHeaderListByts, not both")
            e.config_key = "maxHeaderListByts"  # type: ignore[attr-defined]
            raise e


@dataclass
class H2ServerConfig(H2EndpointFields, ServerConfig):
    """A ``servers[]`` entry of an h2 router."""

    port: int = field(default=4142, metadata={"min": 1, "max": 65535})
    #: SETTINGS_MAX_CONCURRENT_STREAMS: streams one client connection may have open
    maxConcurrentStreamsPerConnection: Optional[int] = field(default=None, metadata={"min": 1, "max": 2**31 - 1})


@dataclass
class H2IdentifierConfig:
    """One h2 identifier (see the module docstring for the kinds and defaults)."""

    kind: str = field(default="io.l5d.header.token", metadata={"choices": H2_IDENTIFIER_KINDS})
    header: Optional[str] = None
    #: io.l5d.header.path: how many leading path segments name the request (None: all)
    segments: Optional[int] = field(default=None, metadata={"min": 1, "max": 1000})
    #: io.l5d.static: the name
    path: Optional[str] = None


@dataclass
class H2ClassifierConfig:
    """``responseClassifier`` of an h2 router's service block."""

    kind: str = field(default=DEFAULT_H2_CLASSIFIER, metadata={"choices": H2_CLASSIFIER_KINDS})
    #: io.l5d.h2.grpc.retryableStatusCodes: the gRPC codes that are retryable
    retryableStatusCodes: Optional[list[int]] = field(default=None, metadata={"check": _grpc_codes})
    #: gRPC kinds: the codes that count as success (default [0], OK)
    successStatusCodes: Optional[list[int]] = field(default=None, metadata={"check": _grpc_codes})

    def __post_init__(self) -> None:
        grpc = self.kind.startswith("io.l5d.h2.grpc.")
        if self.kind == "io.l5d.h2.grpc.retryableStatusCodes" and self.retryableStatusCodes is None:
            _raise("retryableStatusCodes", f"required for {self.kind}")
        if self.kind != "io.l5d.h2.grpc.retryableStatusCodes" and self.retryableStatusCodes is not None:
            _raise("retryableStatusCodes", "only io.l5d.h2.grpc.retryableStatusCodes takes it")
        if not grpc and self.successStatusCodes is not None:
            _raise("successStatusCodes", "only the io.l5d.h2.grpc.* classifiers take it")


def _raise(key: str, message: str) -> None:
    e = ValueError(message)
    e.config_key = key  # type: ignore[attr-defined]
    raise e


@dataclass
class RetryBufferSizeConfig:
    """A request is retried only while what was sent of it fits ``requestBytes`` and what
    came back fits ``responseBytes``."""

    requestBytes: int = field(default=DEFAULT_RETRY_BUFFER, metadata={"min": 0, "max": 2**31 - 1})
    responseBytes: int = field(default=DEFAULT_RETRY_BUFFER, metadata={"min": 0, "max": 2**31 - 1})


@dataclass
class H2ServiceFields:
    """The h2 keys of a ``service`` block, beside totalTimeoutMs and retries."""

    responseClassifier: Optional[H2ClassifierConfig] = None
    #: how long a response stream is held, waiting for its end, to classify it
    classificationTimeoutMs: Optional[int] = field(default=None, metadata={"min": 1, "max": 3_600_000})
    retryBufferSize: Optional[RetryBufferSizeConfig] = None


@dataclass
class H2GlobalServiceConfig(H2ServiceFields, GlobalServiceConfig):  # type: ignore[misc]  # h2's classifier kinds
    kind: str = "io.l5d.global"


@dataclass(kw_only=True)
class H2ServicePrefixConfig(H2ServiceFields, ServicePrefixConfig):  # type: ignore[misc]  # h2's classifier kinds
    pass


@dataclass
class H2StaticServiceConfig(StaticServiceConfig):
    kind: str = "io.l5d.static"
    configs: list[H2ServicePrefixConfig] = field(default_factory=list)  # type: ignore[assignment]


H2ServiceBlock = Union[H2GlobalServiceConfig, H2StaticServiceConfig]


@dataclass
class H2GlobalClientConfig(H2EndpointFields, GlobalClientConfig):
    kind: str = "io.l5d.global"

    def __post_init__(self) -> None:
        H2EndpointFields.__post_init__(self)
        GlobalClientConfig.__post_init__(self)


@dataclass(kw_only=True)
class H2ClientPrefixConfig(H2EndpointFields, ClientPrefixConfig):
    def __post_init__(self) -> None:
        H2EndpointFields.__post_init__(self)
        ClientPrefixConfig.__post_init__(self)


@dataclass
class H2StaticClientConfig(StaticClientConfig):
    kind: str = "io.l5d.static"
    configs: list[H2ClientPrefixConfig] = field(default_factory=list)  # type: ignore[assignment]


H2ClientBlock = Union[H2GlobalClientConfig, H2StaticClientConfig]


@dataclass
class H2RouterConfig(RouterConfig):
    """A ``routers[]`` entry with ``protocol: h2``."""

    protocol: str = field(default="h2", metadata={"choices": ("h2",)})
    identifier: Union[H2IdentifierConfig, list[H2IdentifierConfig], None] = None  # type: ignore[assignment]
    servers: list[H2ServerConfig] = field(default_factory=lambda: [H2ServerConfig()])  # type: ignore[assignment]
    service: Optional[H2ServiceBlock] = field(
        default=None, metadata={"default_kind": "io.l5d.global"})
    client: Optional[H2ClientBlock] = field(
        default=None, metadata={"default_kind": "io.l5d.global"})
    #: the access log's path (none when absent); ``h2AccessLogAppend: false`` truncates it
    h2AccessLog: Optional[str] = None
    h2AccessLogAppend: bool = True
    #: rotation, as httpAccessLogRollPolicy / httpAccessLogRotateCount (accesslog.py)
    h2AccessLogRollPolicy: str = field(default="never", metadata={"check": check_roll_policy})
    h2AccessLogRotateCount: int = field(default=-1, metadata={"min": -1, "check": check_rotate_count})
    # HTTP/1.1 router keys, not keys of an h2 router (see the module docstring)
    httpAccessLog: Optional[str] = field(default=None, init=False)
    httpAccessLogAppend: bool = field(default=True, init=False)
    httpAccessLogRollPolicy: str = field(default="never", init=False)
    compressionLevel: Optional[int] = field(default=None, init=False)
    httpAccessLogRotateCount: int = field(default=-1, init=False)
    maxHeadersKB: int = field(default=8, init=False)
    maxInitialLineKB: int = field(default=4, init=False)
    maxErrResponseKB: int = field(default=5120, init=False)
    streamingEnabled: bool = field(default=True, init=False)
    streamAfterContentLengthKB: int = field(default=5, init=False)

    def identifiers(self) -> list[H2IdentifierConfig]:  # type: ignore[override]
        if self.identifier is None:
            return [H2IdentifierConfig()]
        if isinstance(self.identifier, list):
            return list(self.identifier) or [H2IdentifierConfig()]
        return [self.identifier]


#: The ``protocol`` values of routers and their schema (config/schema.py dispatches on it).
def router_kinds() -> dict[str, type]:
    return {"http": RouterConfig, "h2": H2RouterConfig}


__all__ = ["H2RouterConfig", "H2ServerConfig", "H2IdentifierConfig", "H2ClassifierConfig", "H2EndpointFields",
           "RetryBufferSizeConfig", "ClientPolicyFields", "router_kinds"]
