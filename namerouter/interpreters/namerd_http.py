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
      tls:                          # Linkerd's client TLS block: https to namerd
        commonName: namerd          # SNI and the name namerd's certificate must carry
        trustCertsBundle: ca.pem    # (or trustCerts: [...]; default: the system's CAs)
        clientAuth: {certPath: router.pem, keyPath: router-key.pem}   # mutual TLS

Failures: a name namerd has never answered for shows namerd's error (``Failed`` /
``AddrFailed`` with its status and message) while the stream retries with backoff; once a
name has a value, errors and outages keep that value. A 400 (namerd cannot parse the
name or dtab) is final for that binding. Namerd being unreachable is not an error for
the caller: never-answered names stay pending (the router's ``bindingTimeoutMs`` decides).

Metrics and admin: see ``remote.py`` (scope ``rt/<router>/interpreter/io.l5d.namerd.http/``,
``/<router>/interpreter_state/io.l5d.namerd.http/<namespace>.json``).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterable, AsyncIterator, Callable, Optional

import aiohttp

from ..dtab import Dentry, Dtab, NameTree, Path, Prefix
from ..dtab.tree import EMPTY, FAIL, NEG, Alt, Leaf, Union as UnionTree, Weighted
from ..metrics import MetricsRegistry
from ..naming.addr import Addr, addr_from_json
from ..naming.bound import BoundName
from .json_stream import JsonStreamParser, StreamErrorLine, StreamTruncated
from .namerd_client import Endpoint, NamerdClient, NamerdResponseError, NamerdUnreachable, parse_endpoints
from .remote import (  # noqa: F401  (re-exported: the config blocks and errors of this kind)
    AddrWatch,
    BindWatch,
    NamerdBindError,
    NamerdCacheConfig,
    NamerdError,
    NamerdRetryConfig,
    RemoteConfig,
    RemoteFailure,
    RemoteInterpreter,
    StreamLost,
    Watch,
    check_dst,
    check_namespace,
)

KIND = "io.l5d.namerd.http"


@dataclass
class NamerdHttpConfig(RemoteConfig):
    kind: str = KIND


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


class NamerdHttpInterpreter(RemoteInterpreter[NamerdClient]):
    """Name interpreter backed by namerd's HTTP streaming API (see module docstring)."""

    kind = KIND
    config_class = NamerdHttpConfig

    def __init__(
        self,
        config: NamerdHttpConfig,
        metrics: Optional[MetricsRegistry] = None,
        scope: str = f"interpreter/{KIND}",
        transformers: Optional[list[Any]] = None,
        tls_registry: Any = None,
    ) -> None:
        super().__init__(config, config.namespace, metrics, scope, transformers, tls_registry)

    def _make_client(self, config: Any, options: dict[str, Any]) -> NamerdClient:
        return NamerdClient(parse_endpoints(config.dst), **options)

    # -- transport -----------------------------------------------------------------------
    def _request(self, watch: Watch) -> tuple[str, dict[str, str]]:
        ns = self.namespace
        if isinstance(watch, BindWatch):
            params = {"path": watch.path.show(), "watch": "1"}
            if watch.dtab.dentries:
                params["dtab"] = watch.dtab.show()
            return f"/api/1/bind/{ns}", params
        if isinstance(watch, AddrWatch):
            return f"/api/1/addr/{ns}", {"path": watch.id.show(), "watch": "1"}
        return f"/api/1/dtabs/{ns}", {"watch": "1"}

    async def _open(self, watch: Watch, ep: Endpoint) -> AsyncIterable[Any]:
        path, params = self._request(watch)
        try:
            resp = await self.client.open(ep, path, params)
        except NamerdResponseError as e:
            raise RemoteFailure(str(e), permanent=e.status == 400) from None  # 400: invalid path/dtab
        return _documents(resp)

    def decode_tree(self, doc: Any) -> NameTree[BoundName]:
        try:
            return tree_from_json(doc, self._bound_name)
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed bound tree ({type(e).__name__}: {e})") from None

    def decode_addr(self, doc: Any) -> Addr:
        return addr_from_json(doc)

    def decode_dtab(self, doc: Any) -> Dtab:
        try:
            return dtab_from_json(doc)
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed dtab ({type(e).__name__}: {e})") from None

    async def delegate(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> dict[str, Any]:
        """namerd's delegate tree JSON for ``path`` (``GET /api/1/delegate/<ns>``)."""
        params = {"path": path.show()}
        if dtab.dentries:
            params["dtab"] = dtab.show()
        try:
            tree: dict[str, Any] = await self.client.get_json(f"/api/1/delegate/{self.namespace}", params)
            return tree
        except NamerdResponseError as e:
            raise NamerdError(str(e)) from None
        except NamerdUnreachable as e:
            raise NamerdError(f"namerd unreachable: {e}") from None


async def _documents(resp: aiohttp.ClientResponse) -> AsyncIterator[Any]:
    """The JSON documents of one watch response (concatenated JSON values)."""
    parser = JsonStreamParser()
    try:
        async with resp:
            async for chunk in resp.content.iter_any():
                for doc in parser.feed(chunk):
                    yield doc
                if parser.error is not None:
                    raise parser.error
            parser.finish()
    except StreamErrorLine as e:
        raise RemoteFailure(e.text) from None
    except StreamTruncated as e:
        raise ValueError(f"stream truncated: {e}") from None
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        raise StreamLost(str(e) or type(e).__name__) from None
