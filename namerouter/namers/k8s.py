"""``io.l5d.k8s``: Kubernetes Endpoints (and Services, for numeric ports) as address sets
(linkerd1-map.md §3.4).

Names: ``/#/io.l5d.k8s/<namespace>/<port>/<service>[/residual]``; with
``labelSelector: <key>`` one more segment, the label's value:
``/#/io.l5d.k8s/<namespace>/<port>/<service>/<value>[/residual]`` (the selector
``<key>=<value>`` goes on every API call). The name segments are lower-cased.

``<port>`` is a port *name* from the Endpoints object, or a *number*: then the Service
is watched too and its ``spec.ports[port == number].targetPort`` decides — a numeric
targetPort is used as is, a named one is looked up in the Endpoints ports.

Only ready addresses (``subsets[].addresses``) are used, never ``notReadyAddresses``;
only TCP ports (a port without ``protocol`` is TCP). Every address carries
``nodeName`` in its metadata for the daemonset/localnode transformers. Each subset
contributes its addresses with *its* number for the port name (Linkerd merges all
subsets' ports first, which mixes numbers up while a rollout changes a containerPort).

Port name absent (including a missing or deleted Endpoints object) → Neg; port known
but no ready address → bound with an empty set.
"""
from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from ..dtab.path import Path
from ..dtab.tree import NEG, Leaf, NameTree
from ..k8s.client import K8sApi, in_cluster_available
from ..k8s.watch import MISSING, ObjectWatch
from ..naming.addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer
from ..naming.reactive import HeldActivity
from ..naming.var import PENDING, Activity, ActivityState, Ok, Var, start_stop

log = logging.getLogger(__name__)

KIND = "io.l5d.k8s"
#: Address metadata key with the pod's node (Linkerd's ``Metadata.nodeName``).
NODE_NAME_KEY = "nodeName"

_NEG = "neg"


@dataclass
class K8sNamerConfig:
    """Linkerd's ``io.l5d.k8s`` keys. With neither ``host`` nor ``port`` set the namer
    talks to the API server in-cluster when it runs in a pod (service-account token,
    ``KUBERNETES_SERVICE_HOST``), else to ``kubectl proxy`` on ``localhost:8001``."""

    kind: str = KIND
    prefix: str = "/" + KIND
    host: Optional[str] = None
    port: Optional[int] = field(default=None, metadata={"min": 1, "max": 65535})
    labelSelector: Optional[str] = None
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def make_api(host: Optional[str], port: Optional[int], sa_dir: Optional[str] = None,
             environ: Optional[dict[str, Any]] = None) -> K8sApi:
    """kubectl proxy when configured (or when not in a pod), else in-cluster HTTPS."""
    from ..k8s.client import SERVICE_ACCOUNT_DIR

    env = os.environ if environ is None else environ
    sa = sa_dir or SERVICE_ACCOUNT_DIR
    if host is None and port is None and in_cluster_available(sa, env):
        return K8sApi.in_cluster(sa, env)
    return K8sApi.proxy(host, port)


# Endpoints / Service → addresses -------------------------------------------------------------

def _tcp(port: dict[str, Any]) -> bool:
    return str(port.get("protocol") or "TCP").upper() == "TCP"


def endpoint_port_names(endpoints: dict[str, Any]) -> set[str]:
    return {
        p["name"] for s in endpoints.get("subsets") or [] for p in s.get("ports") or []
        if p.get("name") and _tcp(p)
    }


def _ready(subset: dict[str, Any]) -> list[tuple[str, Optional[str]]]:
    return [(a["ip"], a.get("nodeName")) for a in subset.get("addresses") or [] if a.get("ip")]


def _address(ip: str, port: int, node: Optional[str]) -> Address:
    return Address(ip, port, {NODE_NAME_KEY: node} if node else None)


def addresses_for_port_name(endpoints: dict[str, Any], name: str) -> Optional[set[Address]]:
    """Ready addresses × the subset's TCP port called ``name``; None if no subset has it."""
    found = False
    out: set[Address] = set()
    for s in endpoints.get("subsets") or []:
        nums = [p.get("port") for p in s.get("ports") or [] if p.get("name") == name and _tcp(p)]
        if not nums or not isinstance(nums[0], int):
            continue
        found = True
        out.update(_address(ip, nums[0], node) for ip, node in _ready(s))
    return out if found else None


def addresses_for_number(endpoints: dict[str, Any], number: int, port_name: Optional[str]) -> set[Address]:
    """Ready addresses × ``number`` for a numeric targetPort.

    Endpoints ports carry the Service port's name, so the subsets that serve this Service
    port are those with a TCP port of that name (or of that number); when no subset says
    so (an inconsistent object) every ready address is used, as Linkerd does.
    """
    subsets = endpoints.get("subsets") or []
    serving = [
        s for s in subsets
        if any(_tcp(p) and ((port_name and p.get("name") == port_name) or p.get("port") == number)
               for p in s.get("ports") or [])
    ] or subsets
    return {_address(ip, number, node) for s in serving for ip, node in _ready(s)}


