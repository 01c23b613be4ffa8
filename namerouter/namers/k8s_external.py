"""``io.l5d.k8s.external``: a Kubernetes Service's external load-balancer address
(Linkerd's ServiceNamer), for routers that run outside the cluster.

::

    namers:
    - kind: io.l5d.k8s.external
      experimental: true
      host: localhost        # kubectl proxy, as io.l5d.k8s
      port: 8001

Name: ``/#/io.l5d.k8s.external/<namespace>/<port>/<service>[/<label value>]`` (with
``labelSelector``, as ``io.l5d.k8s``). The Service is watched (list-then-watch,
``k8s/watch.py``) and the address set is every entry of
``status.loadBalancer.ingress`` (``ip``, or ``hostname`` resolved through DNS) with the
Service's port: ``<port>`` is a port *name* of ``spec.ports``, or a port *number* (the
Service port with that number).

The name is ``~`` (neg) while the Service does not exist, has no such port, or has no
ingress yet (a LoadBalancer still being provisioned), as in Linkerd. Differences on
purpose: every ingress entry is used (Linkerd keeps only the last one), and a numeric
port is the Service port with that number (Linkerd looks its *targetPort* up among
the port names, which finds nothing unless they happen to be equal).
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from ..k8s.client import K8sApi
from ..k8s.watch import MISSING, ObjectWatch
from ..naming import dns
from ..naming.addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, AddrFailed, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer, addr_tree_state
from ..naming.reactive import HeldActivity
from ..naming.var import PENDING, Activity, Var, start_stop
from .k8s import make_api

log = logging.getLogger(__name__)

KIND = "io.l5d.k8s.external"


@dataclass
class K8sExternalConfig:
    kind: str = KIND
    prefix: str = "/" + KIND
    host: Optional[str] = None
    port: Optional[int] = field(default=None, metadata={"min": 1, "max": 65535})
    labelSelector: Optional[str] = None
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def service_port(service: dict[str, Any], port: str) -> Optional[int]:
    """The Service port that ``port`` (a name or a number) names; None if none."""
    for p in (service.get("spec") or {}).get("ports") or []:
        if str(p.get("protocol") or "TCP").upper() != "TCP":
            continue
        if (port.isdigit() and p.get("port") == int(port)) or (not port.isdigit() and p.get("name") == port):
            n = p.get("port")
            return n if isinstance(n, int) and 0 < n < 65536 else None
    return None


def ingress_hosts(service: dict[str, Any]) -> list[str]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i.get("ip") or i.get("hostname")) for i in ingress if isinstance(i, dict)
            and (i.get("ip") or i.get("hostname"))]


class _Binding:
    """One (namespace, port, service, label value): its addresses, while observed."""

    def __init__(self, watch: ObjectWatch, port: str) -> None:
        self.watch = watch
        self.port = port
        self.addr: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._start, self._stop))
        self._obs: Any = None
        self._gen = 0
        self._task: Optional[asyncio.Task[None]] = None

    def _start(self) -> None:
        self._obs = self.watch.state.observe(self._on_service)

    def _stop(self) -> None:
        if self._obs is not None:
            self._obs.close()
            self._obs = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.addr.update(ADDR_PENDING)

    def _on_service(self, svc: Any) -> None:
        self._gen += 1
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if svc is PENDING:
            self.addr.update(ADDR_PENDING)
            return
        number = service_port(svc, self.port) if svc is not MISSING else None
        hosts = ingress_hosts(svc) if number is not None else []
        if number is None or not hosts:
            self.addr.update(ADDR_NEG)
            return
        if all(dns.ip_literal(h) for h in hosts):
            self.addr.update(AddrBound(Address(dns.ip_literal(h) or h, number) for h in hosts))
            return
        self._task = asyncio.get_running_loop().create_task(self._resolve(self._gen, hosts, number))

    async def _resolve(self, gen: int, hosts: list[str], port: int) -> None:
        results = await asyncio.gather(*(dns.resolve(h) for h in hosts), return_exceptions=True)
        if gen != self._gen:
            return
        addrs = [Address(ip, port) for r in results if not isinstance(r, BaseException) for ip in r]
        errors = [f"{h}: {r}" for h, r in zip(hosts, results) if isinstance(r, BaseException)]
        if addrs:
            self.addr.update(AddrBound(addrs))
        else:
            self.addr.update(AddrFailed("load-balancer ingress does not resolve: " + "; ".join(errors)))




class K8sExternalNamer(Namer):
    kind = KIND
    config_class = K8sExternalConfig

    def __init__(self, api: K8sApi, prefix: Optional[Path] = None, label_selector: Optional[str] = None,
                 max_backoff_s: float = 10.0, watch_timeout_s: Optional[int] = None) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        self.api = api
        self.label_selector = label_selector
        self.max_backoff_s = max_backoff_s
        self.watch_timeout_s = watch_timeout_s
        self._services: "weakref.WeakValueDictionary[tuple[Any, ...], ObjectWatch]" = weakref.WeakValueDictionary()
        self._bindings: "weakref.WeakValueDictionary[tuple[Any, ...], _Binding]" = weakref.WeakValueDictionary()
        self._lookups: "weakref.WeakValueDictionary[Path, HeldActivity[NameTree[Any]]]" = weakref.WeakValueDictionary()

    @classmethod
    def from_config(cls, config: K8sExternalConfig, runtime: Any = None) -> "K8sExternalNamer":
        from ..naming.transform import build_transformers

        namer = cls(make_api(config.host, config.port), Path.read(config.prefix), config.labelSelector)
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        cached = self._lookups.get(path)
        if cached is not None:
            return cached
        n = 3 + (1 if self.label_selector else 0)
        if len(path) < n:
            return Activity.value(NEG)
        labels = [label.lower() for label in path.text_labels()[:n]]
        ns, port, svc = labels[:3]
        selector = f"{self.label_selector}={labels[3]}" if self.label_selector else None
        watch = self._services.get((ns, svc, selector))
        if watch is None:
            watch = ObjectWatch(self.api, "services", ns, svc, selector, self.max_backoff_s, self.watch_timeout_s)
            self._services[(ns, svc, selector)] = watch
        key = tuple(labels)
        binding = self._bindings.get(key)
        if binding is None:
            binding = self._bindings[key] = _Binding(watch, port)
        bound = BoundName(self.bound_id(Path.of(*labels)), binding.addr, path.drop(n))
        act = HeldActivity(binding, bound, binding.addr, lambda a: addr_tree_state(a, bound))
        self._lookups[path] = act
        return act

    async def close(self) -> None:
        for w in list(self._services.values()):
            if w.running:
                w._stop()
        await self.api.close()

    def admin_state(self) -> dict[str, Any]:
        return {
            "apiServer": self.api.base_url,
            "labelSelector": self.label_selector,
            "names": {self.bound_id(Path.of(*k)).show(): b.addr.sample().to_json()
                      for k, b in sorted(self._bindings.items())},
            "watches": [w.admin_state() for _, w in sorted(self._services.items(), key=lambda kv: str(kv[0]))],
        }
