"""Linkerd 1's ``service:`` and ``client:`` router blocks as dataclasses.

Keys, kinds and defaults are Linkerd's (linkerd/docs/routers.md, retries.md,
response_classifier.md, failure_accrual.md, load_balancer.md), so a Linkerd
``config.yaml`` loads unmodified. The config layer validates YAML into these classes
from the type hints (``namerouter/config/validate.py``): unions of dataclasses with a
``kind`` field are dispatched on ``kind``.

Policy fields default to ``None`` meaning "not set here": ``io.l5d.static`` applies every
matching ``configs`` entry in order and a later entry overrides only the keys it sets
(``static_config.py``); Linkerd's defaults are applied after merging (``runtime.py``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Union

from ...tls.config import ClientTlsConfig, check_common_name_vars
from ..balancer_config import LoadBalancerConfig
from ..socket_options import SocketOptionsConfig

#: HTTP response classifiers (``classifiers.py``); the ``io.l5d.h2.*`` twins are accepted
#: as aliases because an HTTP/1.1 request classifies the same way.
CLASSIFIER_KINDS = (
    "io.l5d.http.nonRetryable5XX",
    "io.l5d.http.retryableRead5XX",
    "io.l5d.http.retryableIdempotent5XX",
    "io.l5d.http.retryableAll5XX",
    "io.l5d.http.allSuccessful",
    "io.l5d.h2.nonRetryable5XX",
    "io.l5d.h2.retryableRead5XX",
    "io.l5d.h2.retryableIdempotent5XX",
    "io.l5d.h2.retryableAll5XX",
    "io.l5d.h2.allSuccessful",
)
DEFAULT_CLASSIFIER = "io.l5d.http.nonRetryable5XX"


#: a prefix segment: literal text and ``{name}`` captures (names as dtab/path_matcher.py's)
_CAPTURES = re.compile(r"(?:[^{}]|\{[A-Za-z0-9.:_-]+\})*")


def _check_prefix(p: str) -> None:
    if not isinstance(p, str) or not p.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {p!r}")
    for seg in p.split("/")[1:]:
        if seg == "" and p != "/":
            raise ValueError(f"empty path segment in {p!r}")
        # captures may sit inside a segment ({service}:https), as Linkerd's PathMatcher allows
        if seg.count("{") != seg.count("}") or not _CAPTURES.fullmatch(seg):
            raise ValueError(f"malformed capture {seg!r} in {p!r}: write {{name}}")


# --- backoffs --------------------------------------------------------------------------

@dataclass
class ConstantBackoffConfig:
    """``{kind: constant, ms: 0}``: the same wait before every retry."""

    kind: str = "constant"
    ms: int = field(default=0, metadata={"min": 0, "max": 3_600_000})


@dataclass(kw_only=True)
class JitteredBackoffConfig:
    """``{kind: jittered, minMs, maxMs}``: decorrelated jitter (Finagle's
    ``Backoff.decorrelatedJittered``) between the two bounds."""

    kind: str = "jittered"
    minMs: int = field(metadata={"min": 0, "max": 3_600_000})
    maxMs: int = field(metadata={"min": 0, "max": 3_600_000})

    def __post_init__(self) -> None:
        if self.maxMs < self.minMs:
            raise ValueError(f"maxMs ({self.maxMs}) must not be below minMs ({self.minMs})")


BackoffConfig = Union[ConstantBackoffConfig, JitteredBackoffConfig]


# --- service (per logical name) ----------------------------------------------------------

@dataclass
class RetryBudgetConfig:
    """Finagle's RetryBudget: each request deposits, each retry withdraws.

    ``percentCanRetry`` retries per request plus a reserve of ``minRetriesPerSec``
    retries per second, counted over the last ``ttlSecs`` seconds.
    """

    minRetriesPerSec: int = field(default=10, metadata={"min": 0, "max": 1_000_000})
    percentCanRetry: float = field(default=0.2, metadata={"min": 0.0, "max": 1000.0})
    ttlSecs: int = field(default=10, metadata={"min": 1, "max": 60})


@dataclass
class RetriesConfig:
    budget: Optional[RetryBudgetConfig] = None
    backoff: Optional[BackoffConfig] = None


@dataclass
class ResponseClassifierConfig:
    kind: str = field(default=DEFAULT_CLASSIFIER, metadata={"choices": CLASSIFIER_KINDS})


@dataclass
class ServicePolicyFields:
    """The policy keys of a ``service`` block (per logical name, e.g. ``/svc/web``)."""

    #: covers every attempt, backoffs included; on expiry the router answers 503
    totalTimeoutMs: Optional[int] = field(default=None, metadata={"min": 1})
    retries: Optional[RetriesConfig] = None
    responseClassifier: Optional[ResponseClassifierConfig] = None


@dataclass
class GlobalServiceConfig(ServicePolicyFields):
    """``service: {kind: io.l5d.global, ...}``: one policy for every name."""

    kind: str = "io.l5d.global"


@dataclass(kw_only=True)
class ServicePrefixConfig(ServicePolicyFields):
    """One ``configs`` entry of ``io.l5d.static``: applies to names under ``prefix``."""

    prefix: str = field(metadata={"check": _check_prefix})


@dataclass
class StaticServiceConfig:
    """``service: {kind: io.l5d.static, configs: [...]}``: every matching prefix applies,
    later entries override earlier ones."""

    kind: str = "io.l5d.static"
    configs: list[ServicePrefixConfig] = field(default_factory=list)


ServiceBlock = Union[GlobalServiceConfig, StaticServiceConfig]


# --- client (per bound id) -----------------------------------------------------------------

@dataclass(kw_only=True)
class ConsecutiveFailuresConfig:
    """``io.l5d.consecutiveFailures``: ``failures`` in a row mark an endpoint dead."""

    kind: str = "io.l5d.consecutiveFailures"
    failures: int = field(metadata={"min": 1, "max": 1_000_000})
    backoff: Optional[BackoffConfig] = None


@dataclass(kw_only=True)
class SuccessRateConfig:
    """``io.l5d.successRate``: EWMA success rate over ``requests`` requests."""

    kind: str = "io.l5d.successRate"
    successRate: float = field(metadata={"min": 0.0, "max": 1.0})
    requests: int = field(metadata={"min": 1, "max": 1_000_000})
    backoff: Optional[BackoffConfig] = None


@dataclass(kw_only=True)
class SuccessRateWindowedConfig:
    """``io.l5d.successRateWindowed``: EWMA success rate over ``window`` seconds."""

    kind: str = "io.l5d.successRateWindowed"
    successRate: float = field(metadata={"min": 0.0, "max": 1.0})
    window: int = field(metadata={"min": 1, "max": 86_400})
    backoff: Optional[BackoffConfig] = None


@dataclass
class NoFailureAccrualConfig:
    """``none``: endpoints are never marked dead."""

    kind: str = "none"


FailureAccrualConfig = Union[ConsecutiveFailuresConfig, SuccessRateConfig, SuccessRateWindowedConfig,
                             NoFailureAccrualConfig]


@dataclass
class HostConnectionPoolConfig:
    """Per-endpoint connection pool (Finagle's ``hostConnectionPool``)."""

    minSize: int = field(default=0, metadata={"min": 0})
    #: open connections per endpoint; more requests wait (at most ``maxWaiters``) or get 503
    maxSize: Optional[int] = field(default=None, metadata={"min": 1})
    #: idle pooled connections are closed after this long
    idleTimeMs: Optional[int] = field(default=None, metadata={"min": 1})
    maxWaiters: Optional[int] = field(default=None, metadata={"min": 0})


@dataclass
class ClientSessionConfig:
    """Linkerd's ``clientSession``: time limits on backend connections
    (namerouter/proxy/sessions.py). ``idleTimeMs`` also bounds a response body that sends
    nothing for that long (it is cut and counted as a failure)."""

    idleTimeMs: Optional[int] = field(default=None, metadata={"min": 1})
    lifeTimeMs: Optional[int] = field(default=None, metadata={"min": 1})


@dataclass
class ClientPolicyFields:
    """The policy keys of a ``client`` block (per bound id, e.g. ``/#/io.l5d.fs/web``)."""

    requestAttemptTimeoutMs: Optional[int] = field(default=None, metadata={"min": 1})
    loadBalancer: Optional[LoadBalancerConfig] = None
    failureAccrual: Optional[FailureAccrualConfig] = None
    requeueBudget: Optional[RetryBudgetConfig] = None
    hostConnectionPool: Optional[HostConnectionPoolConfig] = None
    clientSession: Optional[ClientSessionConfig] = None
    #: Linkerd's ``socketOptions`` on backend connections (namerouter/proxy/socket_options.py)
    socketOptions: Optional[SocketOptionsConfig] = None
    #: Finagle's failFast: an endpoint whose connect fails is avoided until a background
    #: reconnect succeeds (namerouter/proxy/fail_fast.py); Linkerd's default false
    failFast: Optional[bool] = None
    #: Linkerd's client TLS block (namerouter/tls/config.py); ``enabled: false`` under a
    #: more specific prefix turns it off again.
    tls: Optional[ClientTlsConfig] = None
    #: Linkerd's ``forwardClientCert``: requests sent to this client carry the verified
    #: client certificate of the incoming TLS connection as ``x-forwarded-client-cert``
    forwardClientCert: Optional[bool] = None


@dataclass
class GlobalClientConfig(ClientPolicyFields):
    kind: str = "io.l5d.global"

    def __post_init__(self) -> None:
        check_common_name_vars(self.tls, None)


@dataclass(kw_only=True)
class ClientPrefixConfig(ClientPolicyFields):
    """One ``configs`` entry of ``io.l5d.static``: ``prefix`` may hold ``*`` (one
    segment) and ``{var}`` captures (one segment, remembered by name)."""

    prefix: str = field(metadata={"check": _check_prefix})

    def __post_init__(self) -> None:
        check_common_name_vars(self.tls, self.prefix)


@dataclass
class StaticClientConfig:
    kind: str = "io.l5d.static"
    configs: list[ClientPrefixConfig] = field(default_factory=list)


ClientBlock = Union[GlobalClientConfig, StaticClientConfig]

SERVICE_KINDS = {"io.l5d.global": GlobalServiceConfig, "io.l5d.static": StaticServiceConfig}
CLIENT_KINDS = {"io.l5d.global": GlobalClientConfig, "io.l5d.static": StaticClientConfig}
