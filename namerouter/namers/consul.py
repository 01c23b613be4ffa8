"""``io.l5d.consul``: services from Consul's catalog or health API, kept current by
blocking queries (linkerd1-map.md §3.3).

Names: ``/#/io.l5d.consul/<dc>/<service>[/residual]``, or with ``includeTag: true``
``/#/io.l5d.consul/<dc>/<tag>/<service>[/residual]``. ``<dc>`` = ``.local`` is the
agent's datacenter. Service and tag are lower-cased (Linkerd #1039).

One watch per (dc, tag, service), shared by every lookup of that service. A watch
runs only while its address Var (or a lookup's Activity) is observed, so junk names
(scanners sending random Host headers, Linkerd #1766) do not keep Consul queries
alive. Unlike Linkerd, a watch never stops on its own: a missing or backwards
``X-Consul-Index``, a 5xx or a dropped connection is retried with jittered backoff,
without an index, while the last good address set stays in place (Linkerd #1230,
#2003).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from ..backoff import JitteredBackoff
from ..consul.client import (
    CONSISTENCY_MODES,
    ConsulClient,
    NoPathToDatacenter,
    next_index,
)
from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from ..naming.addr import ADDR_NEG, ADDR_PENDING, WEIGHT_KEY, Addr, AddrBound, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer, addr_tree_state
from ..naming.reactive import HeldActivity
from ..naming.var import Activity, Var, start_stop

log = logging.getLogger(__name__)

LOCAL_DC = ".local"

#: Consul check statuses from best to worst; the worst check decides an instance's health.
HEALTH_ORDER = ("passing", "warning", "critical", "maintenance")

#: Metadata key of the Host/authority the router must send (``setHost: true``).
AUTHORITY_KEY = "authority"


# Configuration -----------------------------------------------------------------------

@dataclass
class TagWeight:
    """``weights: [{tag: primary, weight: 100}]``: instances carrying the tag get the weight."""

    tag: str
    weight: float = field(default=1.0, metadata={"min": 0.0})


@dataclass
class ConsulTls:
    """``tls``: HTTPS to the agent (Linkerd's TlsClientConfig subset)."""

    disableValidation: bool = False
    commonName: Optional[str] = None
    trustCerts: list[str] = field(default_factory=list)
    trustCertsBundle: Optional[str] = None


def _check_statuses(value: Any) -> None:
    for s in value or []:
        if str(s).lower() not in HEALTH_ORDER:
            raise ValueError(f"unknown health status {s!r} (expected one of {', '.join(HEALTH_ORDER)})")


@dataclass
class ConsulNamerConfig:
    """Linkerd's ``io.l5d.consul`` namer keys and defaults."""

    kind: str = "io.l5d.consul"
    prefix: str = "/io.l5d.consul"
    host: str = "localhost"
    port: int = field(default=8500, metadata={"min": 1, "max": 65535})
    includeTag: bool = False
    useHealthCheck: bool = False
    healthStatuses: list[str] = field(default_factory=lambda: ["passing"], metadata={"choices": HEALTH_ORDER})
    token: Optional[str] = None
    setHost: bool = False
    consistencyMode: Optional[str] = field(default=None, metadata={"choices": CONSISTENCY_MODES})
    failFast: bool = False
    preferServiceAddress: bool = True
    weights: list[TagWeight] = field(default_factory=list)
    tls: Optional[ConsulTls] = None
    transferMetadata: bool = False
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def _tls_context(tls: ConsulTls) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.trustCertsBundle)
    for ca in tls.trustCerts:
        ctx.load_verify_locations(cafile=ca)
    if tls.disableValidation:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _path_from_text(text: str) -> Path:
    return Path.read(text)


# Turning Consul answers into addresses --------------------------------------------------

def worst_status(checks: Any) -> str:
    """The worst status among an instance's checks; unknown strings count as passing."""
    worst = 0
    for c in checks or []:
        st = str((c or {}).get("Status", "")).lower()
        rank = HEALTH_ORDER.index(st) if st in HEALTH_ORDER else 0
        worst = max(worst, rank)
    return HEALTH_ORDER[worst]


