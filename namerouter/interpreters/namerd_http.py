"""``io.l5d.namerd.http``: a router that hands all binding to namerd's HTTP API.

What it does (``shared/reference/linkerd1-map.md`` §2.4):

* ``bind(dtab, path)`` opens one streaming
  ``GET /api/1/bind/<ns>?path=<name>&watch=1&dtab=<router dtab ++ request dtab>`` per
  distinct (dtab, path), shared by every caller. Each streamed tree becomes a
  ``NameTree[BoundName]``. The addresses embedded in its leaves are ignored: every bound
  id gets its own ``GET /api/1/addr/<ns>?path=<id>&watch=1`` stream (one per id, shared
  by every tree that names it) feeding that BoundName's ``addr`` Var.
* Streams are parsed as concatenated JSON values (``json_stream``); a plain-text error
  line ends a stream and it is re-opened.
* While namerd is away every Activity/Var keeps its last known value, so a router keeps
  routing names it already knew. When namerd answers again every live stream is re-opened
  and its first value replaces the old one (a full re-sync; Linkerd #807/#2411/#2283 were
  routers stuck on state from before a namerd restart). Reaching namerd, fail-over
  between several addresses, probing and backoff live in ``namerd_client``.
* Bounded state (Linkerd #1766): a binding or addr watch nobody observes is closed after
  an idle TTL, and at most ``cache.*Inactive`` unobserved ones are kept open; live counts
  are gauges.
* ``delegate(dtab, path)``: one-shot ``GET /api/1/delegate/<ns>``; ``dtab()``: the
  namespace's dtab as a live Activity (``GET /api/1/dtabs/<ns>?watch=1``) for the admin.

Config (Linkerd's keys, plus ours marked *)::

    interpreter:
      kind: io.l5d.namerd.http
      experimental: true            # Linkerd requires it; accepted here
      dst: /$/inet/127.0.0.1/4180   # or a list: addresses to fail over between, in order
      namespace: default
      retry: {baseSeconds: 5, maxSeconds: 600, probeSeconds: 1}   # probeSeconds*
      cache:                        # * names follow namerd's thrift interface cache block
        bindingCacheInactive: 100
        bindingCacheInactiveTTLSecs: 600
        addrCacheInactive: 100
        addrCacheInactiveTTLSecs: 600
      transformers: [...]           # applied to every bound tree, as in Linkerd

Failures: a name namerd has never answered for shows namerd's error (``Failed`` /
``AddrFailed`` with its status and message) while the stream retries with backoff; once a
name has a value, errors and outages keep that value. A 400 (namerd cannot parse the
name or dtab) is final for that binding. Namerd being unreachable is not an error for
the caller: never-answered names stay pending (the router's ``bindingTimeoutMs`` decides).

Metrics, under ``rt/<router>/interpreter/io.l5d.namerd.http/``: gauges ``bind/active``,
``bind/inactive``, ``addr/active``, ``addr/inactive`` (observed / idle watches),
``bind/evictions``, ``addr/evictions``, ``connected`` (1 while namerd answers),
``streams`` (open HTTP streams); counters ``bind/opened``, ``addr/opened``, ``updates``,
``reconnects``, ``stream_errors``, ``failover``, ``unreachable``, ``reconnected``.
Admin: ``/<router>/interpreter_state/io.l5d.namerd.http/<namespace>.json`` (every watch,
its value, errors and the namerd address in use).
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Optional, TypeVar, Union

import aiohttp
import aiohttp.web

from ..dtab import Dentry, Dtab, NameTree, Path, Prefix
from ..dtab.tree import EMPTY, FAIL, NEG, Alt, Leaf, Union as UnionTree, Weighted
from ..metrics import MetricsRegistry
from ..naming.addr import ADDR_PENDING, Addr, AddrFailed, addr_from_json
from ..naming.bound import BoundName
from ..naming.transform import apply_transformers, build_transformers
from ..naming.var import PENDING, Activity, ActivityState, Closable, Failed, Ok, Var, start_stop
from .json_stream import JsonStreamParser, StreamErrorLine, StreamTruncated
from .namerd_client import NamerdClient, NamerdResponseError, NamerdUnreachable, parse_endpoint, parse_endpoints

log = logging.getLogger(__name__)

KIND = "io.l5d.namerd.http"


# -- configuration --------------------------------------------------------------------

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


def _check_dst(value: Any) -> Any:
    # The validator applies this to each address (a list is checked item by item).
    if isinstance(value, list):
        parse_endpoints(value)
    else:
        parse_endpoint(value, "")
    return value


def _check_namespace(value: str) -> str:
    if not value or "/" in value or value.strip() != value:
        raise ValueError(f"{value!r} is not a namespace name (no '/', not empty)")
    return value


@dataclass
class NamerdHttpConfig:
    dst: Union[str, list[str]] = field(metadata={
        "check": _check_dst, "min_items": 1,
        "doc": "namerd address (/$/inet/<host>/<port>) or a list of them to fail over between"})
    kind: str = KIND
    namespace: str = field(default="default", metadata={"check": _check_namespace})
    retry: NamerdRetryConfig = field(default_factory=NamerdRetryConfig)
    cache: NamerdCacheConfig = field(default_factory=NamerdCacheConfig)
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})
    experimental: bool = False


# -- errors ---------------------------------------------------------------------------

class NamerdError(Exception):
    """namerd could not give an answer (its message is included)."""


class NamerdBindError(NamerdError):
    """namerd's tree contained an ``exception`` node: binding failed there."""


