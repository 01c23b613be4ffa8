"""The live system namers (``/$/…``): the pure rules of ``namerouter.dtab.system`` plus
address sets that stay current.

``namerouter.dtab.system.lookup(path)`` (pure, shared with the offline binder) rewrites
a ``/$/…`` path into a NameTree whose leaves are Paths (bind again) or
``SystemBound(id, residual)`` (terminal). This module turns each SystemBound into a
:class:`BoundName` with a live ``addr`` Var:

* ``/$/inet/<host>/<port>`` (and ``/$/fixedinet``, ``/$/io.buoyant.rinet/<port>/<host>``,
  ``/$/inet/<port>`` = 127.0.0.1): an IP literal is bound at once; a name is resolved
  with ``loop.getaddrinfo`` when the Var is first observed and re-resolved every
  :attr:`SystemNamer.dns_refresh_s` seconds while observed (``fixedinet``: once). A name
  that does not exist is ``ADDR_NEG``; after one success a later DNS failure keeps the
  last good set (a flapping resolver must not empty a working client).
* ``/$/io.buoyant.http.status/<code>``: ``AddrBound`` with **no addresses** and set-level
  metadata ``{STATUS_META_KEY: <code>}`` (``"io.buoyant.http.status": 404``). The proxy
  recognises that key and answers ``<code>`` itself; a proxy that did not would report
  "no hosts", never send traffic anywhere.

Vars are shared per bound id (two names reaching ``/$/inet/127.1/8080`` use one Var and
one DNS poll) and held weakly, so an evicted binding frees its DNS poll too.
"""
from __future__ import annotations

import asyncio
import logging
import random
import weakref
from typing import Any, Optional

from ..dtab import system
from ..dtab.path import Path
from ..dtab.tree import NEG, NameTree
from . import dns
from .addr import ADDR_NEG, ADDR_PENDING, Addr, AddrBound, AddrFailed, Address
from .bound import BoundName
from .var import Closable, LazyVar, Var

log = logging.getLogger(__name__)

#: AddrBound.meta key that tells the proxy to answer with this HTTP status itself.
STATUS_META_KEY = "io.buoyant.http.status"

class SystemNamer:
    """Binds ``/$/…`` paths with live address sets. One per interpreter."""

    #: How often a DNS name bound through /$/inet is re-resolved while observed (Finagle
    #: polls its InetResolver every few seconds).
    dns_refresh_s: float = 5.0

    def __init__(self, dns_refresh_s: Optional[float] = None) -> None:
        if dns_refresh_s is not None:
            self.dns_refresh_s = dns_refresh_s
        self._vars: "weakref.WeakValueDictionary[Path, Var[Addr]]" = weakref.WeakValueDictionary()

    def lookup(self, path: Path) -> NameTree[Any]:
        """The system rewrite of ``path`` with SystemBound leaves made into BoundNames.

        NEG for non-``/$`` paths; raises ``UnknownNamer`` for an unknown ``/$/x``.
        """
        labels = path.labels
        if not labels or labels[0] != b"$":
            return NEG
        tree: NameTree[Any] = system.lookup(path)
        return tree.map(lambda v: self._bound(v) if isinstance(v, system.SystemBound) else v)

    def _bound(self, sb: Any) -> BoundName:
        v = self._vars.get(sb.id)
        if v is None:
            v = self._make_var(sb)
            self._vars[sb.id] = v
        return BoundName(sb.id, v, sb.residual)

    @property
    def live_count(self) -> int:
        """Address Vars alive right now (one per distinct system bound id)."""
        return len(self._vars)

    # --------------------------------------------------------------------------------
    def _make_var(self, sb: Any) -> Var[Addr]:
        if sb.kind == "status" and sb.status is not None:
            return Var(AddrBound((), {STATUS_META_KEY: int(sb.status)}))
        if sb.kind == "inet" and sb.port is not None:
            if not 0 <= sb.port <= 65535:
                return Var(AddrFailed(f"port {sb.port} out of range in {sb.id.show()}"))
            if not sb.host:
                return Var(AddrBound([Address("127.0.0.1", sb.port)]))
            once = len(sb.id.labels) > 1 and sb.id.labels[1] == b"fixedinet"
            return self._inet_var(sb.host, sb.port, once)
        # A system bound id this module does not know how to address: say so in the Addr.
        return Var(AddrFailed(f"no address for system name {sb.id.show()}"))

    def _inet_var(self, host: str, port: int, once: bool) -> Var[Addr]:
        lit = dns.ip_literal(host)
        if lit is not None:
            return Var(AddrBound([Address(lit, port)]))
        return _DnsVar(host, port, None if once else self.dns_refresh_s)


class _DnsVar(LazyVar[Addr]):
    """An address set resolved from DNS while observed, re-resolved periodically."""

    __slots__ = ("host", "port", "refresh_s", "_task", "_good")

    def __init__(self, host: str, port: int, refresh_s: Optional[float]) -> None:
        super().__init__(ADDR_PENDING)
        self.host = host
        self.port = port
        self.refresh_s = refresh_s
        self._task: Optional[asyncio.Task[None]] = None
        self._good = False

    def start(self) -> Closable:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No event loop (a CLI tool): resolve once, synchronously.
            self._apply_blocking()
            return Closable()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"dns {self.host}")
        return Closable(self._stop)

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    def _apply(self, addrs: list[str]) -> None:
        self._good = True
        self.update(AddrBound([Address(a, self.port) for a in addrs]))

    def _fail(self, e: BaseException) -> None:
        if self._good:
            log.warning("re-resolving %s failed (%s); keeping the last addresses", self.host, e)
            return
        self.update(ADDR_NEG if isinstance(e, dns.UnknownHost) else AddrFailed(f"resolving {self.host}: {e}"))

    def _apply_blocking(self) -> None:
        try:
            self._apply(dns.resolve_blocking(self.host))
        except (OSError, dns.UnknownHost) as e:
            self._fail(e)

    async def _run(self) -> None:
        while True:
            try:
                self._apply(await dns.resolve(self.host))
            except asyncio.CancelledError:
                raise
            except (OSError, dns.UnknownHost) as e:
                self._fail(e)
            if self.refresh_s is None and self._good:
                return
            # Jitter so that many names do not all hit the resolver in the same tick.
            delay = self.refresh_s if self.refresh_s is not None else 5.0
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