def _instance_fields(entry: dict[str, Any], health: bool) -> tuple[str, str, Any, list[Any], dict[str, Any], dict[str, Any]]:
    """(node address, service address, port, tags, service meta, node meta) of one entry."""
    if health:
        node = entry.get("Node") or {}
        svc = entry.get("Service") or {}
        return (
            node.get("Address") or "",
            svc.get("Address") or "",
            svc.get("Port"),
            svc.get("Tags") or [],
            svc.get("Meta") or {},
            node.get("Meta") or {},
        )
    return (
        entry.get("Address") or "",
        entry.get("ServiceAddress") or "",
        entry.get("ServicePort"),
        entry.get("ServiceTags") or [],
        entry.get("ServiceMeta") or {},
        entry.get("NodeMeta") or {},
    )


class AddressMapper:
    """Config-dependent conversion of a catalog/health answer to a set of Address."""

    def __init__(self, cfg: ConsulNamerConfig) -> None:
        self.health = cfg.useHealthCheck
        self.statuses = frozenset(s.lower() for s in (cfg.healthStatuses or ["passing"]))
        self.prefer_service_address = cfg.preferServiceAddress
        self.weights = {w.tag: float(w.weight) for w in cfg.weights}
        self.transfer_metadata = cfg.transferMetadata

    @property
    def passing_param(self) -> Optional[bool]:
        """``passing=true`` only when exactly ``[passing]`` is wanted (server-side filter)."""
        if not self.health:
            return None
        return self.statuses == {"passing"}

    def addresses(self, entries: Any) -> set[Address]:
        if not isinstance(entries, list):
            raise ValueError(f"expected a JSON array of service entries, got {type(entries).__name__}")
        out: set[Address] = set()
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if self.health and worst_status(entry.get("Checks")) not in self.statuses:
                continue
            node_addr, svc_addr, port, tags, svc_meta, node_meta = _instance_fields(entry, self.health)
            host = svc_addr if (self.prefer_service_address and svc_addr) else node_addr
            if not host or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                continue  # entries without a usable address or port are skipped, as Linkerd does
            weight = max((self.weights[t] for t in tags if t in self.weights), default=1.0)
            meta: dict[str, Any] = {WEIGHT_KEY: weight}
            if self.transfer_metadata:
                for k, v in {**node_meta, **svc_meta}.items():
                    meta.setdefault(str(k), v)
            out.add(Address(host, port, meta))
        return out


# One watched service ---------------------------------------------------------------------

#: (dc, tag, service): one watch each
ServiceKey = tuple[str, Optional[str], str]