# -- JSON -> NameTree ---------------------------------------------------------------------

_PATH_CACHE: dict[str, Path] = {}
_PATH_CACHE_MAX = 4096


def _read_path(text: str) -> Path:
    """Path.read with a small cache: the same ids and residuals arrive in every update
    of every stream, and parsing is the bulk of converting a tree."""
    p = _PATH_CACHE.get(text)
    if p is None:
        p = Path.read(text)
        if len(_PATH_CACHE) >= _PATH_CACHE_MAX:
            _PATH_CACHE.clear()  # bounded; refilled by what is live
        _PATH_CACHE[text] = p
    return p


def tree_from_json(doc: Any, bound: Callable[[Path, Path], BoundName]) -> NameTree[BoundName]:
    """Convert namerd's bound-tree JSON (§2.3) to a NameTree of BoundNames.

    ``bound(id, residual)`` makes the leaf (with the shared addr Var of ``id``); the
    ``addr`` embedded in the JSON leaf is deliberately ignored. ``delegate`` and
    ``transformation`` nodes stand for their child; an ``exception`` node raises
    NamerdBindError (Linkerd fails the whole binding there too).
    """
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object for a tree node, got {type(doc).__name__}")
    t = doc.get("type")
    if t == "leaf":
        b = doc["bound"]
        return Leaf(bound(_read_path(b["id"]), _read_path(b.get("path") or "/")))
    if t == "neg":
        return NEG
    if t == "fail":
        return FAIL
    if t == "empty":
        return EMPTY
    if t == "alt":
        return Alt(*(tree_from_json(c, bound) for c in doc["alt"]))
    if t == "union":
        return UnionTree(*(Weighted(float(w.get("weight", 1.0)), tree_from_json(w["tree"], bound))
                           for w in doc["union"]))
    if t == "delegate":
        return tree_from_json(doc["delegate"], bound)
    if t == "transformation":
        return tree_from_json(doc["tree"], bound)
    if t == "exception":
        raise NamerdBindError(str(doc.get("message", "binding failed in namerd")))
    raise ValueError(f"unknown tree node type {t!r}")


def dtab_from_json(doc: Any) -> Dtab:
    if not isinstance(doc, list):
        raise ValueError(f"expected a JSON array of dentries, got {type(doc).__name__}")
    return Dtab(Dentry(Prefix.read(d["prefix"]), NameTree.read(d["dst"])) for d in doc)


