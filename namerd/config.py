"""namerd's config file (Linkerd's namerd ``config.yaml``), declared as dataclasses
and validated by the generic validator of ``namerouter.config``.

Top level, as Linkerd: ``admin`` (port 9991), ``storage`` (kind-dispatched through
``plugins.NAMERD_STORAGE``), ``namers``, ``interfaces``, ``telemetry``. Differences,
on purpose:

* ``storage`` may be left out: namerd then keeps dtabs in the single-node file store
  ``io.namerouter.file`` (``./namerd-dtabs.json``) and says so in a warning, so a
  first run needs no database. Linkerd refuses to start instead.
* Interfaces: ``io.l5d.httpController`` (``namerd/api.py``), ``io.l5d.mesh``,
  ``io.l5d.thriftNameInterpreter`` and ``io.l5d.destination`` (``namerd/iface/``), each
  with an optional server ``tls`` block (Linkerd's shape).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from namerouter.config.loader import ConfigError, ConfigIssue, parse_text, read_source
from namerouter.config.schema import AdminSecurityConfig
from namerouter.config.validate import Validated, Validator, validate
from namerouter.dtab import Path
from namerouter.tls.config import ServerTlsConfig

#: Interfaces Linkerd's namerd has that this one does not serve (none left).
UNSUPPORTED_INTERFACES: dict[str, str] = {}

UNSUPPORTED_TELEMETERS = {
    "io.l5d.zipkin": "tracing export is not implemented",
    "io.l5d.tracelog": "trace logging is not implemented",
    "io.l5d.commonMetrics": "/admin/metrics.json is always served",
}

DEFAULT_FILE_STORE = "namerd-dtabs.json"


@dataclass
class NamerdAdminConfig:
    ip: str = "127.0.0.1"
    port: int = field(default=9991, metadata={"min": 0, "max": 65535})
    #: serve the admin over TLS (Linkerd's server TLS block)
    tls: Optional[ServerTlsConfig] = None
    #: Linkerd's keys, as the router's: the dtab editor's writes are ``controlEnabled``
    security: Optional[AdminSecurityConfig] = None


@dataclass
class HttpControllerConfig:
    """``io.l5d.httpController`` (Linkerd default 127.0.0.1:4180)."""

    kind: str = "io.l5d.httpController"
    ip: str = "127.0.0.1"
    port: int = field(default=4180, metadata={"min": 0, "max": 65535})
    #: serve the API over TLS; ``requireClientAuth`` + ``caCertPath`` for mutual TLS
    tls: Optional[ServerTlsConfig] = None
    #: accepted for compatibility
    socketOptions: Any = None
    #: largest dtab body accepted (413 beyond); large ones are parsed off the event loop
    maxDtabKB: int = field(default=1024, metadata={"min": 1, "max": 64 * 1024})
    #: a watch stream whose client takes no data for this long is closed
    watchStallTimeoutMs: int = field(default=30_000, metadata={"min": 100})


def _check_ns(ns: str) -> str:
    from namerd.storage.base import check_namespace

    return check_namespace(ns)


@dataclass
class MeshIfaceConfig:
    """``io.l5d.mesh`` (Linkerd default 127.0.0.1:4321): the gRPC mesh API."""

    kind: str = "io.l5d.mesh"
    ip: str = "127.0.0.1"
    port: int = field(default=4321, metadata={"min": 0, "max": 65535})
    tls: Optional[ServerTlsConfig] = None
    socketOptions: Any = None
    #: accepted for compatibility (Linkerd's per-interface HTTP/2 access log); not written
    h2AccessLog: Optional[str] = None
    h2AccessLogRollPolicy: Optional[str] = None
    h2AccessLogAppend: Optional[bool] = None
    h2AccessLogRotateCount: Optional[int] = None


@dataclass
class CapacityConfig:
    """The thrift interface's ``cache`` block (Linkerd's names and defaults)."""

    bindingCacheActive: int = field(default=1000, metadata={"min": 1})
    bindingCacheInactive: int = field(default=100, metadata={"min": 0})
    bindingCacheInactiveTTLSecs: int = field(default=600, metadata={"min": 0})
    addrCacheActive: int = field(default=1000, metadata={"min": 1})
    addrCacheInactive: int = field(default=100, metadata={"min": 0})
    addrCacheInactiveTTLSecs: int = field(default=600, metadata={"min": 0})


@dataclass
class ThriftIfaceConfig:
    """``io.l5d.thriftNameInterpreter`` (Linkerd default 127.0.0.1:4100)."""

    kind: str = "io.l5d.thriftNameInterpreter"
    ip: str = "127.0.0.1"
    port: int = field(default=4100, metadata={"min": 0, "max": 65535})
    cache: CapacityConfig = field(default_factory=CapacityConfig)
    tls: Optional[ServerTlsConfig] = None
    socketOptions: Any = None
    #: accepted for compatibility with old configs (Linkerd ignores them too)
    retryBaseSecs: Optional[int] = None
    retryJitterSecs: Optional[int] = None


@dataclass
class DestinationIfaceConfig:
    """``io.l5d.destination`` (Linkerd default 127.0.0.1:8086): Linkerd 2's destination API."""

    kind: str = "io.l5d.destination"
    ip: str = "127.0.0.1"
    port: int = field(default=8086, metadata={"min": 0, "max": 65535})
    prefix: str = "/svc"
    namespace: str = field(default="default", metadata={"check": lambda ns: _check_ns(ns)})
    tls: Optional[ServerTlsConfig] = None
    socketOptions: Any = None


