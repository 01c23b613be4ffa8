"""The top-level router config (Linkerd's ``config.yaml``) and its loader.

Keys and defaults are Linkerd 1's: ``admin``, ``routers`` (required), ``namers``,
``telemetry``, ``usage``. Router blocks are the data plane's ``RouterConfig``
(``namerouter/proxy/config.py``); namers and interpreters are validated by the plugin
each ``kind`` names (``namerouter/plugins.py``). On top of per-field checks this module
checks what spans fields: every dtab parses, router labels are unique, no two servers
share a port, and each router's ``interpreter`` block fits its kind.

``AdminConfig`` and ``PrometheusConfig`` are shared with namerd (which declares its own
top level with ``admin`` port 9991).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
import os
from typing import Any, Optional, Union

from ..dtab import Dtab
from ..plugins import kind_of
from ..proxy.config import RouterConfig
from ..proxy.h2.config import H2RouterConfig, router_kinds
from ..tls.config import ServerTlsConfig
from ..tracing.config import TRACE_TELEMETERS, telemetry_problems
from .loader import ConfigError, ConfigIssue, MarkedDict, parse_text, read_source
from .validate import _INVALID, Validated, Validator, validate

#: Telemeter kinds Linkerd has that we don't: accepted with a warning, not an error,
#: so a Linkerd config.yaml still loads.
UNSUPPORTED_TELEMETERS = {
    "io.l5d.commonMetrics": "/admin/metrics.json is always served",
}


@dataclass
class AdminSecurityConfig:
    """Linkerd's ``admin.security``: which admin paths are served (others → 404)."""

    uiEnabled: bool = True
    #: ``POST /admin/shutdown`` and other state-changing endpoints
    controlEnabled: bool = True
    #: metrics, delegator, namer/client state, config
    diagnosticsEnabled: bool = True
    pathWhitelist: list[str] = field(default_factory=list, metadata={"doc": "regexes, full match"})
    pathBlacklist: list[str] = field(default_factory=list, metadata={"doc": "regexes, full match"})
    #: Host names accepted besides localhost and the admin's own addresses (others: 403,
    #: against DNS rebinding; ours, not Linkerd's)
    hostWhitelist: list[str] = field(default_factory=list, metadata={"doc": "host names, exact"})


@dataclass
class AdminConfig:
    ip: str = "127.0.0.1"
    port: int = field(default=9990, metadata={"min": 0, "max": 65535})
    shutdownGraceMs: int = field(default=10000, metadata={"min": 0})
    security: Optional[AdminSecurityConfig] = None
    #: serve the admin over TLS (Linkerd's server TLS block; see namerouter/tls/)
    tls: Optional[ServerTlsConfig] = None
    #: accepted for compatibility; aiohttp serves the admin from the event loop
    workerThreads: Optional[int] = field(default=None, metadata={"min": 1})


@dataclass
class PrometheusConfig:
    kind: str = "io.l5d.prometheus"
    path: str = "/admin/metrics/prometheus"
    prefix: str = ""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path: must start with '/', got {self.path!r}")


TELEMETERS = {"io.l5d.prometheus": PrometheusConfig, **TRACE_TELEMETERS}


@dataclass
class LinkerConfig:
    #: dispatched on ``protocol``: ``http`` (RouterConfig) or ``h2`` (H2RouterConfig)
    routers: list[Union[RouterConfig, H2RouterConfig]] = field(metadata={
        "min_items": 1, "kinds": router_kinds(), "kind_key": "protocol", "default_kind": "http"})
    admin: AdminConfig = field(default_factory=AdminConfig)
    namers: list[Any] = field(default_factory=list, metadata={"plugins": "NAMERS"})
    telemetry: list[Any] = field(default_factory=list, metadata={
        "kinds": TELEMETERS, "plugins": "TELEMETERS", "unsupported": UNSUPPORTED_TELEMETERS})
    #: Linkerd phoned home with it; accepted and ignored.
    usage: Any = None
    #: processes serving the routers (``namerouter --workers``): a number, or ``auto`` for
    #: one per core; they share each server port (SO_REUSEPORT). Not a Linkerd key.
    workers: Union[int, str] = 1
    #: per router (same order): the validated interpreter config, or None = default
    interpreters: list[Any] = field(default_factory=list, init=False, repr=False)

    def worker_count(self) -> int:
        """``workers`` as a number (``auto``: the cores this process may run on)."""
        return worker_count(self.workers)

    def prometheus(self) -> Optional[PrometheusConfig]:
        for t in self.telemetry:
            if isinstance(t, PrometheusConfig):
                return t
        return None