def target_port(service: dict[str, Any], number: int) -> Optional[tuple[int | str, Optional[str]]]:
    """(targetPort, port name) of the Service's TCP port ``number``; None if it has none."""
    for p in (service.get("spec") or {}).get("ports") or []:
        if p.get("port") == number and _tcp(p):
            t = p.get("targetPort")
            # Kubernetes defaults targetPort to the port itself.
            return (number if t is None or t == "" else t), p.get("name")
    return None


def resolve(port: str, endpoints: Any, service: Any) -> Any:
    """PENDING, ``_NEG`` or a set of Address for one (port, Endpoints, Service) state."""
    if endpoints is PENDING or (port.isdigit() and service is PENDING):
        return PENDING
    if endpoints is MISSING:
        return _NEG
    if not port.isdigit():
        found = addresses_for_port_name(endpoints, port)
        return _NEG if found is None else found
    if service is MISSING:
        return _NEG
    found_port = target_port(service, int(port))
    if found_port is None:
        return _NEG
    target, name = found_port
    if isinstance(target, int):
        return addresses_for_number(endpoints, target, name)
    found = addresses_for_port_name(endpoints, str(target))
    return _NEG if found is None else found


# Bindings ------------------------------------------------------------------------------------

class _Binding:
    """One (namespace, port, service, label value): its address Var and tree result.

    Observes its Endpoints (and Service) watch only while its own Vars are observed.
    """

    def __init__(self, id: Path, port: str, endpoints: ObjectWatch, service: Optional[ObjectWatch]) -> None:
        self.id = id
        self.port = port
        self.endpoints = endpoints
        self.service = service
        self.addr: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._acquire, self._release))
        #: PENDING, _NEG or "bound"
        self.result: Var[Any] = Var.lazy(PENDING, start_stop(self._acquire, self._release))
        self._refs = 0
        self._closables: list[Any] = []

    def _acquire(self) -> None:
        self._refs += 1
        if self._refs == 1:
            self._closables.append(self.endpoints.state.observe(lambda _: self._recompute()))
            if self.service is not None:
                self._closables.append(self.service.state.observe(lambda _: self._recompute()))

    def _release(self) -> None:
        self._refs -= 1
        if self._refs == 0:
            while self._closables:
                self._closables.pop().close()

    def _recompute(self) -> None:
        r = resolve(self.port, self.endpoints.state.sample(),
                    self.service.state.sample() if self.service is not None else None)
        if r is PENDING:
            self.addr.update(ADDR_PENDING)
            self.result.update(PENDING)
        elif r is _NEG:
            self.addr.update(ADDR_NEG)
            self.result.update(_NEG)
        else:
            self.addr.update(AddrBound(r))
            self.result.update("bound")


def _tree_state(result: object, bound: BoundName) -> ActivityState[NameTree[Any]]:
    if result is PENDING:
        return PENDING
    if result is _NEG:
        return Ok(NEG)
    return Ok(Leaf(bound))


