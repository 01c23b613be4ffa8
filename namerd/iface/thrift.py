"""``io.l5d.thriftNameInterpreter``: namerd's thrift ``Namer`` service (Linkerd routers'
``io.l5d.namerd`` interpreter), over ThriftMux or plain framed thrift on one port.

Long polls with stamps, as Linkerd 1.7's namerd: each watched value (a binding, an
address set, a namespace's dtab) has an :class:`Observer` that keeps its current value
and a stamp that changes whenever the value does (8 bytes from a counter that starts at
a random number, so two namerds — or one before and after a restart — do not hand out
the same stamps). A request carrying the current stamp waits for the next change; any
other stamp (empty at first, or one from another namerd) is answered at once with the
current value, which is how a router re-syncs after a restart.

* ``bind`` — ``BindReq{dtab, name{stamp, path, ns}}``: the tree of ``path`` under the
  namespace's dtab ++ ``dtab``. An empty path, an unparsable dtab, a bad namespace or a
  binding failure -> ``BindFailure{reason}``.
* ``addr`` — the address set of a bound id (``/%/`` prefixes stripped), ``neg`` when the
  namer has nothing; namer failures -> ``AddrFailure``. Address metadata ``authority``,
  ``nodeName`` and the weight travel in ``AddrMeta`` (Linkerd drops the weight when the
  other two are absent; we send it).
* ``delegate`` — not a long poll: one answer to a request with an empty stamp. Like
  Linkerd, a request with a non-empty stamp (old long-polling clients) gets no answer
  until the client discards it.
* ``dtab`` — the namespace's dtab text (empty for a missing namespace).

Observers live in two-level caches configured by ``cache``: *active* ones (some request
waits on them) are capped at ``bindingCacheActive``/``addrCacheActive`` — one more
fails with "maximum number of concurrent observations" — and *inactive* ones are kept
open for the next poll, at most ``*CacheInactive`` of them for ``*CacheInactiveTTLSecs``.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable, Hashable, Optional

from namerouter.dtab import Dtab, DtabSyntaxError
from namerouter.metrics import MetricsRegistry
from namerouter.mux.server import MuxServer
from namerouter.mux.thrift import ThriftDispatcher
from namerouter.naming.addr import ADDR_NEG, ADDR_PENDING, AddrBound, AddrFailed
from namerouter.naming.idle_cache import IdleCache
from namerouter.naming.var import Closable, Failed, Ok, Var
from namerouter.thriftapi import convert, namer

from ..binding import NamerdBinder
from ..storage.base import DtabStore, InvalidNamespace, check_namespace

log = logging.getLogger(__name__)

KIND = "io.l5d.thriftNameInterpreter"
DELEGATE_TIMEOUT = 2.0
#: Linkerd's TStamp.one: the stamp of every delegate answer.
DELEGATION_STAMP = (1).to_bytes(8, "big")


class Stamper:
    def __init__(self) -> None:
        self._next = random.getrandbits(64)

    def __call__(self) -> bytes:
        self._next = (self._next + 1) & 0xFFFFFFFFFFFFFFFF
        return self._next.to_bytes(8, "big")


class Observer:
    """One observed value with stamps (see module doc). ``classify(state)`` returns
    ``("ok", value)``, ``("fail", message)`` or None (nothing to say yet: pending)."""

    def __init__(self, var: Var[Any], classify: Callable[[Any], Optional[tuple[str, Any]]], stamper: Stamper) -> None:
        self.var = var
        self.classify = classify
        self.stamper = stamper
        self.current: Optional[tuple[bytes, tuple[str, Any]]] = None
        self.waiters = 0
        self._changed = asyncio.Event()
        self._sub: Optional[Closable] = None

    def start(self) -> None:
        if self._sub is None:
            self._sub = self.var.observe(self._on_state)

    def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()
        self.current = None

    def _on_state(self, st: Any) -> None:
        out = self.classify(st)
        if out is None or (self.current is not None and self.current[1] == out):
            return
        self.current = (self.stamper(), out)
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def poll(self, stamp: bytes) -> tuple[bytes, tuple[str, Any]]:
        while True:
            cur = self.current
            if cur is not None and cur[0] != stamp:
                return cur
            await self._changed.wait()


class MaximumObservationsReached(Exception):
    pass


class ObserverCache:
    """Observers by key: active ones capped, inactive ones idle-evicted (see module doc)."""

    def __init__(self, name: str, make: Callable[[Any], Observer], active: int, inactive: int, ttl: float) -> None:
        self.make = make
        self.active_capacity = active
        self._idle: IdleCache[Hashable, Observer] = IdleCache(name, inactive, ttl)

    @property
    def active(self) -> int:
        return self._idle.active

    @property
    def inactive(self) -> int:
        return self._idle.inactive

    def register_gauges(self, metrics: MetricsRegistry, prefix: str) -> None:
        """``<prefix>/active`` and ``<prefix>/inactive`` (Linkerd's observer cache gauges)."""
        metrics.gauge(f"{prefix}/active", lambda: self.active)
        metrics.gauge(f"{prefix}/inactive", lambda: self.inactive)

    async def poll(self, key: Hashable, stamp: bytes) -> tuple[bytes, tuple[str, Any]]:
        obs = self._idle.get(key)
        if obs is None or obs.waiters == 0:
            if self._idle.active >= self.active_capacity:
                raise MaximumObservationsReached(
                    f"The maximum number of concurrent observations has been reached ({self.active_capacity})")
            if obs is None:
                obs = self.make(key)
            self._idle.activate(key, obs)  # starts it; a new key enters the cache here
        obs.waiters += 1
        try:
            return await obs.poll(stamp)
        finally:
            obs.waiters -= 1
            if obs.waiters == 0:
                self._idle.deactivate(key, obs)

    def close(self) -> None:
        self._idle.close()


def _tree_state(st: Any) -> Optional[tuple[str, Any]]:
    if isinstance(st, Ok):
        return ("ok", st.value)
    if isinstance(st, Failed):
        return ("fail", str(st.error) or type(st.error).__name__)
    return None


def _addr_state(addr: Any) -> Optional[tuple[str, Any]]:
    if addr is ADDR_PENDING:
        return None
    if isinstance(addr, AddrFailed):
        return ("fail", addr.cause)
    return ("ok", addr if isinstance(addr, AddrBound) else ADDR_NEG)


def _dtab_state(st: Any) -> Optional[tuple[str, Any]]:
    if isinstance(st, Ok):
        return ("ok", st.value.dtab if st.value is not None else Dtab())
    if isinstance(st, Failed):
        return ("fail", str(st.error) or type(st.error).__name__)
    return None


class NamerService:
    """The ``Namer`` service's methods (called by the thrift dispatcher)."""

    def __init__(self, store: DtabStore, binder: NamerdBinder, cache: Any, metrics: MetricsRegistry,
                 scope: str) -> None:
        self.store = store
        self.binder = binder
        self.metrics = metrics
        self.scope = scope
        stamper = Stamper()
        self.bindings = ObserverCache(
            "bind", lambda k: Observer(binder.bind(k[0], k[2], k[1]).states, _tree_state, stamper),
            cache.bindingCacheActive, cache.bindingCacheInactive, cache.bindingCacheInactiveTTLSecs)
        self.addrs = ObserverCache(
            "addr", lambda id_: Observer(binder.addr(id_), _addr_state, stamper),
            cache.addrCacheActive, cache.addrCacheInactive, cache.addrCacheInactiveTTLSecs)
        self.dtabs = ObserverCache(
            "dtab", lambda ns: Observer(store.observe(ns).states, _dtab_state, stamper), 100, 10, 600)
        for name, c in (("bindingcache", self.bindings), ("addrcache", self.addrs), ("dtabcache", self.dtabs)):
            c.register_gauges(metrics, f"{scope}/{name}")

    def _count(self, name: str) -> None:
        self.metrics.counter(f"{self.scope}/{name}").incr()

    async def bind(self, req: Any) -> Any:
        self._count("bind/requests")
        ref = req.name or namer.NameRef()
        ns = ref.ns or ""

        def failure(reason: str) -> Exception:
            self._count("bind/failures")
            exc: Exception = namer.BindFailure(reason=reason, retryInSeconds=0, name=ref, ns=ns)
            return exc

        try:
            check_namespace(ns)
            path = convert.path_from_thrift(ref.name)
            dtab = Dtab.read(req.dtab) if req.dtab and req.dtab.strip() else Dtab()
        except (InvalidNamespace, DtabSyntaxError, ValueError) as e:
            raise failure(str(e)) from None
        if not path.labels:
            raise failure("empty path")
        try:
            stamp, (kind, value) = await self.bindings.poll((ns, dtab, path), ref.stamp or b"")
        except MaximumObservationsReached as e:
            raise failure(str(e)) from None
        if kind == "fail":
            raise failure(value)
        return namer.Bound(stamp=stamp, tree=convert.bound_tree_to_thrift(value), ns=ns)

    async def addr(self, req: Any) -> Any:
        self._count("addr/requests")
        ref = req.name or namer.NameRef()

        def failure(reason: str) -> Exception:
            self._count("addr/failures")
            exc: Exception = namer.AddrFailure(reason=reason, retryInSeconds=0, name=ref)
            return exc

        try:
            path = convert.path_from_thrift(ref.name)
        except ValueError as e:
            raise failure(str(e)) from None
        if not path.labels:
            raise failure("empty path")
        try:
            stamp, (kind, value) = await self.addrs.poll(path, ref.stamp or b"")
        except MaximumObservationsReached as e:
            raise failure(str(e)) from None
        if kind == "fail":
            raise failure(value)
        return namer.Addr(stamp=stamp, value=convert.addr_to_thrift(value))

    async def delegate(self, req: Any) -> Any:
        self._count("delegate/requests")
        delegation = req.delegation or namer.Delegation()
        if delegation.stamp:
            # An old long-polling client asking again: Linkerd never answers (the client
            # keeps its first answer); the wait ends when the client discards it.
            await asyncio.Event().wait()
        ns = delegation.ns or ""
        try:
            check_namespace(ns)
            dtab = Dtab.read(req.dtab) if req.dtab and req.dtab.strip() else Dtab()
            root = delegation.tree.root if delegation.tree is not None else None
            if root is None or root.contents is None or root.contents.pathLeaf is None:
                raise ValueError("Delegation too complex: send one path (a pathLeaf root)")
            path = convert.path_from_thrift(root.contents.pathLeaf)
        except (InvalidNamespace, DtabSyntaxError, ValueError) as e:
            raise namer.DelegationFailure(reason=str(e)) from None
        try:
            doc = await asyncio.wait_for(self.binder.delegate(ns, path, dtab), DELEGATE_TIMEOUT)
        except asyncio.TimeoutError:
            raise namer.DelegationFailure(reason="Request timed out.") from None
        except NotImplementedError as e:
            raise namer.DelegationFailure(reason=str(e) or f"Name Interpreter for {ns} cannot show delegations") from None
        return namer.Delegation(stamp=DELEGATION_STAMP, tree=convert.delegate_json_to_thrift(doc), ns=ns)

    async def dtab(self, req: Any) -> Any:
        self._count("dtab/requests")
        ns = req.ns or ""
        try:
            check_namespace(ns)
            stamp, (kind, value) = await self.dtabs.poll(ns, req.stamp or b"")
        except (InvalidNamespace, MaximumObservationsReached) as e:
            raise namer.DtabFailure(reason=str(e)) from None
        if kind == "fail":
            raise namer.DtabFailure(reason=value)
        return namer.DtabRef(stamp=stamp, dtab=value.show())

    def close(self) -> None:
        for c in (self.bindings, self.addrs, self.dtabs):
            c.close()


class ThriftInterface:
    """One ``io.l5d.thriftNameInterpreter`` listener."""

    kind = KIND

    def __init__(self, store: DtabStore, binder: NamerdBinder, metrics: Optional[MetricsRegistry] = None,
                 cache: Any = None, scope: str = f"namerd/{KIND}") -> None:
        if cache is None:
            from ..config import CapacityConfig

            cache = CapacityConfig()
        self.metrics = metrics or MetricsRegistry()
        self.service = NamerService(store, binder, cache, self.metrics, scope)
        self.server = MuxServer(ThriftDispatcher(namer.Namer, self.service), metrics=self.metrics, scope=scope)

    async def start(self, ip: str, port: int, tls: Any = None, failures: Any = None) -> int:
        return await self.server.start(ip, port, tls=tls, failures=failures)

    async def close(self) -> None:
        await self.server.close()
        self.service.close()

    def admin_state(self) -> dict[str, Any]:
        s = self.service
        return {"kind": KIND, "port": self.server.port, "connections": len(self.server.connections),
                "bindingCache": {"active": s.bindings.active, "inactive": s.bindings.inactive},
                "addrCache": {"active": s.addrs.active, "inactive": s.addrs.inactive}}