def worker_count(value: Union[int, str]) -> int:
    """A ``workers`` value as a number of processes; ValueError says what is wrong."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a number of processes (1 or more) or 'auto', got {value!r}")
    return value


def _router_checks(v: Validator, cfg: LinkerConfig, data: MarkedDict) -> None:
    """Checks that span fields: dtabs, labels, ports, interpreter blocks, workers."""
    try:
        worker_count(cfg.workers)
    except ValueError as e:
        v.error("workers", str(e), getattr(data, "lines", {}).get("workers"))
    raw_routers = data.get("routers") or []
    labels: dict[str, int] = {}
    ports: dict[tuple[str, int], str] = {}
    for i, r in enumerate(cfg.routers):
        raw = raw_routers[i] if i < len(raw_routers) and isinstance(raw_routers[i], dict) else MarkedDict()
        rlines = getattr(raw, "lines", {})
        rline = getattr(raw, "line", None)
        path = f"routers[{i}]"
        try:
            Dtab.read(r.dtab or "")
        except Exception as e:
            v.error(f"{path}.dtab", f"invalid dtab: {e}", rlines.get("dtab", rline))
        label = r.effective_label
        if label in labels:
            v.error(f"{path}.label", f"duplicate router label '{label}' (also routers[{labels[label]}]); "
                                     f"give each router its own label", rlines.get("label", rline))
        labels.setdefault(label, i)
        raw_servers = raw.get("servers") or []
        for j, s in enumerate(r.servers):
            key = (s.ip, s.port)
            if s.port == 0:
                continue  # ephemeral: the kernel picks distinct ports
            sline = raw_servers[j].lines.get("port") if j < len(raw_servers) and hasattr(raw_servers[j], "lines") else rline
            if key in ports:
                v.error(f"{path}.servers[{j}].port", f"port {s.port} on {s.ip} is already used by {ports[key]}", sline)
            ports.setdefault(key, f"{path}.servers[{j}]")
        interp = None
        if "interpreter" in raw and raw["interpreter"] is not None:
            interp = v.convert(Any, raw["interpreter"], f"{path}.interpreter", rlines.get("interpreter", rline),
                               {"plugins": "INTERPRETERS", "default_kind": "default"})
            interp = None if interp is _INVALID else interp
        cfg.interpreters.append(interp)
    raw_telemetry = data.get("telemetry")
    telemetry = raw_telemetry if isinstance(raw_telemetry, list) else []
    for i, message in telemetry_problems(telemetry):
        v.error(f"telemetry[{i}]", message, getattr(telemetry[i], "line", None))


#: Router protocols Linkerd has that namerouter will not route (refused in one line each,
#: instead of one error per thrift-only key).
UNSUPPORTED_PROTOCOLS = ("thrift", "thriftmux", "mux")


def _split_rpc_routers(data: Any) -> tuple[Any, list[ConfigIssue]]:
    """One issue per thrift/mux router, and the data with each of them replaced by an
    empty HTTP router, so the rest of the config is still checked (every other problem
    listed) without a pile of errors about thrift-only keys."""
    routers = data.get("routers") if isinstance(data, dict) else None
    if not isinstance(routers, list):
        return data, []
    issues = []
    kept = copy.copy(routers)  # keeps the line marks of the list and of the other routers
    for i, r in enumerate(routers):
        if isinstance(r, dict) and r.get("protocol") in UNSUPPORTED_PROTOCOLS:
            line = getattr(r, "lines", {}).get("protocol", getattr(r, "line", None))
            issues.append(ConfigIssue(f"routers[{i}].protocol", f"'{r['protocol']}': the thrift and mux protocols "
                                                                "are not supported (namerouter routes HTTP)", line))
            kept[i] = {"protocol": "http", "label": f"{r.get('label') or r['protocol']} (refused)"}
    if not issues:
        return data, []
    rest = copy.copy(data)
    rest["routers"] = kept
    return rest, issues


def validate_linker(data: Any, source: str = "") -> Validated[LinkerConfig]:
    """Validate parsed config data; ConfigError lists every problem found."""
    data, refused = _split_rpc_routers(data)
    try:
        validated = validate(LinkerConfig, data, source, checks=_router_checks,
                             expected="expected a mapping with a 'routers' key at the top level")
    except ConfigError as e:
        if refused:
            raise ConfigError(refused + list(e.errors), source) from None
        raise
    if refused:
        raise ConfigError(refused, source)
    return validated


def load_linker(source: Any) -> Validated[LinkerConfig]:
    """Read a config file (path, ``-`` for stdin, or an open file) and validate it."""
    text, name = read_source(source)
    return loads_linker(text, name)


def loads_linker(text: str, source: str = "<config>") -> Validated[LinkerConfig]:
    if not text.strip():
        raise ConfigError([ConfigIssue("", "config is empty")], source)
    return validate_linker(parse_text(text, source), source)


__all__ = ["AdminConfig", "AdminSecurityConfig", "PrometheusConfig", "LinkerConfig",
           "validate_linker", "load_linker", "loads_linker", "kind_of", "UNSUPPORTED_TELEMETERS"]