class K8sNamer(Namer):
    kind = KIND
    config_class: ClassVar[type] = K8sNamerConfig

    def __init__(
        self,
        api: K8sApi,
        prefix: Optional[Path] = None,
        label_selector: Optional[str] = None,
        max_backoff_s: float = 10.0,
        watch_timeout_s: Optional[int] = None,
        metrics: Any = None,
    ) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        self.api = api
        self.label_selector = label_selector
        self.max_backoff_s = max_backoff_s
        self.watch_timeout_s = watch_timeout_s
        self._metrics = metrics
        self._objects: "weakref.WeakValueDictionary[tuple[Any, ...], ObjectWatch]" = weakref.WeakValueDictionary()
        self._bindings: "weakref.WeakValueDictionary[tuple[Any, ...], _Binding]" = weakref.WeakValueDictionary()
        self._lookups: "weakref.WeakValueDictionary[Path, HeldActivity[NameTree[Any]]]" = weakref.WeakValueDictionary()

    @classmethod
    def from_config(cls, config: K8sNamerConfig, runtime: Any = None) -> "K8sNamer":
        from ..naming.transform import build_transformers

        namer = cls(
            make_api(config.host, config.port),
            prefix=Path.read(config.prefix),
            label_selector=config.labelSelector,
            metrics=getattr(runtime, "metrics", None),
        )
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    @property
    def name_length(self) -> int:
        return 3 + (1 if self.label_selector else 0)

    def namespace_port_service(self, labels: list[str]) -> tuple[str, str, str]:
        """(namespace, port, service) from a name's leading labels."""
        return labels[0], labels[1], labels[2]

    def _object(self, resource: str, ns: str, name: str, selector: Optional[str]) -> ObjectWatch:
        key = (resource, ns, name, selector)
        w = self._objects.get(key)
        if w is None:
            w = ObjectWatch(self.api, resource, ns, name, selector, self.max_backoff_s, self.watch_timeout_s)
            self._objects[key] = w
        return w

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        if self._metrics is not None:
            self._metrics.counter("namer/" + "/".join(self.prefix.text_labels()) + "/lookups").incr()
        cached = self._lookups.get(path)
        if cached is not None:
            return cached
        n = self.name_length
        if len(path) < n:
            return Activity.value(NEG)
        try:
            labels = [l.decode("utf-8").lower() for l in path.labels[:n]]
        except UnicodeDecodeError:
            return Activity.value(NEG)
        ns, port, svc = self.namespace_port_service(labels)
        selector = f"{self.label_selector}={labels[-1]}" if self.label_selector else None
        key = (ns, *labels)
        binding = self._bindings.get(key)
        if binding is None:
            ep = self._object("endpoints", ns, svc, selector)
            sv = self._object("services", ns, svc, selector) if port.isdigit() else None
            binding = _Binding(self.bound_id(Path.of(*labels)), port, ep, sv)
            self._bindings[key] = binding
        bound = BoundName(binding.id, binding.addr, path.drop(n))
        act = HeldActivity(binding, bound, binding.result, lambda v: _tree_state(v, bound))
        self._lookups[path] = act
        return act

    async def close(self) -> None:
        for w in list(self._objects.values()):
            if w.running:
                w._stop()
        await self.api.close()

    def watch_count(self) -> int:
        return sum(1 for w in list(self._objects.values()) if w.running)

    def enumerate(self) -> Optional[list[Path]]:
        """Ids of the names currently watched and bound (we watch per name, not per namespace)."""
        return sorted(b.id for b in list(self._bindings.values()) if b.result.sample() == "bound")

    def admin_state(self) -> dict[str, Any]:
        return {
            "apiServer": self.api.base_url,
            "labelSelector": self.label_selector,
            "names": {
                b.id.show(): b.addr.sample().to_json() for b in sorted(self._bindings.values(), key=lambda b: b.id)
            },
            "watches": [
                w.admin_state() for _, w in sorted(self._objects.items(), key=lambda kv: str(kv[0]))
            ],
        }


# io.l5d.k8s.ns ---------------------------------------------------------------------------

NS_KIND = "io.l5d.k8s.ns"


@dataclass
class K8sNsNamerConfig:
    """Linkerd's ``io.l5d.k8s.ns``: the namespace comes from an environment variable
    (the downward API), names are ``/<port>/<service>[/<label value>]``."""

    kind: str = NS_KIND
    prefix: str = "/" + NS_KIND
    host: Optional[str] = None
    port: Optional[int] = field(default=None, metadata={"min": 1, "max": 65535})
    envVar: str = "POD_NAMESPACE"
    labelSelector: Optional[str] = None
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class K8sNsNamer(K8sNamer):
    """``/#/io.l5d.k8s.ns/<port>/<service>[/<label value>]`` in the pod's own namespace
    (Linkerd's SingleNsNamer); the bound id leaves the namespace out, as Linkerd's."""

    kind = NS_KIND
    config_class = K8sNsNamerConfig

    def __init__(self, api: K8sApi, namespace: str, prefix: Optional[Path] = None, **kw: Any) -> None:
        super().__init__(api, prefix if prefix is not None else Path.of(NS_KIND), **kw)
        self.namespace = namespace.lower()

    @classmethod
    def from_config(cls, config: K8sNsNamerConfig, runtime: Any = None) -> "K8sNsNamer":  # type: ignore[override]
        from ..naming.transform import build_transformers

        namespace = os.environ.get(config.envVar)
        if not namespace:
            # Linkerd asserts the same at start-up ("could not find namespace for envVar").
            raise ValueError(f"{NS_KIND}: the environment variable {config.envVar} (envVar) is not set; "
                             f"it must hold the namespace to serve, e.g. from the downward API "
                             f"(fieldRef: metadata.namespace)")
        namer = cls(make_api(config.host, config.port), namespace, prefix=Path.read(config.prefix),
                    label_selector=config.labelSelector, metrics=getattr(runtime, "metrics", None))
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    @property
    def name_length(self) -> int:
        return 2 + (1 if self.label_selector else 0)

    def namespace_port_service(self, labels: list[str]) -> tuple[str, str, str]:
        return self.namespace, labels[0], labels[1]

    def admin_state(self) -> dict[str, Any]:
        st = super().admin_state()
        st["namespace"] = self.namespace
        return st