class ServiceWatch:
    """The blocking-query loop of one (dc, tag, service) and its address Var."""

    def __init__(self, namer: "ConsulNamer", dc: str, service: str, tag: Optional[str]) -> None:
        self._namer_ref = weakref.ref(namer)
        self.dc = dc
        self.service = service
        self.tag = tag
        self.addr: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._start, self._stop))
        self._task: Optional[asyncio.Task[None]] = None
        self.index: Optional[int] = None
        self.resolved_dc: Optional[str] = None
        self.last_request: Optional[str] = None
        self.last_error: Optional[str] = None
        self.last_error_at: Optional[float] = None
        self.last_update_at: Optional[float] = None
        self.errors = 0
        self.updates = 0

    @property
    def key(self) -> ServiceKey:
        return (self.dc, self.tag, self.service)

    def _start(self) -> None:
        namer = self._namer_ref()
        if namer is None or self._task is not None:
            return
        namer._stat("service/opens")
        self._task = asyncio.get_running_loop().create_task(self._run(namer), name=f"consul:{self.key}")
        namer._running[self.key] = self

    def _stop(self) -> None:
        task, self._task = self._task, None
        namer = self._namer_ref()
        if namer is not None:
            namer._stat("service/closes")
            if namer._running.get(self.key) is self:
                del namer._running[self.key]
        if task is not None:
            task.cancel()
        # Nobody looks any more: forget the (possibly stale) set; a new observer re-reads.
        self.index = None
        self.addr.update(ADDR_PENDING)

    def _fail(self, namer: "ConsulNamer", err: BaseException, neg: bool = False) -> None:
        self.errors += 1
        namer._stat("service/errors")
        self.last_error = f"{type(err).__name__}: {err}"
        self.last_error_at = time.time()
        self.index = None  # start over without an index
        if neg or self.addr.sample() is ADDR_PENDING:
            # Nothing known yet (or the datacenter is gone): negative, so an Alt in the
            # dtab can fall through; the last good set is otherwise kept.
            self.addr.update(ADDR_NEG)

    async def _run(self, namer: "ConsulNamer") -> None:
        backoff = JitteredBackoff(0.01, namer.max_backoff_s)
        mapper = namer.mapper
        while True:
            started = time.monotonic()
            try:
                dc = await namer.resolve_dc(self.dc)
                self.resolved_dc = dc
                meta = await namer.addr_meta(dc, self.service, self.tag)
                self.last_request = (
                    f"{'health' if mapper.health else 'catalog'}/service/{self.service}"
                    f"?dc={dc}{'&tag=' + self.tag if self.tag else ''}"
                    f"{'&index=' + str(self.index) if self.index is not None else ''}"
                )
                rsp = await namer.client.service_nodes(
                    self.service,
                    dc=dc,
                    tag=self.tag,
                    index=self.index,
                    wait=namer.wait,
                    consistency=namer.consistency,
                    health=mapper.health,
                    passing=mapper.passing_param,
                )
                new_index = next_index(self.index, rsp.index)
                addrs = mapper.addresses(rsp.json())
                unchanged_index = new_index == self.index
                self.addr.update(AddrBound(addrs, meta) if addrs else ADDR_NEG)
                self.index = new_index
                self.updates += 1
                self.last_update_at = time.time()
                namer._stat("service/updates")
                backoff.reset()
                if unchanged_index and time.monotonic() - started < 0.05:
                    # The server did not block although nothing changed: do not spin.
                    await asyncio.sleep(backoff.next())
            except asyncio.CancelledError:
                raise
            except NoPathToDatacenter as e:
                self._fail(namer, e, neg=True)
                await asyncio.sleep(backoff.next())
            except Exception as e:  # network errors, 5xx, bad JSON, index problems
                log.debug("consul watch %s failed: %s", self.key, e)
                self._fail(namer, e)
                await asyncio.sleep(backoff.next())

    def state(self) -> dict[str, Any]:
        return {
            "state": self.addr.sample().to_json(),
            "poll": {
                "datacenter": self.resolved_dc or self.dc,
                "index": self.index,
                "request": self.last_request,
                "updates": self.updates,
                "errors": self.errors,
                "lastError": self.last_error,
                "lastErrorAt": self.last_error_at,
                "lastUpdateAt": self.last_update_at,
                "running": self._task is not None,
            },
        }




# The namer ---------------------------------------------------------------------------------

