"""``io.l5d.dnssrv``: DNS SRV records as address sets (Linkerd's DnsSrvNamer).

::

    namers:
    - kind: io.l5d.dnssrv
      experimental: true
      refreshIntervalSeconds: 5
      dnsHosts: [ns0.example.org, 10.0.0.2:5353]   # default: the system resolver

Name: ``/#/io.l5d.dnssrv/<srv name>[/residual]`` — one segment, the record's name
(``_http._tcp.web.example.org`` or ``myservice.srv.dc-2.example.org.``); the bound id is
``/#/<prefix>/<srv name>``.

Each observed name is looked up every ``refreshIntervalSeconds`` (the lookup runs only
while somebody routes to the name). Answers, as Linkerd:

* SRV records → every target's addresses × the record's port (SRV priority and weight
  are ignored, as Linkerd ignores them); a target ``.`` ("no service") is skipped;
* no such name (NXDOMAIN), no SRV record, or no usable target → ``~`` (neg), so a dtab
  alternative (``/dnssrv/a | /dnssrv/b``) falls through;
* the DNS servers time out, refuse or fail → the last good set is kept (Linkerd turns
  it into a failure) and the lookup is retried with jittered backoff, at most one
  refresh interval apart; a name never resolved is ``~`` meanwhile.

Targets are resolved from the answer's additional section when the server sent their
A/AAAA records, else through the same DNS servers (Linkerd asks the system resolver,
which may not know names only the SRV servers know), else through the system
resolver. Lookups use dnspython's asyncio resolver with its cache off and EDNS0 with a
2048-byte payload (Linkerd's settings), so big SRV sets are not truncated.

``dnsHosts`` entries are ``host`` (port 53) or, our extension for servers on other
ports, ``host:port`` / ``[v6]:port``.
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ..backoff import JitteredBackoff
from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from ..naming import dns as naming_dns
from ..naming.addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, Address
from ..naming.bound import BoundName
from ..naming.namer import Namer, addr_tree_state
from ..naming.reactive import HeldActivity
from ..naming.var import Activity, Var, start_stop

log = logging.getLogger(__name__)

KIND = "io.l5d.dnssrv"
#: Linkerd's resolver settings: EDNS level 0 with a 2048-byte UDP payload.
EDNS_PAYLOAD = 2048


def _check_dns_host(value: Any) -> None:
    """Config check (applied to each item): raise ValueError for a bad entry."""
    parse_dns_host(value)


@dataclass
class DnsSrvConfig:
    prefix: str = "/" + KIND
    refreshIntervalSeconds: int = field(default=5, metadata={"min": 1, "max": 86400})
    dnsHosts: list[str] = field(default_factory=list, metadata={"check": _check_dns_host})
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def parse_dns_host(text: Any) -> tuple[str, int]:
    """``host`` → (host, 53); ``host:port`` / ``[v6]:port`` → (host, port)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a DNS server host name or address, got {text!r}")
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif t.count(":") == 1:
        host, _, port = t.partition(":")
    else:
        host, port = t, ""  # a name, an IPv4 address or a bare IPv6 address
    if not host:
        raise ValueError(f"DNS server {text!r}: empty host")
    if not port:
        return host, 53
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DNS server {text!r}: port must be 1-65535")
    return host, int(port)


class LookupResult:
    """The outcome of one SRV lookup: addresses, or neg with a reason."""

    __slots__ = ("addresses", "reason")

    def __init__(self, addresses: set[Address], reason: str = "") -> None:
        self.addresses = addresses
        self.reason = reason


class SrvResolver:
    """SRV + target lookups against the configured servers (or the system's)."""

    def __init__(self, servers: list[tuple[str, int]], timeout_s: float) -> None:
        self.servers = servers
        self.timeout_s = timeout_s
        self._resolver: Optional[dns.asyncresolver.Resolver] = None

    async def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is not None:
            return self._resolver
        if self.servers:
            r = dns.asyncresolver.Resolver(configure=False)
            nameservers = []
            for host, port in self.servers:
                for ip in await naming_dns.resolve(host):
                    nameservers.append(dns.nameserver.Do53Nameserver(ip, port))
            r.nameservers = nameservers
        else:
            r = dns.asyncresolver.Resolver()  # /etc/resolv.conf
        r.cache = None  # every refresh asks the servers, as Linkerd does
        r.use_edns(0, 0, EDNS_PAYLOAD)
        r.lifetime = self.timeout_s
        self._resolver = r
        return r

    async def lookup(self, name: str) -> LookupResult:
        """NXDOMAIN/no answer → neg result; transport failures raise (keep last good)."""
        r = await self._get()
        try:
            answer = await r.resolve(name, "SRV", search=False)
        except dns.resolver.NXDOMAIN:
            return LookupResult(set(), f"no such name {name}")
        except dns.resolver.NoAnswer:
            return LookupResult(set(), f"{name} has no SRV record")
        extra: dict[str, list[str]] = {}
        for rrset in answer.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                extra.setdefault(rrset.name.to_text(), []).extend(rr.address for rr in rrset)
        targets = {rr.target.to_text() for rr in answer if rr.target.to_text() != "."}
        resolved = dict(zip(targets, await asyncio.gather(*(self._target(t, extra) for t in targets))))
        addrs = {Address(ip, rr.port) for rr in answer for ip in resolved.get(rr.target.to_text(), [])}
        if not addrs:
            return LookupResult(set(), f"no target of {name} resolves to an address")
        return LookupResult(addrs)

    async def _target(self, target: str, extra: dict[str, list[str]]) -> list[str]:
        literal = naming_dns.ip_literal(target.rstrip("."))
        if literal is not None:
            return [literal]
        if target in extra:
            return extra[target]
        r = await self._get()
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                out += [rr.address for rr in await r.resolve(target, rdtype, search=False)]
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                pass
            except (dns.exception.DNSException, OSError) as e:
                log.debug("dnssrv: target %s %s lookup failed: %s", target, rdtype, e)
        if out:
            return out
        try:
            return await naming_dns.resolve(target.rstrip("."))
        except (naming_dns.UnknownHost, OSError):
            log.warning("dnssrv: SRV target %s does not resolve; skipped", target)
            return []


