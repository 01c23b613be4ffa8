"""What the three namerd interpreters share: watches, caches, state, admin.

``io.l5d.namerd.http`` (HTTP streams), ``io.l5d.mesh`` (gRPC streams) and
``io.l5d.namerd`` (ThriftMux long polls) differ only in how a watch talks to namerd.
Everything else is here, written once:

* ``bind(dtab, path)`` -> one :class:`BindWatch` per distinct (dtab, path), shared by
  every caller; each bound id of its trees -> one :class:`AddrWatch` (shared by every
  tree naming it) feeding that BoundName's ``addr`` Var; ``dtab()`` -> one
  :class:`DtabWatch` for the admin.
* A watch runs while observed. Its loop asks the interpreter to ``_open`` a stream
  (an async iterator of namerd's answers) and feeds each answer to the watch; when the
  stream ends it is opened again. Failures are classified by exception type:
  :class:`NamerdUnreachable` (no connection: fail over, or wait for the probe),
  :class:`RemoteFailure` (namerd answered with an error: keep the value, back off;
  ``permanent`` ones such as "invalid path" end the watch), :class:`StreamLost` (the
  connection broke mid-stream: re-open at once), ``ValueError`` (an answer we cannot
  read: back off).
* While namerd is away every Activity/Var keeps its last known value, so a router keeps
  routing names it already knew. When namerd answers again every live watch is
  re-opened and its first answer replaces the old value (a full re-sync).
  ``namerd_client.NamerdEndpoints`` does the reaching: fail-over across several
  addresses, one probe task, backoff, the re-sync signal.
* Bounded state: a watch nobody observes is closed after an idle TTL and at most
  ``cache.*Inactive`` idle ones are kept (``naming.idle_cache``).

Metrics under ``rt/<router>/interpreter/<kind>/``: gauges ``bind/active``,
``bind/inactive``, ``addr/active``, ``addr/inactive``, ``bind/evictions``,
``addr/evictions``, ``connected``, ``streams``; counters ``bind/opened``,
``addr/opened``, ``updates``, ``reconnects``, ``stream_errors``, ``failover``,
``unreachable``, ``reconnected``. Admin:
``/<router>/interpreter_state/<kind>/<namespace>.json``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, Generic, Optional, TypeVar, Union

import aiohttp.web

from ..dtab import Dtab, NameTree, Path
from ..metrics import MetricsRegistry
from ..naming.addr import ADDR_PENDING, Addr, AddrFailed
from ..naming.bound import BoundName
from ..naming.idle_cache import IdleCache
from ..naming.transform import apply_transformers, build_transformers
from ..naming.var import PENDING, Activity, ActivityState, Closable, Failed, Ok, Var, start_stop
from ..tls import TlsRegistry
from ..tls.config import ClientTlsConfig, check_common_name_vars
from ..tls.material import check_cert_file
from .namerd_client import NamerdEndpoints, NamerdUnreachable, parse_endpoint, parse_endpoints

log = logging.getLogger(__name__)


# -- configuration shared by the three kinds -------------------------------------------------

@dataclass
class NamerdRetryConfig:
    """Linkerd's ``retry`` block; ``probeSeconds`` is ours (see ``namerd_client``)."""

    baseSeconds: float = field(default=5.0, metadata={"min": 0})
    maxSeconds: float = field(default=600.0, metadata={"min": 0})
    #: longest pause between reachability probes while no namerd address answers
    probeSeconds: float = field(default=1.0, metadata={"min": 0.05, "max": 60})

    def __post_init__(self) -> None:
        if self.maxSeconds < self.baseSeconds:
            raise ValueError(f"maxSeconds ({self.maxSeconds}) is smaller than baseSeconds ({self.baseSeconds})")


@dataclass
class NamerdCacheConfig:
    """Bounds on watches nobody observes (names from namerd's thrift ``cache`` block)."""

    bindingCacheInactive: int = field(default=100, metadata={"min": 0})
    bindingCacheInactiveTTLSecs: float = field(default=600.0, metadata={"min": 0})
    addrCacheInactive: int = field(default=100, metadata={"min": 0})
    addrCacheInactiveTTLSecs: float = field(default=600.0, metadata={"min": 0})