# -- watches ------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)


class _Watch:
    """One namerd watch stream, re-opened until closed. Subclasses interpret values."""

    api = ""  # "bind", "addr", "dtabs"

    def __init__(self, interp: "NamerdHttpInterpreter", url_path: str, params: dict[str, str]) -> None:
        self._interp = interp
        self.url_path = url_path
        self.params = params
        self._task: Optional[asyncio.Task] = None
        self._stopping: Optional[asyncio.Task] = None  # cancelled, maybe not finished yet
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
        self.connected = False

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
                log.warning("%s watch %s did not stop within %gs; abandoning it",
                            self.api, self.params.get("path", ""), timeout)
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
        client = self._interp.client
        attempt = 0  # consecutive failures namerd reported (drives the backoff)
        short_lived = 0  # consecutive streams that ended without one value
        while not self.closed and not client.closed:
            ep = client.current
            generation = client.generation
            try:
                resp = await client.open(ep, self.url_path, self.params)
            except NamerdUnreachable as e:
                self.connected = False
                self.last_error = str(e)
                await client.connection_failed(ep, e, generation)
                await self._interp._spread()
                continue
            except NamerdResponseError as e:
                client.report_success(ep)  # it is up, it just said no
                self._interp._count("stream_errors")
                permanent = e.status == 400  # invalid path/dtab: asking again won't help
                self.last_error = str(e)
                self._on_failure(str(e), permanent)
                if permanent:
                    self.failed_permanently = True
                    return
                await client.wait_backoff(client.backoff(attempt))
                attempt += 1
                continue
            if self.closed:  # closed while connecting
                resp.close()
                return
            client.report_success(ep)
            self.opened += 1
            if self.opened > 1:
                self._interp._count("reconnects")
            self.connected = True
            got_value = False
            backoff = False
            parser = JsonStreamParser()
            try:
                async with resp:
                    async for chunk in resp.content.iter_any():
                        for doc in parser.feed(chunk):
                            got_value = True
                            attempt = 0
                            self._value(doc)
                        if parser.error is not None:
                            raise parser.error
                    parser.finish()
                # A clean end: namerd closed the stream (shutdown, restart): re-open.
            except StreamErrorLine as e:
                self._interp._count("stream_errors")
                self.last_error = f"namerd {ep}: {e.text}"
                self._on_failure(self.last_error, False)
                backoff = True
            except (ValueError, StreamTruncated) as e:
                self._interp._count("stream_errors")
                self.last_error = f"namerd {ep}: unreadable stream: {e}"
                log.warning("%s %s: %s", self.api, self.params.get("path", ""), self.last_error)
                self._on_failure(self.last_error, False)
                backoff = True
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                # Connection lost mid-stream (namerd killed or restarting): re-open at
                # once; if it refuses, the client fails over or waits for the probe.
                self.last_error = f"namerd {ep}: stream lost: {e or type(e).__name__}"
            except Exception as e:  # a bug must not end the watch for good
                log.exception("%s watch %s failed", self.api, self.params.get("path", ""))
                self.last_error = f"internal error: {type(e).__name__}: {e}"
                backoff = True
            finally:
                self.connected = False
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

    def state(self) -> dict:
        return {
            "connected": self.connected,
            "streams": self.opened,
            "updates": self.updates,
            "lastUpdate": self.last_update,
            "lastError": self.last_error,
        }


def _show_state(st: Any) -> Any:
    if isinstance(st, Ok):
        v = st.value
        return v.show() if hasattr(v, "show") else str(v)
    if isinstance(st, Failed):
        return {"failed": str(st.error)}
    return "pending"


