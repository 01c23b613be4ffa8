"""Kubernetes transformers: ``io.l5d.k8s.daemonset`` and ``io.l5d.k8s.localnode``.

The classic Linkerd-1 Kubernetes deployment runs one router per node (a DaemonSet):

* ``io.l5d.k8s.daemonset`` (on the *outgoing* side) replaces every destination pod by the
  router of the DaemonSet running on that pod's node, so traffic goes
  app → local router → router on the destination node → destination pod;
* ``io.l5d.k8s.localnode`` (on the *incoming* side) keeps only the pods on this node.

"Same node" is decided as Linkerd does: by default a pod and a router share a node when
their IPv4 addresses share a /24 (each node gets its own pod CIDR); with
``hostNetwork: true`` (routers use the node's network, so their IPs are node IPs) by
the ``nodeName`` the io.l5d.k8s namer puts into every address's metadata.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..dtab.path import Path
from ..naming.addr import ADDR_PENDING, Addr, AddrBound, Address
from ..naming.bound import BoundName
from ..naming.reactive import HeldActivity
from ..naming.transform import FilteringTransformer, NameTreeTransformer, transformer_prefix
from ..naming.var import Closable, LazyVar, Var
from ..namers.k8s import NODE_NAME_KEY, K8sNamer, make_api


def same_subnet24(a: str, b: str) -> bool:
    """True when both are IPv4 addresses in the same /24 (Linkerd's node heuristic)."""
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    if x.version != 4 or y.version != 4:
        return False
    return x.packed[:3] == y.packed[:3]


def same_node(pod: Address, router: Address, host_network: bool) -> bool:
    if host_network:
        node = pod.meta.get(NODE_NAME_KEY)
        return node is not None and node == router.meta.get(NODE_NAME_KEY)
    return same_subnet24(pod.host, router.host)


# io.l5d.k8s.daemonset ---------------------------------------------------------------------

def _check_port(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise ValueError(f"expected a port name or number, got {value!r}")


@dataclass
class DaemonSetTransformerConfig:
    """Linkerd's keys: the DaemonSet's Service (``namespace``/``service``) and ``port``
    (name or number, as in io.l5d.k8s names); ``k8sHost``/``k8sPort`` as the namer's."""

    namespace: str
    service: str
    port: Any = field(metadata={"check": _check_port, "doc": "port name or number"})
    k8sHost: Optional[str] = None
    k8sPort: Optional[int] = None
    hostNetwork: bool = False
    prefix: Optional[str] = None


def map_to_daemons(addr: Addr, daemons: Addr, host_network: bool) -> Addr:
    """Every pod address → the DaemonSet member(s) on its node; no member → dropped."""
    if not isinstance(addr, AddrBound):
        return addr
    if not isinstance(daemons, AddrBound):
        # Without the routers' addresses we cannot route through them (we do not fall
        # back to the pods directly, which would silently bypass the per-node routers).
        return daemons
    picked = {d for a in addr.addrs for d in daemons.addrs if same_node(a, d, host_network)}
    return AddrBound(picked, addr.meta)


class DaemonSetTransformer(NameTreeTransformer):
    kind = "io.l5d.k8s.daemonset"
    config_class = DaemonSetTransformerConfig

    def __init__(self, daemons: Var[Addr], host_network: bool = False, prefix: Optional[Path] = None,
                 namer: Optional[K8sNamer] = None, keepalive: Any = None) -> None:
        super().__init__(prefix if prefix is not None else transformer_prefix("/io.l5d.k8s.daemonset", None))
        self.daemons = daemons
        self.host_network = host_network
        self.namer = namer
        self._keepalive = keepalive  # the namer lookup that owns ``daemons``

    @classmethod
    def from_config(cls, config: DaemonSetTransformerConfig, runtime: Any = None) -> "DaemonSetTransformer":
        namer = K8sNamer(make_api(config.k8sHost, config.k8sPort), prefix=Path.of("io.l5d.k8s.daemonset"))
        return cls.for_namer(namer, config.namespace, str(config.port), config.service, config.hostNetwork,
                             config.prefix)

    @classmethod
    def for_namer(cls, namer: K8sNamer, namespace: str, port: str, service: str, host_network: bool = False,
                  prefix: Optional[str] = None) -> "DaemonSetTransformer":
        act = namer.lookup(Path.of(namespace, port, service))
        assert isinstance(act, HeldActivity)  # the k8s namer's lookups hold their binding
        binding = act.holder
        default = f"/io.l5d.k8s.daemonset/{namespace}/{port}/{service}"
        return cls(binding.addr, host_network, transformer_prefix(default, prefix), namer, act)

    def map_bound(self, bound: BoundName) -> BoundName:
        src, daemons, host_network = bound.addr, self.daemons, self.host_network

        def start(out: LazyVar[Addr]) -> Closable:
            recompute = lambda _: out.update(map_to_daemons(src.sample(), daemons.sample(), host_network))
            a = src.observe(recompute)
            b = daemons.observe(recompute)

            def close() -> None:
                a.close()
                b.close()

            return Closable(close)

        var = Var.lazy(ADDR_PENDING, start)
        return BoundName(self.prefixed(bound.id), var, bound.residual)


# io.l5d.k8s.localnode ------------------------------------------------------------------------

@dataclass
class LocalNodeTransformerConfig:
    """``hostNetwork: false`` needs ``POD_IP`` in the environment, ``true`` needs ``NODE_NAME``
    (both usually from the downward API)."""

    hostNetwork: bool = False
    prefix: Optional[str] = None


class LocalNodeTransformer(FilteringTransformer):
    kind = "io.l5d.k8s.localnode"
    config_class = LocalNodeTransformerConfig

    def __init__(self, pod_ip: Optional[str] = None, node_name: Optional[str] = None,
                 prefix: Optional[Path] = None) -> None:
        if (pod_ip is None) == (node_name is None):
            raise ValueError("io.l5d.k8s.localnode: give exactly one of pod_ip / node_name")
        local = pod_ip if pod_ip is not None else node_name
        super().__init__(prefix if prefix is not None else transformer_prefix(f"/io.l5d.k8s.localnode/{local}", None))
        self.pod_ip = pod_ip
        self.node_name = node_name

    @classmethod
    def from_config(cls, config: LocalNodeTransformerConfig, runtime: Any = None,
                    environ: Optional[Mapping[str, str]] = None) -> "LocalNodeTransformer":
        env = os.environ if environ is None else environ
        if config.hostNetwork:
            node = env.get("NODE_NAME")
            if not node:
                raise ValueError("io.l5d.k8s.localnode with hostNetwork: true needs the NODE_NAME "
                                 "environment variable (downward API spec.nodeName)")
            return cls(node_name=node, prefix=transformer_prefix(f"/io.l5d.k8s.localnode/{node}", config.prefix))
        ip = env.get("POD_IP")
        if not ip:
            raise ValueError("io.l5d.k8s.localnode needs the POD_IP environment variable "
                             "(downward API status.podIP)")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"io.l5d.k8s.localnode: POD_IP {ip!r} is not an IP address") from None
        return cls(pod_ip=ip, prefix=transformer_prefix(f"/io.l5d.k8s.localnode/{ip}", config.prefix))

    def keep(self, address: Address) -> bool:
        if self.node_name is not None:
            return address.meta.get(NODE_NAME_KEY) == self.node_name
        return same_subnet24(address.host, self.pod_ip or "")


__all__ = [
    "DaemonSetTransformer", "DaemonSetTransformerConfig", "LocalNodeTransformer",
    "LocalNodeTransformerConfig", "same_subnet24", "map_to_daemons",
]