@dataclass
class FailureThresholdConfig:
    """Linkerd's ``failureThreshold`` (Finagle's failure detector): how often a session
    is pinged and how long a ping may go unanswered before the session is closed."""

    minPeriodMs: int = field(default=5000, metadata={"min": 100})
    closeTimeoutMs: int = field(default=4000, metadata={"min": 100})


def check_dst(value: Any) -> Any:
    # The validator applies this to each address (a list is checked item by item).
    if isinstance(value, list):
        parse_endpoints(value)
    else:
        parse_endpoint(value, "")
    return value


def check_namespace(value: str) -> str:
    if not value or "/" in value or value.strip() != value:
        raise ValueError(f"{value!r} is not a namespace name (no '/', not empty)")
    return value


@dataclass
class RemoteConfig:
    """Keys every namerd interpreter shares (``dst`` may list several namerds)."""

    dst: Union[str, list[str]] = field(metadata={
        "check": check_dst, "min_items": 1,
        "doc": "namerd address (/$/inet/<host>/<port>) or a list of them to fail over between"})
    namespace: str = field(default="default", metadata={"check": check_namespace})
    retry: NamerdRetryConfig = field(default_factory=NamerdRetryConfig)
    cache: NamerdCacheConfig = field(default_factory=NamerdCacheConfig)
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})
    experimental: bool = False
    #: talk to namerd over TLS (Linkerd's client TLS block; ``clientAuth`` for mutual TLS)
    tls: Optional[ClientTlsConfig] = None

    def __post_init__(self) -> None:
        check_common_name_vars(self.tls, None)


@dataclass
class NamerdTlsConfig:
    """The ``io.l5d.namerd`` interpreter's ``tls`` block (Linkerd's shape): the name
    namerd's certificate carries and the CA that signed it (default: the system's)."""

    commonName: str
    caCert: Optional[str] = field(default=None, metadata={"check": check_cert_file})

    def client_config(self) -> ClientTlsConfig:
        return ClientTlsConfig(commonName=self.commonName, trustCertsBundle=self.caCert)


# -- errors ---------------------------------------------------------------------------

class NamerdError(Exception):
    """namerd could not give an answer (its message is included)."""


class NamerdBindError(NamerdError):
    """namerd's tree contained an ``exception`` node: binding failed there."""