@dataclass
class NamerdPrometheusConfig:
    kind: str = "io.l5d.prometheus"
    path: str = "/admin/metrics/prometheus"
    prefix: str = ""


INTERFACES = {
    "io.l5d.httpController": HttpControllerConfig,
    "io.l5d.mesh": MeshIfaceConfig,
    "io.l5d.thriftNameInterpreter": ThriftIfaceConfig,
    "io.l5d.destination": DestinationIfaceConfig,
}
TELEMETERS = {"io.l5d.prometheus": NamerdPrometheusConfig}


@dataclass
class NamerdConfig:
    interfaces: list[Any] = field(metadata={"kinds": INTERFACES, "unsupported": UNSUPPORTED_INTERFACES})
    admin: NamerdAdminConfig = field(default_factory=NamerdAdminConfig)
    storage: Any = field(default=None, metadata={"plugins": "NAMERD_STORAGE"})
    namers: list[Any] = field(default_factory=list, metadata={"plugins": "NAMERS"})
    telemetry: list[Any] = field(default_factory=list, metadata={
        "kinds": TELEMETERS, "plugins": "TELEMETERS", "unsupported": UNSUPPORTED_TELEMETERS})

    @property
    def http_controllers(self) -> list[HttpControllerConfig]:
        return [i for i in self.interfaces if isinstance(i, HttpControllerConfig)]

    @property
    def other_interfaces(self) -> list[Any]:
        """mesh, thrift and destination interfaces, in config order."""
        return [i for i in self.interfaces if not isinstance(i, HttpControllerConfig)]


def validate_namerd(data: Any, source: str = "") -> Validated[NamerdConfig]:
    """Validate parsed data; ConfigError lists every problem (key path and line)."""
    return validate(NamerdConfig, data, source, checks=_checks,
                    expected="expected a mapping with 'storage' and 'interfaces' keys")


def _checks(v: Validator, cfg: NamerdConfig, data: Any) -> None:
    lines = getattr(data, "lines", {})
    if cfg.storage is None:
        from namerd.storage.file import FileStoreConfig

        cfg.storage = FileStoreConfig(DEFAULT_FILE_STORE)
        object.__setattr__(cfg.storage, "_kind", "io.namerouter.file")
        v.warn("storage", f"no storage configured: dtabs are kept in the single-node file store "
                          f"io.namerouter.file at ./{DEFAULT_FILE_STORE}", getattr(data, "line", 1))
    if not cfg.interfaces:
        v.error("interfaces", "no interface: namerd would serve nothing "
                              "(add {kind: io.l5d.httpController, port: 4180})", lines.get("interfaces", 1))
    for i, c in enumerate(cfg.interfaces):
        if isinstance(c, DestinationIfaceConfig):
            try:
                check_prefix = Path.read(c.prefix)
                if len(check_prefix.labels) != 1:
                    raise ValueError("must be a one-element path such as /svc")
            except Exception as e:
                v.error(f"interfaces[{i}].prefix", f"{c.prefix!r}: {e}", lines.get("interfaces"))
    seen: dict[tuple[str, int], str] = {}
    endpoints = [("admin", cfg.admin.ip, cfg.admin.port)] + [
        (f"interfaces[{i}]", c.ip, c.port) for i, c in enumerate(cfg.interfaces)]
    for name, ip, port in endpoints:
        if port == 0:
            continue
        if (ip, port) in seen:
            v.error(f"{name}.port", f"port {port} on {ip} is already used by {seen[(ip, port)]}",
                    lines.get("interfaces"))
        seen.setdefault((ip, port), name)
    # Initial in-memory namespaces must parse (errors name the namespace and line:col).
    namespaces = getattr(cfg.storage, "namespaces", None)
    if isinstance(namespaces, dict):
        from namerd.dtabtext import DtabParseError, parse_dtab_at
        from namerd.storage.base import InvalidNamespace, check_namespace

        for ns, text in namespaces.items():
            try:
                check_namespace(ns)
                parse_dtab_at(text or "", f"namespace {ns}")
            except (DtabParseError, InvalidNamespace) as e:
                v.error(f"storage.namespaces.{ns}", str(e), lines.get("storage"))


def load_namerd(source: Any) -> Validated[NamerdConfig]:
    """Read (path, ``-`` for stdin, or open file), parse and validate a namerd config."""
    text, name = read_source(source)
    return loads_namerd(text, name)


def loads_namerd(text: str, source: str = "<config>") -> Validated[NamerdConfig]:
    if not text.strip():
        raise ConfigError([ConfigIssue("", "config is empty")], source)
    return validate_namerd(parse_text(text, source), source)