class AddrWatch(_Watch):
    """``/api/1/addr/<ns>?path=<id>&watch=1`` feeding one shared ``Var[Addr]``."""

    api = "addr"

    def __init__(self, interp: "NamerdHttpInterpreter", id: Path) -> None:
        super().__init__(interp, f"/api/1/addr/{interp.namespace}", {"path": id.show(), "watch": "1"})
        self.id = id
        self.var: Var[Addr] = Var.lazy(ADDR_PENDING, start_stop(self._observed, self._unobserved))

    def _observed(self) -> None:
        self._interp._addrs.activate(self.id, self)

    def _unobserved(self) -> None:
        self._interp._addrs.deactivate(self.id, self)

    def _on_value(self, doc: Any) -> None:
        _publish(self.var, addr_from_json(doc))

    def state(self) -> dict:
        return {**super().state(), "observers": self.var.observer_count, "value": self.var.sample().to_json()}

    def _on_failure(self, message: str, permanent: bool) -> None:
        # Keep a known address set; only a name never resolved shows the failure.
        cur = self.var.sample()
        if cur is ADDR_PENDING or isinstance(cur, AddrFailed):
            _publish(self.var, AddrFailed(message))


class BindWatch(_Watch):
    """``/api/1/bind/<ns>?path=&dtab=&watch=1`` feeding one shared Activity."""

    api = "bind"

    def __init__(self, interp: "NamerdHttpInterpreter", dtab: Dtab, path: Path) -> None:
        params = {"path": path.show(), "watch": "1"}
        if dtab.dentries:
            params["dtab"] = dtab.show()
        super().__init__(interp, f"/api/1/bind/{interp.namespace}", params)
        self.key = (dtab, path)
        self.states: Var[ActivityState[NameTree[BoundName]]] = Var.lazy(PENDING, start_stop(self._observed, self._unobserved))
        self.activity: Activity[NameTree[BoundName]] = Activity(self.states)
        #: what bind() returns: the activity, or the transformers' view of it
        self.result: Activity[NameTree[BoundName]] = self.activity
        # The addr watches of the current tree's leaves are held open by this binding,
        # so a leaf's addresses are streaming by the time the router picks it.
        self._holds: dict[Path, Closable] = {}

    def _observed(self) -> None:
        self._interp._binds.activate(self.key, self)

    def state(self) -> dict:
        return {**super().state(), "observers": self.states.observer_count, "value": _show_state(self.states.sample())}

    def _unobserved(self) -> None:
        self._interp._binds.deactivate(self.key, self)

    def _on_value(self, doc: Any) -> None:
        try:
            tree = tree_from_json(doc, self._interp._bound_name).simplified()
        except NamerdBindError as e:
            self._hold(set())
            _publish(self.states, Failed(e))
            return
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed bound tree ({type(e).__name__}: {e})") from None
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


class DtabWatch(_Watch):
    """``/api/1/dtabs/<ns>?watch=1``: the namespace's dtab, for the admin."""

    api = "dtabs"

    def __init__(self, interp: "NamerdHttpInterpreter") -> None:
        super().__init__(interp, f"/api/1/dtabs/{interp.namespace}", {"watch": "1"})
        self.states: Var[ActivityState[Dtab]] = Var(PENDING)
        self.activity: Activity[Dtab] = Activity(self.states)

    def _on_value(self, doc: Any) -> None:
        try:
            _publish(self.states, Ok(dtab_from_json(doc)))
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed dtab ({type(e).__name__}: {e})") from None

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


# -- caches ------------------------------------------------------------------------------

W = TypeVar("W", bound=_Watch)