class RemoteFailure(Exception):
    """namerd answered with an error. ``permanent``: asking again cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class StreamLost(Exception):
    """The connection broke under an open stream (namerd killed or restarting)."""


# -- watches ------------------------------------------------------------------------------

class Watch:
    """One namerd watch, re-opened until closed. Subclasses interpret answers."""

    api = ""  # "bind", "addr", "dtab"

    def __init__(self, interp: "RemoteInterpreter[Any]", label: str) -> None:
        self._interp = interp
        self.label = label  # for logs and the admin: the name or id watched
        self._task: Optional[asyncio.Task[None]] = None
        self._stopping: Optional[asyncio.Task[None]] = None  # cancelled, maybe not finished yet
        self.closed = False
        self.connected = False
        self.opened = 0  # streams opened (1 + reconnects)
        self.updates = 0
        self.last_error: Optional[str] = None
        self.last_update: Optional[float] = None
        self.failed_permanently = False

    def start(self) -> None:
        self.closed = False
        if self.failed_permanently:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"namerd-{self.api}")

    def close(self) -> None:
        self.closed = True
        t, self._task = self._task, None
        if t is not None and not t.done():
            t.cancel()
            self._stopping = t
            # Forget the task once it has ended: a watch that held its finished task (and
            # the task its frames) would be a reference cycle, left for the garbage
            # collector; evicted watches of request dtabs would pile up that way.
            t.add_done_callback(self._stopped)
        self.connected = False

    def _stopped(self, t: "asyncio.Task[None]") -> None:
        if self._stopping is t:
            self._stopping = None
        if not t.cancelled() and t.exception() is not None:
            log.debug("%s watch ended with %r", self.api, t.exception())

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the cancelled stream task has ended, at most ``timeout`` seconds
        (the task is closed and holds nothing the caller needs; a close must not hang)."""
        t, self._stopping = self._stopping, None
        if t is None:
            return
        deadline = time.monotonic() + timeout
        while not t.done():
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("%s watch %s did not stop within %gs; abandoning it", self.api, self.label, timeout)
                return
            await asyncio.wait({t}, timeout=min(1.0, left))
            t.cancel()  # a cancel lost inside a library call: ask again
        if not t.cancelled() and t.exception() is not None:
            log.debug("%s watch ended with %r", self.api, t.exception())

    # hooks
    def _on_value(self, doc: Any) -> None:
        raise NotImplementedError

    def _on_failure(self, message: str, permanent: bool) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        interp = self._interp
        client = interp.client
        attempt = 0  # consecutive failures namerd reported (drives the backoff)
        short_lived = 0  # consecutive streams that ended without one value
        while not self.closed and not client.closed:
            ep = client.current
            generation = client.generation
            try:
                stream = await interp._open(self, ep)
            except NamerdUnreachable as e:
                self.connected = False
                self.last_error = str(e)
                await client.connection_failed(ep, e, generation)
                await interp._spread()
                continue
            except RemoteFailure as e:
                client.report_success(ep)  # it is up, it just said no
                interp._count("stream_errors")
                self.last_error = str(e)
                self._on_failure(str(e), e.permanent)
                if e.permanent:
                    self.failed_permanently = True
                    return
                await client.wait_backoff(client.backoff(attempt))
                attempt += 1
                continue
            if self.closed:  # closed while connecting
                await _aclose(stream)
                return
            client.report_success(ep)
            self.opened += 1
            if self.opened > 1:
                interp._count("reconnects")
            self.connected = True
            got_value = False
            backoff = False
            try:
                async for doc in stream:
                    got_value = True
                    attempt = 0
                    self._value(doc)
                # A clean end: namerd closed the stream (shutdown, restart): re-open.
            except RemoteFailure as e:
                interp._count("stream_errors")
                self.last_error = f"namerd {ep}: {e}"
                self._on_failure(self.last_error, e.permanent)
                if e.permanent:
                    self.failed_permanently = True
                    return
                backoff = True
            except ValueError as e:
                interp._count("stream_errors")
                self.last_error = f"namerd {ep}: unreadable answer: {e}"
                log.warning("%s %s: %s", self.api, self.label, self.last_error)
                self._on_failure(self.last_error, False)
                backoff = True
            except (StreamLost, NamerdUnreachable, OSError, asyncio.TimeoutError) as e:
                # Connection lost mid-stream (namerd killed or restarting): re-open at
                # once; if it refuses, the client fails over or waits for the probe.
                self.last_error = f"namerd {ep}: stream lost: {e or type(e).__name__}"
            except Exception as e:  # a bug must not end the watch for good
                log.exception("%s watch %s failed", self.api, self.label)
                self.last_error = f"internal error: {type(e).__name__}: {e}"
                backoff = True
            finally:
                self.connected = False
                await _aclose(stream)
            # Streams that end before their first value, again and again (namerd
            # accepting and dropping us), back off instead of spinning.
            if got_value:
                short_lived = 0
            else:
                short_lived += 1
                backoff = backoff or short_lived >= 3
            if backoff and not self.closed:
                await client.wait_backoff(client.backoff(attempt))
                attempt += 1

    def _value(self, doc: Any) -> None:
        self.updates += 1
        self.last_update = time.time()
        self._interp._count("updates")
        self._on_value(doc)

    def state(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "streams": self.opened,
            "updates": self.updates,
            "lastUpdate": self.last_update,
            "lastError": self.last_error,
        }


async def _aclose(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream may raise; it is closed either way
            pass


def show_state(st: Any) -> Any:
    if isinstance(st, Ok):
        v = st.value
        return v.show() if hasattr(v, "show") else str(v)
    if isinstance(st, Failed):
        return {"failed": str(st.error)}
    return "pending"


class AddrWatch(Watch):
    """The address set of one bound id, feeding one shared ``Var[Addr]``."""

    api = "addr"

    def __init__(self, interp: "RemoteInterpreter[Any]", id: Path) -> None:
        super().__init__(interp, id.show())
        self.id = id
        self.var: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._observed, self._unobserved))

    def _observed(self) -> None:
        self._interp._addrs.activate(self.id, self)

    def _unobserved(self) -> None:
        self._interp._addrs.deactivate(self.id, self)

    def _on_value(self, doc: Any) -> None:
        addr = self._interp.decode_addr(doc)
        if addr is ADDR_PENDING and self.var.sample() is not ADDR_PENDING:
            return  # a pending answer never replaces a known address set
        _publish(self.var, addr)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "observers": self.var.observer_count, "value": self.var.sample().to_json()}

    def _on_failure(self, message: str, permanent: bool) -> None:
        # Keep a known address set; only a name never resolved shows the failure.
        cur = self.var.sample()
        if cur is ADDR_PENDING or isinstance(cur, AddrFailed):
            _publish(self.var, AddrFailed(message))