class ConsulNamer(Namer):
    kind = "io.l5d.consul"
    config_class = ConsulNamerConfig

    def __init__(
        self,
        config: Optional[ConsulNamerConfig] = None,
        prefix: Optional[Path] = None,
        client: Optional[ConsulClient] = None,
        metrics: Any = None,
        max_backoff_s: float = 5.0,
        wait: Optional[str] = None,
    ) -> None:
        cfg = config or ConsulNamerConfig()
        super().__init__(prefix if prefix is not None else _path_from_text(cfg.prefix))
        self.config = cfg
        if client is None:
            tls = cfg.tls
            client = ConsulClient(
                cfg.host,
                cfg.port,
                token=cfg.token,
                scheme="https" if tls is not None else "http",
                ssl=_tls_context(tls) if tls is not None else None,
            )
        self.client = client
        self.mapper = AddressMapper(cfg)
        self.consistency = cfg.consistencyMode if cfg.consistencyMode != "default" else None
        self.max_backoff_s = max_backoff_s
        #: Blocking ``wait`` sent to Consul; None = Consul's default (5 min), as Linkerd.
        self.wait = wait
        self._metrics = metrics
        self._stats_prefix = "namer/" + "/".join(self.prefix.text_labels()) + "/"
        self._watches: "weakref.WeakValueDictionary[ServiceKey, ServiceWatch]" = weakref.WeakValueDictionary()
        self._running: dict[ServiceKey, ServiceWatch] = {}
        self._lookups: "weakref.WeakValueDictionary[Path, HeldActivity[NameTree[Any]]]" = weakref.WeakValueDictionary()
        self._agent: Optional[dict[str, Any]] = None
        self._agent_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: ConsulNamerConfig, runtime: Any = None) -> "ConsulNamer":
        from ..naming.transform import build_transformers

        _check_statuses(config.healthStatuses)
        namer = cls(config, metrics=getattr(runtime, "metrics", None))
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    # Namer API ---------------------------------------------------------------------
    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        self._stat("lookups")
        cached = self._lookups.get(path)
        if cached is not None:
            return cached
        n = 3 if self.config.includeTag else 2
        if len(path) < n:
            return Activity.value(NEG)
        try:
            labels = [l.decode("utf-8") for l in path.labels[:n]]
        except UnicodeDecodeError:
            return Activity.value(NEG)
        dc = labels[0]
        tag = labels[1].lower() if self.config.includeTag else None
        service = labels[-1].lower()
        key = (dc, tag, service)
        watch = self._watches.get(key)
        if watch is None:
            watch = ServiceWatch(self, dc, service, tag)
            self._watches[key] = watch
        bound = BoundName(self.bound_id(path.take(n)), watch.addr, path.drop(n))
        act = HeldActivity(watch, bound, watch.addr, lambda v: addr_tree_state(v, bound))
        self._lookups[path] = act
        return act

    async def close(self) -> None:
        for w in list(self._running.values()):
            w._stop()
        await self.client.close()

    def admin_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, w in sorted(self._watches.items(), key=lambda kv: str(kv[0])):
            dc, tag, svc = key
            name = Path.of(*[x for x in (dc, tag, svc) if x is not None])
            out[self.bound_id(name).show()] = w.state()
        return out

    # Shared pieces used by the watches ------------------------------------------------
    async def _agent_self(self) -> dict[str, Any]:
        """``/v1/agent/self``, fetched once (Linkerd does the same) and cached."""
        if self._agent is not None:
            return self._agent
        async with self._agent_lock:
            if self._agent is None:
                self._agent = await self.client.agent_self()
        return self._agent

    async def resolve_dc(self, dc: str) -> str:
        if dc != LOCAL_DC:
            return dc
        agent = await self._agent_self()
        name = (agent.get("Config") or {}).get("Datacenter")
        if not name:
            raise ValueError("consul /v1/agent/self has no Config.Datacenter")
        return str(name)

    async def domain(self) -> str:
        agent = await self._agent_self()
        dom = (agent.get("Config") or {}).get("Domain") or (agent.get("DebugConfig") or {}).get("DNSDomain") \
            or "consul"
        return str(dom).strip(".")

    async def addr_meta(self, dc: str, service: str, tag: Optional[str]) -> dict[str, Any]:
        """Set-level metadata: ``authority`` for ``setHost`` (the router rewrites Host to it)."""
        if not self.config.setHost:
            return {}
        dom = await self.domain()
        host = f"{service}.service.{dc}.{dom}" if tag is None else f"{tag}.{service}.service.{dc}.{dom}"
        return {AUTHORITY_KEY: host}

    def _stat(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.counter(self._stats_prefix + name).incr()

    def watch_count(self) -> int:
        return len(self._running)


__all__ = ["ConsulNamer", "ConsulNamerConfig", "TagWeight", "ConsulTls", "AddressMapper", "worst_status"]