class WatchCache(Generic[K, W]):
    """Live watches by key. Observed ("active") watches are never closed here; unobserved
    ("inactive") ones are closed after ``ttl`` seconds and at most ``capacity`` of them are
    kept (least recently used closed first). Both operations are O(1)."""

    def __init__(self, name: str, capacity: int, ttl: float) -> None:
        self.name = name
        self.capacity = capacity
        self.ttl = ttl
        self.entries: dict[K, W] = {}
        self._inactive: "collections.OrderedDict[K, float]" = collections.OrderedDict()
        self._timer: Optional[asyncio.TimerHandle] = None
        self.evictions = 0

    def get(self, key: K) -> Optional[W]:
        return self.entries.get(key)

    def add(self, key: K, watch: W) -> None:
        """A new watch, not observed yet: it starts out inactive (so it expires if
        nobody ever observes it, e.g. a scanner's random Host header)."""
        self.entries[key] = watch
        self.deactivate(key, watch)

    def activate(self, key: K, watch: W) -> None:
        cur = self.entries.get(key)
        if cur is None:
            self.entries[key] = watch  # re-observed after eviction: back in the cache
        elif cur is not watch:
            watch.start()  # an evicted duplicate someone still holds: runs uncached
            return
        self._inactive.pop(key, None)
        watch.start()

    def deactivate(self, key: K, watch: W) -> None:
        if self.entries.get(key) is not watch:
            watch.close()  # an uncached duplicate: nobody else can find it
            return
        self._inactive.pop(key, None)
        self._inactive[key] = time.monotonic() + self.ttl
        while len(self._inactive) > self.capacity:
            old, _ = self._inactive.popitem(last=False)
            self._evict(old)
        self._schedule()

    def touch(self, key: K) -> None:
        """Looked up again while inactive: restart its idle clock."""
        if key in self._inactive:
            self._inactive.move_to_end(key)
            self._inactive[key] = time.monotonic() + self.ttl
            self._schedule()

    def _evict(self, key: K) -> None:
        w = self.entries.pop(key, None)
        if w is not None:
            self.evictions += 1
            w.close()

    def _schedule(self) -> None:
        if self._timer is not None or not self._inactive:
            return
        deadline = next(iter(self._inactive.values()))
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - time.monotonic())
        self._timer = loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._inactive:
            key, deadline = next(iter(self._inactive.items()))
            if deadline > now:
                break
            del self._inactive[key]
            self._evict(key)
        self._schedule()

    @property
    def active(self) -> int:
        return len(self.entries) - len(self._inactive)

    @property
    def inactive(self) -> int:
        return len(self._inactive)

    def close(self) -> list[W]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ws = list(self.entries.values())
        self.entries.clear()
        self._inactive.clear()
        for w in ws:
            w.close()
        return ws


# -- the interpreter ------------------------------------------------------------------------

