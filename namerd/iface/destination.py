"""``io.l5d.destination``: Linkerd 2 proxies resolve service names through namerd.

``Destination.Get{scheme: "k8s", path: "web.default.svc.cluster.local:8080"}`` binds
``/<prefix>/web`` (the authority's first DNS label, as Linkerd 1.7 does) with the
configured namespace's dtab and streams the addresses of every leaf the tree routes to.

The stream follows the destination API's contract (``linkerd2/destination.proto``):
the first message is the whole state — ``add`` with every endpoint, ``no_endpoints
{exists: true}`` for a service with none, ``no_endpoints{exists: false}`` for a name
that does not bind (the proxy may fall back to DNS) — and later ones are differences
(``add`` / ``remove``). Linkerd 1.7 instead sends ``no_endpoints{exists: true}`` before
its first ``add``, which the contract asks servers not to do; we follow the contract.

Weights: ``10000 x`` the address's ``endpoint_addr_weight`` (Linkerd 2's controller
uses 10000 for an unweighted endpoint; Linkerd 1.7 always sends 1).
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any, AsyncIterator, Optional

from grpclib.const import Status

from namerouter.dtab import Dtab, Path
from namerouter.mesh.convert import ip_bytes
from namerouter.mesh.grpc import BadRequest, GrpcServer
from namerouter.mesh.linkerd2 import destination_pb2 as dpb
from namerouter.mesh.linkerd2 import net_pb2
from namerouter.metrics import MetricsRegistry
from namerouter.naming.addr import ADDR_PENDING, Addr, AddrBound, Address

from ..binding import NamerdBinder, eval_addr
from .updates import updates

log = logging.getLogger(__name__)

KIND = "io.l5d.destination"
DEFAULT_WEIGHT = 10_000


def service_name(authority: str) -> str:
    """``web.default.svc.cluster.local:8080`` -> ``web`` (first label, no port)."""
    host = authority.strip()
    if host.startswith("["):
        raise ValueError("an IP address is not a service name")
    host = host.split(".", 1)[0].split(":", 1)[0]
    if not host:
        raise ValueError("empty service name")
    return host


def tcp_address(a: Address) -> Optional[net_pb2.TcpAddress]:
    raw = ip_bytes(a.host)
    if raw is None:
        return None
    ip = net_pb2.IPAddress()
    if len(raw) == 4:
        ip.ipv4 = int.from_bytes(raw, "big")
    else:
        ip.ipv6.first = int.from_bytes(raw[:8], "big")
        ip.ipv6.last = int.from_bytes(raw[8:], "big")
    return net_pb2.TcpAddress(ip=ip, port=a.port)


def address_of(tcp: net_pb2.TcpAddress) -> str:
    """``ip:port`` of a TcpAddress (for tests and logs)."""
    if tcp.ip.WhichOneof("ip") == "ipv6":
        raw = tcp.ip.ipv6.first.to_bytes(8, "big") + tcp.ip.ipv6.last.to_bytes(8, "big")
        return f"[{ipaddress.IPv6Address(raw)}]:{tcp.port}"
    return f"{ipaddress.IPv4Address(tcp.ip.ipv4)}:{tcp.port}"


def _weight(a: Address) -> int:
    return max(1, round(a.weight * DEFAULT_WEIGHT))


class _Diff:
    """Turns successive address-set states into destination updates (see module doc)."""

    def __init__(self) -> None:
        #: what the client holds; None when it holds nothing (start, or after "absent")
        self.known: Optional[dict[tuple[str, int], Address]] = None
        self.absent_sent = False

    def __call__(self, addr: Addr) -> Optional[list[dpb.Update]]:
        if addr is ADDR_PENDING:
            return None
        if not isinstance(addr, AddrBound):  # neg or failed: the service is not there
            if self.absent_sent:
                return None
            self.known, self.absent_sent = None, True
            return [dpb.Update(no_endpoints=dpb.NoEndpoints(exists=False))]
        now = {(a.host, a.port): a for a in addr.addrs}
        before, self.known, self.absent_sent = self.known, now, False
        if before is None:
            return [_add(now.values())] if now else [dpb.Update(no_endpoints=dpb.NoEndpoints(exists=True))]
        added = [a for k, a in now.items() if before.get(k) != a]
        removed = [a for k, a in before.items() if k not in now]
        out = ([_add(added)] if added else []) + ([_remove(removed)] if removed else [])
        return out or None


def _add(addrs: Any) -> dpb.Update:
    u = dpb.Update()
    u.add.SetInParent()
    for a in sorted(addrs, key=lambda a: (a.host, a.port)):
        tcp = tcp_address(a)
        if tcp is not None:
            u.add.addrs.add(addr=tcp, weight=_weight(a))
    return u


def _remove(addrs: Any) -> dpb.Update:
    u = dpb.Update()
    u.remove.SetInParent()
    for a in sorted(addrs, key=lambda a: (a.host, a.port)):
        tcp = tcp_address(a)
        if tcp is not None:
            u.remove.addrs.append(tcp)
    return u


class DestinationService:
    def __init__(self, binder: NamerdBinder, prefix: str, namespace: str, metrics: MetricsRegistry,
                 scope: str) -> None:
        self.binder = binder
        self.prefix = Path.read(prefix)
        self.namespace = namespace
        self.metrics = metrics
        self.scope = scope
        self.streams = 0

    def Get(self, req: dpb.GetDestination) -> AsyncIterator[dpb.Update]:
        self.metrics.counter(f"{self.scope}/Get/requests").incr()
        if "k8s" not in req.scheme:
            raise BadRequest(Status.UNIMPLEMENTED, f"Unknown scheme: {req.scheme or 'unknown'}")
        if not req.path:
            raise BadRequest(Status.UNIMPLEMENTED, "Empty request path")
        try:
            name = self.prefix + Path.of(service_name(req.path))
        except ValueError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid path {req.path!r}: {e}") from None
        return self._stream(eval_addr(self.binder.bind(self.namespace, name, Dtab())))

    async def _stream(self, addrs: Any) -> AsyncIterator[dpb.Update]:
        self.streams += 1
        gen = updates(addrs, _Diff(), dedupe=False)
        try:
            async for batch in gen:
                for u in batch:
                    yield u
        finally:
            self.streams -= 1
            await gen.aclose()


class DestinationInterface:
    kind = KIND

    def __init__(self, binder: NamerdBinder, metrics: Optional[MetricsRegistry] = None, prefix: str = "/svc",
                 namespace: str = "default", scope: str = f"namerd/{KIND}") -> None:
        self.metrics = metrics or MetricsRegistry()
        self.service = DestinationService(binder, prefix, namespace, self.metrics, scope)
        self.metrics.gauge(f"{scope}/streams", lambda: self.service.streams)
        self.server = GrpcServer([(self.service, dpb.DESCRIPTOR.services_by_name["Destination"])])

    async def start(self, ip: str, port: int, tls: Any = None, failures: Any = None) -> int:
        return await self.server.start(ip, port, tls=tls, failures=failures)

    async def close(self) -> None:
        await self.server.close()

    def admin_state(self) -> dict[str, Any]:
        return {"kind": KIND, "port": self.server.port, "prefix": self.service.prefix.show(),
                "namespace": self.service.namespace, "streams": self.service.streams}