class SrvWatch:
    """The refresh loop of one SRV name and its address Var (runs only while observed)."""

    def __init__(self, namer: "DnsSrvNamer", name: str) -> None:
        self._namer = weakref.ref(namer)
        self.name = name
        self.addr: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._start, self._stop))
        self._task: Optional[asyncio.Task[None]] = None
        self.lookups = 0
        self.errors = 0
        self.last_error: Optional[str] = None
        self.last_neg_reason: Optional[str] = None
        self.last_lookup_at: Optional[float] = None

    def _start(self) -> None:
        namer = self._namer()
        if namer is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(namer), name=f"dnssrv:{self.name}")

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self.addr.update(ADDR_PENDING)  # a new observer re-reads rather than trusting an old set

    async def _run(self, namer: "DnsSrvNamer") -> None:
        backoff = JitteredBackoff(0.05, namer.refresh_s)
        while True:
            try:
                result = await namer.resolver.lookup(self.name)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # timeouts, SERVFAIL/REFUSED from every server, socket errors
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                namer._stat("lookup_failures_total")
                if self.addr.sample() is ADDR_PENDING:
                    self.addr.update(ADDR_NEG)  # nothing known: let a dtab alternative apply
                await asyncio.sleep(backoff.next())
                continue
            self.lookups += 1
            self.last_lookup_at = time.time()
            self.last_error = None
            backoff.reset()
            if result.addresses:
                namer._stat("lookup_successes_total")
                self.last_neg_reason = None
                self.addr.update(AddrBound(result.addresses))
            else:
                namer._stat("lookup_zero_results_total")
                self.last_neg_reason = result.reason
                self.addr.update(ADDR_NEG)
            await asyncio.sleep(namer.refresh_s)

    def state(self) -> dict[str, Any]:
        return {
            "addr": self.addr.sample().to_json(),
            "running": self._task is not None,
            "lookups": self.lookups,
            "errors": self.errors,
            "lastError": self.last_error,
            "negReason": self.last_neg_reason,
            "lastLookupAt": self.last_lookup_at,
        }




class DnsSrvNamer(Namer):
    kind = KIND
    config_class = DnsSrvConfig

    def __init__(self, prefix: Optional[Path] = None, dns_hosts: Optional[list[str]] = None,
                 refresh_s: float = 5.0, metrics: Any = None) -> None:
        super().__init__(prefix if prefix is not None else Path.of(KIND))
        self.refresh_s = float(refresh_s)
        self.resolver = SrvResolver([parse_dns_host(h) for h in dns_hosts or []],
                                    timeout_s=max(1.0, min(5.0, self.refresh_s)))
        self._metrics = metrics
        self._stats_prefix = "namer/" + "/".join(self.prefix.text_labels()) + "/"
        self._watches: "weakref.WeakValueDictionary[str, SrvWatch]" = weakref.WeakValueDictionary()
        self._lookups: "weakref.WeakValueDictionary[Path, HeldActivity[NameTree[Any]]]" = weakref.WeakValueDictionary()

    @classmethod
    def from_config(cls, config: DnsSrvConfig, runtime: Any = None) -> "DnsSrvNamer":
        from ..naming.transform import build_transformers

        namer = cls(Path.read(config.prefix), config.dnsHosts, config.refreshIntervalSeconds,
                    metrics=getattr(runtime, "metrics", None))
        namer.transformers = build_transformers(config.transformers, runtime)
        return namer

    def lookup(self, path: Path) -> Activity[NameTree[Any]]:
        cached = self._lookups.get(path)
        if cached is not None:
            return cached
        if not len(path):
            return Activity.value(NEG)
        try:
            name = path.labels[0].decode("ascii")
        except UnicodeDecodeError:
            return Activity.value(NEG)  # not a DNS name
        watch = self._watches.get(name)
        if watch is None:
            watch = self._watches[name] = SrvWatch(self, name)
        bound = BoundName(self.bound_id(path.take(1)), watch.addr, path.drop(1))
        act = HeldActivity(watch, bound, watch.addr, lambda a: addr_tree_state(a, bound))
        self._lookups[path] = act
        return act

    def _stat(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.counter(self._stats_prefix + name).incr()

    async def close(self) -> None:
        for w in list(self._watches.values()):
            w._stop()

    def admin_state(self) -> dict[str, Any]:
        return {
            "dnsHosts": [f"{h}:{p}" for h, p in self.resolver.servers] or "system resolver",
            "refreshIntervalSeconds": self.refresh_s,
            "names": {n: w.state() for n, w in sorted(self._watches.items())},
        }