class NamerdHttpInterpreter:
    """Name interpreter backed by namerd's HTTP streaming API (see module docstring)."""

    kind = KIND
    config_class = NamerdHttpConfig

    def __init__(
        self,
        config: NamerdHttpConfig,
        metrics: Optional[MetricsRegistry] = None,
        scope: str = f"interpreter/{KIND}",
        transformers: Optional[list[Any]] = None,
    ) -> None:
        self.config = config
        try:
            self.namespace = _check_namespace(config.namespace)
        except ValueError as e:
            raise ValueError(f"namespace: {e}") from None
        self.client = NamerdClient(
            parse_endpoints(config.dst),
            base_seconds=config.retry.baseSeconds,
            max_seconds=config.retry.maxSeconds,
            probe_seconds=config.retry.probeSeconds,
            on_event=lambda name: self._count(name),
        )
        c = config.cache
        self._binds: WatchCache[tuple[Dtab, Path], BindWatch] = WatchCache(
            "bind", c.bindingCacheInactive, c.bindingCacheInactiveTTLSecs)
        self._addrs: WatchCache[Path, AddrWatch] = WatchCache(
            "addr", c.addrCacheInactive, c.addrCacheInactiveTTLSecs)
        self._dtab: Optional[DtabWatch] = None
        self.transformers = list(transformers or [])
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self.scope = scope.rstrip("/")
        self._counters: dict[str, Any] = {}
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
    def from_config(cls, config: NamerdHttpConfig, runtime: Any = None) -> "NamerdHttpInterpreter":
        """Build from a validated config. ``runtime`` (``namerouter.linker.Runtime``) gives
        the metrics registry and the router label that scopes the metrics
        (``rt/<label>/interpreter/io.l5d.namerd.http/…``)."""
        label = getattr(runtime, "router_label", None)
        scope = f"rt/{label}/interpreter/{KIND}" if label else f"interpreter/{KIND}"
        interp = cls(config, metrics=getattr(runtime, "metrics", None), scope=scope,
                     transformers=build_transformers(config.transformers, runtime))
        routes = getattr(runtime, "admin_routes", None)
        if isinstance(routes, list):
            routes.append(("GET", interp.admin_path(label), interp._admin_handler))
        return interp

    def admin_path(self, label: Optional[str] = None) -> str:
        """Linkerd's ``/<router>/interpreter_state/<kind>/<namespace>.json``."""
        pfx = f"/{label}" if label else ""
        return f"{pfx}/interpreter_state/{KIND}/{self.namespace}.json"

    async def _admin_handler(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        view = self.dtab()  # the namespace's dtab stream starts with the first look
        try:
            await view.states.wait_for(lambda st: st is not PENDING, 1.0)
        except (asyncio.TimeoutError, TimeoutError):
            pass  # namerd away: show what we have
        return aiohttp.web.json_response(self.admin_state(), dumps=_dumps_pretty if "pretty" in request.query else _dumps)

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
        """After namerd returns, spread the reconnects of many streams over a short
        window so they do not all hit namerd in the same millisecond."""
        live = len(self._binds.entries) + len(self._addrs.entries)
        window = min(0.25, 0.0005 * live)
        if window > 0:
            await asyncio.sleep(random.uniform(0, window))

    # -- the interpreter contract ------------------------------------------------------------
    def bind(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> Activity[NameTree[BoundName]]:
        """The live bound tree of ``path`` under namerd's dtab for the namespace ++ ``dtab``
        (the router's base dtab ++ the request's local dtab). Shared per (dtab, path).
        ``from_request`` needs nothing here: namerd binds any ``dtab`` parameter under
        its request budget."""
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
        """The shared live address set of a bound id (as namerd's ``/api/1/addr`` sees it)."""
        w = self._addr_watch(id)
        self._addrs.touch(id)
        return w.var

    async def delegate(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> dict:
        """namerd's delegate tree JSON for ``path`` (``GET /api/1/delegate/<ns>``)."""
        params = {"path": path.show()}
        if dtab.dentries:
            params["dtab"] = dtab.show()
        try:
            return await self.client.get_json(f"/api/1/delegate/{self.namespace}", params)
        except NamerdResponseError as e:
            raise NamerdError(str(e)) from None
        except NamerdUnreachable as e:
            raise NamerdError(f"namerd unreachable: {e}") from None

    def dtab(self) -> Activity[Dtab]:
        """The namespace's stored dtab, live (admin dtab view)."""
        if self._dtab is None:
            self._dtab = DtabWatch(self)
            self._dtab.start()
        return self._dtab.activity

    async def start(self) -> None:
        """Nothing to connect up front: streams open when names are bound."""

    async def close(self) -> None:
        watches: list[_Watch] = [*self._binds.close(), *self._addrs.close()]
        if self._dtab is not None:
            self._dtab.close()
            watches.append(self._dtab)
        # Together, so one slow watch costs one bounded wait, not one per watch.
        await asyncio.gather(*(w.wait_closed() for w in watches if w._stopping is not None))
        await self.client.close()
        prefix = self.scope + "/"
        self.metrics.remove_prefix(prefix)

    def admin_state(self) -> dict:
        return {
            "kind": KIND,
            "namespace": self.namespace,
            "namerd": self.client.admin_state(),
            "dtab": _show_state(self._dtab.states.sample()) if self._dtab is not None else None,
            "bind": {f"{k[1].show()}" + (f" ({k[0].show()})" if k[0].dentries else ""): w.state()
                     for k, w in self._binds.entries.items()},
            "addr": {k.show(): w.state() for k, w in self._addrs.entries.items()},
        }