class BindWatch(Watch):
    """The bound tree of one (dtab, path), feeding one shared Activity."""

    api = "bind"

    def __init__(self, interp: "RemoteInterpreter[Any]", dtab: Dtab, path: Path) -> None:
        super().__init__(interp, path.show())
        self.dtab = dtab
        self.path = path
        self.key = (dtab, path)
        self.states: Var[ActivityState[NameTree[BoundName]]] = Var.lazy(
            PENDING, start_stop(self._observed, self._unobserved))
        self.activity: Activity[NameTree[BoundName]] = Activity(self.states)
        #: what bind() returns: the activity, or the transformers' view of it
        self.result: Activity[NameTree[BoundName]] = self.activity
        # The addr watches of the current tree's leaves are held open by this binding,
        # so a leaf's addresses are streaming by the time the router picks it.
        self._holds: dict[Path, Closable] = {}

    def _observed(self) -> None:
        self._interp._binds.activate(self.key, self)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "observers": self.states.observer_count, "value": show_state(self.states.sample())}

    def _unobserved(self) -> None:
        self._interp._binds.deactivate(self.key, self)

    def _on_value(self, doc: Any) -> None:
        try:
            tree = self._interp.decode_tree(doc).simplified()
        except NamerdBindError as e:
            self._hold(set())
            _publish(self.states, Failed(e))
            return
        self._hold({b.id for b in tree.leaves()})
        _publish(self.states, Ok(tree))

    def _hold(self, ids: set[Path]) -> None:
        for id in ids - self._holds.keys():  # take new holds before dropping old ones
            self._holds[id] = self._interp._addr_watch(id).var.observe(_ignore, initial=False)
        for id in [i for i in self._holds if i not in ids]:
            self._holds.pop(id).close()

    def _on_failure(self, message: str, permanent: bool) -> None:
        cur = self.states.sample()
        if permanent or cur is PENDING or isinstance(cur, Failed):
            _publish(self.states, Failed(NamerdError(message)))

    def close(self) -> None:
        super().close()
        self._hold(set())


class DtabWatch(Watch):
    """The namespace's stored dtab, for the admin."""

    api = "dtab"

    def __init__(self, interp: "RemoteInterpreter[Any]") -> None:
        super().__init__(interp, interp.namespace)
        self.states: Var[ActivityState[Dtab]] = Var(PENDING)
        self.activity: Activity[Dtab] = Activity(self.states)

    def _on_value(self, doc: Any) -> None:
        _publish(self.states, Ok(self._interp.decode_dtab(doc)))

    def _on_failure(self, message: str, permanent: bool) -> None:
        cur = self.states.sample()
        if cur is PENDING or isinstance(cur, Failed):
            _publish(self.states, Failed(NamerdError(message)))


def _ignore(_: Any) -> None:
    pass


def _publish(var: Var[Any], value: Any) -> None:
    """Update a Var; an observer that raises (router code) must not end the stream."""
    try:
        var.update(value)
    except Exception:
        log.exception("an observer of a namerd watch failed")


def _dumps(doc: Any) -> str:
    return json.dumps(doc, default=str)


def _dumps_pretty(doc: Any) -> str:
    return json.dumps(doc, default=str, indent=2, sort_keys=True)


# -- the interpreter base ------------------------------------------------------------------

#: the transport's client (HTTP, gRPC or ThriftMux)
C = TypeVar("C", bound=NamerdEndpoints)


class RemoteInterpreter(Generic[C]):
    """Name interpreter backed by a namerd (see module docstring). Subclasses set
    ``kind`` and implement ``_make_client``, ``_open``,
    ``decode_tree``/``decode_addr``/``decode_dtab`` and ``delegate``."""

    kind = ""
    #: ALPN protocols offered when ``tls`` is on (gRPC: ``h2``)
    alpn: Optional[list[str]] = None

    def __init__(self, config: Any, namespace: str, metrics: Optional[MetricsRegistry] = None, scope: str = "",
                 transformers: Optional[list[Any]] = None, tls_registry: Optional[TlsRegistry] = None) -> None:
        self.config = config
        try:
            self.namespace = check_namespace(namespace)
        except ValueError as e:
            raise ValueError(f"namespace: {e}") from None
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self.scope = (scope or f"interpreter/{self.kind}").rstrip("/")
        self._counters: dict[str, Any] = {}
        # TLS to namerd: the process's registry (rotation, /admin/tls.json) or our own.
        tls_cfg = self.client_tls(config)
        self._own_tls = tls_registry is None and tls_cfg is not None and tls_cfg.enabled
        self._tls_registry = tls_registry or TlsRegistry(self.metrics)
        tls = self._tls_registry.client_params(tls_cfg, {}, self.scope, f"{self.scope}: tls", alpn=self.alpn)
        self.client: C = self._make_client(config, {
            "base_seconds": config.retry.baseSeconds, "max_seconds": config.retry.maxSeconds,
            "probe_seconds": config.retry.probeSeconds, "on_event": lambda name: self._count(name),
            "tls": tls, "tls_failures": self._tls_registry.handshake_failures(self.scope) if tls is not None else None,
        })
        cache = config.cache
        self._binds: IdleCache[tuple[Dtab, Path], BindWatch] = IdleCache(
            "bind", cache.bindingCacheInactive, cache.bindingCacheInactiveTTLSecs)
        self._addrs: IdleCache[Path, AddrWatch] = IdleCache(
            "addr", cache.addrCacheInactive, cache.addrCacheInactiveTTLSecs)
        self._dtab: Optional[DtabWatch] = None
        self.transformers = list(transformers or [])
        g = self.metrics.gauge
        g(f"{self.scope}/bind/active", lambda: self._binds.active)
        g(f"{self.scope}/bind/inactive", lambda: self._binds.inactive)
        g(f"{self.scope}/addr/active", lambda: self._addrs.active)
        g(f"{self.scope}/addr/inactive", lambda: self._addrs.inactive)
        g(f"{self.scope}/bind/evictions", lambda: self._binds.evictions)
        g(f"{self.scope}/addr/evictions", lambda: self._addrs.evictions)
        g(f"{self.scope}/connected", lambda: 1 if self.client.reachable else 0)
        g(f"{self.scope}/streams", self._open_streams)

    @classmethod
    def from_config(cls, config: Any, runtime: Any = None) -> Any:
        """Build from a validated config. ``runtime`` (``namerouter.linker.Runtime``) gives
        the metrics registry and the router label that scopes the metrics
        (``rt/<label>/interpreter/<kind>/…``) and names the admin page."""
        label = getattr(runtime, "router_label", None)
        scope = f"rt/{label}/interpreter/{cls.kind}" if label else f"interpreter/{cls.kind}"
        interp = cls(config, metrics=getattr(runtime, "metrics", None), scope=scope,  # type: ignore[call-arg]
                     transformers=build_transformers(config.transformers, runtime),
                     tls_registry=getattr(runtime, "tls", None))
        routes = getattr(runtime, "admin_routes", None)
        if isinstance(routes, list):
            routes.append(("GET", interp.admin_path(label), interp._admin_handler))
        return interp

    @staticmethod
    def client_tls(config: Any) -> Optional[ClientTlsConfig]:
        """The client TLS block of ``config`` (kinds with another shape convert here)."""
        return getattr(config, "tls", None)

    def _make_client(self, config: Any, options: dict[str, Any]) -> C:
        """The protocol's :class:`NamerdEndpoints` for ``config.dst`` with ``options``
        (retry, events, TLS)."""
        raise NotImplementedError

    # -- transport hooks ----------------------------------------------------------------
    async def _open(self, watch: Watch, ep: Any) -> AsyncIterable[Any]:
        """Open ``watch``'s stream on ``ep``: returns an async iterator of answers once
        namerd accepted it. Raises NamerdUnreachable / RemoteFailure (see module doc)."""
        raise NotImplementedError

    def decode_tree(self, doc: Any) -> NameTree[BoundName]:
        raise NotImplementedError

    def decode_addr(self, doc: Any) -> Addr:
        raise NotImplementedError

    def decode_dtab(self, doc: Any) -> Dtab:
        raise NotImplementedError

    async def delegate(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    # -- admin ----------------------------------------------------------------------------
    def admin_path(self, label: Optional[str] = None) -> str:
        """Linkerd's ``/<router>/interpreter_state/<kind>/<namespace>.json``."""
        pfx = f"/{label}" if label else ""
        return f"{pfx}/interpreter_state/{self.kind}/{self.namespace}.json"

    async def _admin_handler(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        view = self.dtab()  # the namespace's dtab watch starts with the first look
        try:
            await view.states.wait_for(lambda st: st is not PENDING, 1.0)
        except (asyncio.TimeoutError, TimeoutError):
            pass  # namerd away: show what we have
        return aiohttp.web.json_response(self.admin_state(),
                                         dumps=_dumps_pretty if "pretty" in request.query else _dumps)

    def admin_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "namerd": self.client.admin_state(),
            "dtab": show_state(self._dtab.states.sample()) if self._dtab is not None else None,
            "bind": {f"{k[1].show()}" + (f" ({k[0].show()})" if k[0].dentries else ""): w.state()
                     for k, w in self._binds.entries.items()},
            "addr": {k.show(): w.state() for k, w in self._addrs.entries.items()},
        }

    # -- metrics -----------------------------------------------------------------------
    def _count(self, name: str) -> None:
        c = self._counters.get(name)
        if c is None:
            c = self._counters[name] = self.metrics.counter(f"{self.scope}/{name}")
        c.incr()

    def _open_streams(self) -> int:
        n = sum(1 for w in self._binds.entries.values() if w.connected)
        n += sum(1 for w in self._addrs.entries.values() if w.connected)
        return n

    async def _spread(self) -> None:
        """After namerd returns, spread the reconnects of many watches over a short
        window so they do not all hit namerd in the same millisecond."""
        live = len(self._binds.entries) + len(self._addrs.entries)
        window = min(0.25, 0.0005 * live)
        if window > 0:
            await asyncio.sleep(random.uniform(0, window))

    # -- the interpreter contract ------------------------------------------------------------
    def bind(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> Activity[NameTree[BoundName]]:
        """The live bound tree of ``path`` under namerd's dtab for the namespace ++ ``dtab``
        (the router's base dtab ++ the request's local dtab). Shared per (dtab, path).
        ``from_request`` needs nothing here: namerd binds a ``dtab`` it is sent under its
        request budget."""
        key = (dtab, path)
        w = self._binds.get(key)
        if w is None:
            w = BindWatch(self, dtab, path)
            if self.transformers:
                # Router-side transformers (``/%/`` ids) over namerd's tree, built once
                # per binding so every caller shares one derived Activity.
                w.result = apply_transformers(w.activity, self.transformers)
            w.start()  # before add(): a cache with no room closes it again at once
            self._binds.add(key, w)
            self._count("bind/opened")
        else:
            self._binds.touch(key)
        return w.result

    def _addr_watch(self, id: Path) -> AddrWatch:
        w = self._addrs.get(id)
        if w is None:
            w = AddrWatch(self, id)
            w.start()
            self._addrs.add(id, w)
            self._count("addr/opened")
        return w

    def _bound_name(self, id: Path, residual: Path) -> BoundName:
        return BoundName(id, self._addr_watch(id).var, residual)

    def addr(self, id: Path) -> Var[Addr]:
        """The shared live address set of a bound id."""
        w = self._addr_watch(id)
        self._addrs.touch(id)
        return w.var

    def dtab(self) -> Activity[Dtab]:
        """The namespace's stored dtab, live (admin dtab view)."""
        if self._dtab is None:
            self._dtab = DtabWatch(self)
            self._dtab.start()
        return self._dtab.activity

    async def start(self) -> None:
        """Nothing to connect up front: watches open when names are bound."""

    async def close(self) -> None:
        watches: list[Watch] = [*self._binds.close(), *self._addrs.close()]
        if self._dtab is not None:
            self._dtab.close()
            watches.append(self._dtab)
        # Together, so one slow watch costs one bounded wait, not one per watch.
        await asyncio.gather(*(w.wait_closed() for w in watches if w._stopping is not None))
        await self.client.close()
        if self._own_tls:
            await self._tls_registry.close()
        self.metrics.remove_prefix(self.scope + "/")
