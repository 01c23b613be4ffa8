"""``io.l5d.httpController``: namerd's HTTP API, compatible with Linkerd's where a
client can see it (status codes, headers, body shapes; linkerd1-map §2).

Routes (prefix ``/api/1``; anything else -> 404 with an empty body):

=======================================  ===============================================
``/dtabs`` (any method), ``/dtabs/``      sorted JSON array of namespaces (+ ``watch``)
``GET|HEAD|POST|PUT|DELETE /dtabs/<ns>``  one namespace's dtab, ETag/If-Match versioned
``GET /bind/<ns>?path=&dtab=``            bound tree JSON (+ ``watch``)
``GET /addr/<ns>?path=<bound id>``        address set JSON (+ ``watch``)
``GET /resolve/<ns>?path=&dtab=``         the address set one request would use
``GET /delegate/<ns>?path=&dtab=``        delegation tree JSON (2 s budget -> 503)
``GET|POST /delegate``                    the same without a stored dtab (``namespace``)
``GET /bound-names``                      ids the enumerating namers know (+ ``watch``)
=======================================  ===============================================

Watch streams (``watch=true`` or ``watch=1``) are chunked HTTP/1.1 responses that
write one JSON document + ``\\n`` per change, skip a document identical to the
previous one, and on failure write the error text + ``\\n`` and end. The server has
no idle timeout on them; a stream ends when its client goes away, which cancels the
handler (the app must run with ``handler_cancellation=True``) and closes every
observation it opened.

Limits (README "Limits and hardening"): a dtab body over ``maxDtabKB`` (1 MB) is refused
with 413 and large ones are parsed off the event loop; a ``dtab`` parameter binds under
the interpreter's request budget, and a binding that exceeds it answers 400 (final: the
router's watch does not retry it); a watch whose client does not read holds only the
newest state not yet sent (intermediate states are skipped) and is closed when one
write stays blocked for ``watchStallTimeoutMs`` (30 s).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import inspect
import json
import logging
import weakref
from typing import Any, Callable, Iterable, Optional

from aiohttp import web

from namerouter.dtab import BindingTooLarge, Dtab, DtabSyntaxError, Path
from namerouter.metrics import MetricsRegistry
from namerouter.naming.addr import ADDR_PENDING, Addr
from namerouter.naming.dtab_text import (
    DEFAULT_MAX_BYTES, DtabTooLarge, check_size, off_loop, read_dtab, run_off_loop,
)
from namerouter.naming.var import PENDING, Activity, ActivityState, Failed, Ok, Var

from .binding import NamerdBinder, bound_tree_docs
from .dtabtext import DtabParseError, dtab_from_json
from .storage.base import (
    DtabStore,
    DtabStoreError,
    Forbidden,
    InvalidNamespace,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    StorageUnavailable,
    VersionedDtab,
    VersionMismatch,
    check_namespace,
)

log = logging.getLogger("namerd.api")

API = "/api/1"
JSON = "application/json"
DTAB_TYPES = ("application/dtab", "text/plain")
#: Budget of a one-shot delegate/bind answer (Linkerd: "Request timed out." after 2 s).
DELEGATE_TIMEOUT = 2.0
BIND_TIMEOUT = 10.0
#: How long one write to a watch stream may stay blocked (the client reads nothing)
#: before namerd closes it (``watchStallTimeoutMs``).
DEFAULT_WATCH_STALL_S = 30.0
#: The dtab size limit's config key (``io.l5d.httpController``), named in 413 answers.
MAX_DTAB_KEY = "maxDtabKB"

#: what a response is made from: an Activity's states (rendered when Ok)
States = Var[ActivityState[Any]]


def version_string(version: bytes) -> str:
    """ETag text: unquoted base64 of the store's version bytes (Linkerd's format)."""
    return base64.b64encode(version).decode("ascii")


def _compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _text(status: int, message: str = "") -> web.Response:
    if not message:
        return web.Response(status=status)
    return web.Response(status=status, text=message if message.endswith("\n") else message + "\n",
                        content_type="text/plain")


def _empty(status: int) -> web.Response:
    return web.Response(status=status)


class _BadRequest(Exception):
    """400 with this text as body."""


class _TooLarge(Exception):
    """413 with this text as body."""


class _ClientGone(Exception):
    pass


def _is_watch(request: web.Request) -> bool:
    return request.query.get("watch", "").lower() in ("true", "1")


def _codec_for_accept(request: web.Request) -> tuple[str, str]:
    """(content type, 'json'|'dtab') from ``Accept``: the first listed type we speak."""
    for part in request.headers.getall("Accept", []):
        for item in part.split(","):
            ct = item.split(";", 1)[0].strip().lower()
            if ct == JSON:
                return JSON, "json"
            if ct in DTAB_TYPES:
                return ct, "dtab"
    return JSON, "json"


def render_dtab(dtab: Dtab, codec: str) -> bytes:
    if codec == "dtab":
        return (dtab.show() + "\n").encode("utf-8")
    return _compact(dtab.to_json()) + b"\n"


class HttpController:
    """The aiohttp application of one ``io.l5d.httpController`` interface."""

    def __init__(self, store: DtabStore, binder: Optional[NamerdBinder] = None,
                 metrics: Optional[MetricsRegistry] = None, scope: str = "namerd/http",
                 max_dtab_bytes: int = DEFAULT_MAX_BYTES,
                 watch_stall_timeout: float = DEFAULT_WATCH_STALL_S) -> None:
        self.store = store
        self.binder = binder
        self.metrics = metrics or MetricsRegistry()
        self.scope = scope
        self.max_dtab_bytes = max_dtab_bytes
        self.watch_stall_timeout = watch_stall_timeout
        self._stalled = self.metrics.counter(f"{scope}/streams/stalled_closed")
        self._render_cache: "collections.OrderedDict[tuple[str, bytes, str], tuple[weakref.ref[Dtab], bytes]]" = \
            collections.OrderedDict()
        #: renders of large dtabs under way (same key), shared by everyone who asks meanwhile
        self._rendering: "dict[tuple[str, bytes, str], tuple[weakref.ref[Dtab], asyncio.Future[bytes]]]" = {}
        self.open_streams: dict[str, int] = collections.Counter()
        self._requests = self.metrics.counter(f"{scope}/requests")
        self.metrics.gauge(f"{scope}/streams", lambda: sum(self.open_streams.values()))
        for kind in ("dtabs", "dtab", "bind", "addr", "resolve", "bound-names"):
            self.metrics.gauge(f"{scope}/streams/{kind}", self._open_streams_of(kind))
        self.metrics.gauge(f"{scope}/storage/observed_namespaces", self.store.watch_count)

    def _open_streams_of(self, kind: str) -> Callable[[], int]:
        return lambda: self.open_streams.get(kind, 0)

    def app(self) -> web.Application:
        # Bodies are dtabs (text or JSON) or small JSON requests: past the dtab limit
        # aiohttp itself refuses to read on (413), whatever the framing.
        app = web.Application(client_max_size=self.max_dtab_bytes + 64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # Dispatch ---------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self._requests.incr()
        try:
            resp = await self._route(request)
        except _BadRequest as e:
            resp = _text(400, str(e))
        except _TooLarge as e:
            resp = _text(413, str(e))
        except InvalidNamespace as e:
            resp = _text(400, str(e))
        except Forbidden:
            resp = _empty(403)
        except StorageUnavailable as e:
            resp = _text(503, str(e))
        except DtabStoreError as e:
            resp = _text(500, str(e))
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug must answer 500 with a message, never kill namerd
            log.exception("%s %s failed", request.method, request.path_qs)
            resp = _text(500, f"{type(e).__name__}: {e}")
        self.metrics.counter(f"{self.scope}/status/{resp.status}").incr()
        return resp

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        m = request.method
        if path in (f"{API}/dtabs", f"{API}/dtabs/"):
            return await self.list_dtabs(request)
        if path.startswith(f"{API}/dtabs/"):
            ns = path[len(API) + 7:]
            handler = {"GET": self.get_dtab, "HEAD": self.head_dtab, "PUT": self.put_dtab,
                       "POST": self.post_dtab, "DELETE": self.delete_dtab}.get(m)
            if handler is None:
                return _empty(404)
            check_namespace(ns)
            return await handler(ns, request)
        if path == f"{API}/delegate":
            return await self.delegate_any(request)
        if path == f"{API}/bound-names" and m in ("GET", "HEAD"):
            return await self.bound_names(request)
        for name, handler in (("bind", self.bind), ("addr", self.addr), ("resolve", self.resolve),
                              ("delegate", self.delegate_ns)):
            prefix = f"{API}/{name}/"
            if path.startswith(prefix) and m in ("GET", "HEAD"):
                ns = path[len(prefix):]
                if not ns:
                    return _empty(404)
                check_namespace(ns)
                return await handler(ns, request)
        return _empty(404)

    # Dtab endpoints ----------------------------------------------------------------------
    async def list_dtabs(self, request: web.Request) -> web.StreamResponse:
        if _is_watch(request):
            return await self.stream(request, "dtabs", self.store.observe_list().states, JSON,
                                     lambda names: _compact(sorted(names)) + b"\n")
        names = await self.store.list()
        return web.Response(body=_compact(sorted(names)) + b"\n", content_type=JSON)

    async def _rendered(self, ns: str, vd: VersionedDtab, codec: str) -> bytes:
        """A stored dtab rendered once per version and codec, however many watchers and
        readers want it; a large one is rendered off the event loop (0.1 s per MB). The
        cache keeps bytes only (never an old version's parsed dtab)."""
        key = (ns, vd.version, codec)
        hit = self._render_cache.get(key)
        if hit is not None and hit[0]() is vd.dtab:  # same version bytes may recur after a delete
            self._render_cache.move_to_end(key)
            return hit[1]
        if len(vd.dtab) <= 2000:
            body = render_dtab(vd.dtab, codec)
        else:
            # Every watcher wakes on the same change: one render for all of them (20
            # watchers of a 1 MB dtab rendering it each held the GIL for seconds).
            pending = self._rendering.get(key)
            if pending is not None and pending[0]() is vd.dtab:
                return await asyncio.shield(pending[1])
            fut: "asyncio.Future[bytes]" = asyncio.ensure_future(run_off_loop(render_dtab, vd.dtab, codec))
            self._rendering[key] = (weakref.ref(vd.dtab), fut)
            try:
                body = await asyncio.shield(fut)
            finally:
                if self._rendering.get(key, (None, None))[1] is fut:
                    del self._rendering[key]
        self._render_cache[key] = (weakref.ref(vd.dtab), body)
        while len(self._render_cache) > 8:
            self._render_cache.popitem(last=False)
        return body

    async def get_dtab(self, ns: str, request: web.Request) -> web.StreamResponse:
        ctype, codec = _codec_for_accept(request)
        if _is_watch(request):
            async def render(vd: Optional[VersionedDtab]) -> Optional[bytes]:
                return None if vd is None else await self._rendered(ns, vd, codec)  # deletion: no frame

            return await self.stream(request, "dtab", self.store.observe(ns).states, ctype, render)
        vd = await self.store.get(ns)
        if vd is None:
            return _empty(404)
        resp = web.Response(body=await self._rendered(ns, vd, codec), content_type=ctype)
        resp.headers["ETag"] = version_string(vd.version)
        return resp

    async def head_dtab(self, ns: str, request: web.Request) -> web.StreamResponse:
        vd = await self.store.get(ns)
        if vd is None:
            return _empty(404)
        resp = web.Response(status=200)
        resp.headers["ETag"] = version_string(vd.version)
        return resp

    def _check_dtab_size(self, size: int) -> None:
        try:
            check_size(size, self.max_dtab_bytes, MAX_DTAB_KEY)
        except DtabTooLarge as e:
            raise _TooLarge(str(e)) from None

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, refused with 413 before reading when it announces more than the
        dtab limit (aiohttp stops a longer chunked body itself)."""
        if request.content_length is not None:
            self._check_dtab_size(request.content_length)
        body = await request.read()
        self._check_dtab_size(len(body))
        return body

    async def _read_dtab(self, request: web.Request) -> Dtab:
        ctype = request.headers.get("Content-Type", "")
        base = ctype.split(";", 1)[0].strip().lower()
        if base not in DTAB_TYPES and base != JSON:
            raise _BadRequest(f'Invalid Content-Type "{ctype}". Use application/json or application/dtab.')
        body = await self._read_body(request)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadRequest("dtab body is not valid UTF-8") from None
        if base == JSON:
            try:
                return await off_loop(dtab_from_json, text)
            except DtabParseError as e:
                raise _BadRequest(str(e)) from None
        try:
            return await read_dtab(text)
        except DtabSyntaxError as e:
            raise _BadRequest(str(e)) from None

    async def put_dtab(self, ns: str, request: web.Request) -> web.StreamResponse:
        dtab = await self._read_dtab(request)
        stamp = request.headers.get("If-Match")
        if stamp is None:
            await self.store.put(ns, dtab)  # Linkerd: PUT without If-Match is an upsert
            return _empty(204)
        try:
            version = base64.b64decode(stamp.strip().strip('"'), validate=True)
        except (binascii.Error, ValueError):
            return _text(412, f"If-Match {stamp!r} is not a version namerd issued")
        try:
            await self.store.update(ns, dtab, version)
        except VersionMismatch:
            return _empty(412)
        except NamespaceNotFound:
            return _empty(404)
        return _empty(204)

    async def post_dtab(self, ns: str, request: web.Request) -> web.StreamResponse:
        dtab = await self._read_dtab(request)
        try:
            await self.store.create(ns, dtab)
        except NamespaceAlreadyExists:
            return _empty(409)
        return _empty(204)

    async def delete_dtab(self, ns: str, request: web.Request) -> web.StreamResponse:
        try:
            await self.store.delete(ns)
        except NamespaceNotFound:
            return _empty(404)
        return _empty(204)

    # Naming endpoints --------------------------------------------------------------------
    @staticmethod
    def _path_param(request: web.Request) -> Path:
        raw = request.query.get("path")
        if raw is None:
            raise _BadRequest("Invalid path: (missing) / the 'path' query parameter is required")
        try:
            return Path.read(raw)
        except DtabSyntaxError as e:
            raise _BadRequest(f"Invalid path: {raw} / {e}") from None

    @staticmethod
    def _dtab_param(request: web.Request) -> Dtab:
        raw = request.query.get("dtab", "")
        try:
            return Dtab.read(raw) if raw.strip() else Dtab()
        except DtabSyntaxError as e:
            raise _BadRequest(f"Invalid dtab: {raw} / {e}") from None

    async def bind(self, ns: str, request: web.Request) -> web.StreamResponse:
        binder = self.binder
        if binder is None:
            return _text(501, "binding is not available: namerd has no interpreter")
        path = self._path_param(request)
        extra = self._dtab_param(request)
        docs = bound_tree_docs(binder.bind(ns, path, extra))
        hold = docs.observe(_ignore)  # computes it now: a static binding is known at once
        try:
            st = docs.sample()
            if extra.dentries and isinstance(st, Failed) and isinstance(st.error, BindingTooLarge):
                # The client's dtab is the problem: a final 400, not an error to retry.
                raise _BadRequest(f"Invalid dtab: {st.error}")
            if _is_watch(request):
                return await self.stream(request, "bind", docs, JSON, lambda doc: _compact(doc) + b"\n")
            return await self.one_shot(docs, lambda doc: _compact(doc) + b"\n", BIND_TIMEOUT)
        finally:
            hold.close()

    async def addr(self, ns: str, request: web.Request) -> web.StreamResponse:
        binder = self.binder
        if binder is None:
            return _text(501, "address resolution is not available: namerd has no interpreter")
        path = self._path_param(request)
        return await self._addr_response(request, "addr", _addr_states(binder.addr(path)))

    async def resolve(self, ns: str, request: web.Request) -> web.StreamResponse:
        binder = self.binder
        if binder is None:
            return _text(501, "resolution is not available: namerd has no interpreter")
        path = self._path_param(request)
        extra = self._dtab_param(request)
        return await self._addr_response(request, "resolve", _addr_states(binder.resolve(ns, path, extra)))

    async def _addr_response(self, request: web.Request, kind: str, states: States) -> web.StreamResponse:
        render = lambda a: _compact(a.to_json()) + b"\n"  # noqa: E731
        if _is_watch(request):
            return await self.stream(request, kind, states, JSON, render)
        return await self.one_shot(states, render, BIND_TIMEOUT)

    async def delegate_ns(self, ns: str, request: web.Request) -> web.StreamResponse:
        path = self._path_param(request)
        extra = self._dtab_param(request)
        return await self._delegate(ns, path, extra)

    async def delegate_any(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype != JSON:
                return _text(415, f'Unsupported Content-Type "{ctype}": POST a JSON object '
                                  '{"namespace", "dtab", "path"}')
            try:
                doc = await off_loop(json.loads, (await self._read_body(request)).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise _BadRequest(f"malformed JSON body: {e}") from None
            if not isinstance(doc, dict):
                raise _BadRequest('malformed request: expected a JSON object {"namespace", "dtab", "path"}')
            raw_path, raw_dtab, ns = doc.get("path"), doc.get("dtab") or "", doc.get("namespace")
        elif request.method in ("GET", "HEAD"):
            raw_path, raw_dtab, ns = request.query.get("path"), request.query.get("dtab", ""), \
                request.query.get("namespace")
        else:
            resp = _text(405, f"method {request.method} not allowed on {API}/delegate")
            resp.headers["Allow"] = "GET, POST"
            return resp
        if not isinstance(raw_path, str):
            raise _BadRequest("Invalid path: (missing) / 'path' is required")
        if not isinstance(raw_dtab, str) or (ns is not None and not isinstance(ns, str)):
            raise _BadRequest("malformed request: 'dtab' and 'namespace' must be strings")
        try:
            path = Path.read(raw_path)
        except DtabSyntaxError as e:
            raise _BadRequest(f"Invalid path: {raw_path} / {e}") from None
        try:
            extra = await read_dtab(raw_dtab) if raw_dtab.strip() else Dtab()
        except DtabSyntaxError as e:
            raise _BadRequest(f"Invalid dtab: {raw_dtab} / {e}") from None
        if ns:
            check_namespace(ns)
        return await self._delegate(ns or None, path, extra)

    async def _delegate(self, ns: Optional[str], path: Path, extra: Dtab) -> web.StreamResponse:
        binder = self.binder
        if binder is None or not hasattr(binder.interpreter, "delegate"):
            return _text(501, f"Name Interpreter for {ns or '(none)'} cannot show delegations")
        try:
            tree = await asyncio.wait_for(binder.delegate(ns, path, extra), DELEGATE_TIMEOUT)
        except asyncio.TimeoutError:
            return _text(503, "Request timed out.")
        return web.Response(body=_compact(tree), content_type=JSON)  # as Jackson: no trailing newline

    async def bound_names(self, request: web.Request) -> web.StreamResponse:
        binder = self.binder
        names: Callable[[], Iterable[str]] = binder.bound_names if binder is not None else (lambda: ())
        def render(ns: Iterable[str]) -> bytes:
            return _compact(list(ns)) + b"\n"

        if not _is_watch(request):
            return web.Response(body=render(names()), content_type=JSON)
        # Namers enumerate on demand (no change events), so the stream polls once a second
        # and sends a document only when the set changed.
        var: States = Var(Ok(tuple(names())))

        async def poll() -> None:
            while True:
                await asyncio.sleep(1.0)
                var.update(Ok(tuple(names())))

        task = asyncio.create_task(poll())
        try:
            return await self.stream(request, "bound-names", var, JSON, render)
        finally:
            task.cancel()

    # Responses from observables -------------------------------------------------------
    async def one_shot(self, states: States, render: Callable[[Any], Optional[bytes]],
                       timeout: float) -> web.StreamResponse:
        """The first non-pending state of ``states`` as one response."""
        try:
            st = await states.wait_for(lambda s: s is not PENDING, timeout)
        except asyncio.TimeoutError:
            return _text(503, "Request timed out.")
        if isinstance(st, Failed):
            return _text(500, str(st.error) or type(st.error).__name__)
        assert isinstance(st, Ok)  # not pending: waited for that
        body = render(st.value)
        return web.Response(body=body or b"", content_type=JSON)

    async def stream(self, request: web.Request, kind: str, states: States,
                     content_type: str, render: Callable[[Any], Any]) -> web.StreamResponse:
        """Chunked watch response: one rendered document per distinct Ok state.

        PENDING and values rendered as None produce nothing; Failed writes its message
        and ends the stream (the client reconnects). A client that reads slower than
        states change gets the newest one when it catches up: only that state is kept
        (and rendered when sent), so memory does not grow with the number of changes. A
        write blocked for ``watch_stall_timeout`` closes the connection. The observation
        is closed however the stream ends.
        """
        latest: list[Any] = [None]  # the newest state not sent yet
        wake = asyncio.Event()

        def on_state(st: ActivityState[Any]) -> None:
            if st is PENDING:
                return
            latest[0] = st
            wake.set()

        resp = web.StreamResponse(status=200)
        resp.content_type = content_type
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.open_streams[kind] += 1
        closable = states.observe(on_state)
        last: Optional[bytes] = None
        try:
            while True:
                st = latest[0]
                if st is None:
                    wake.clear()
                    await wake.wait()
                    continue
                latest[0] = None
                if isinstance(st, Failed):
                    await self._write(request, resp, (str(st.error) or type(st.error).__name__).encode(
                        "utf-8", "replace") + b"\n")
                    break
                try:
                    doc = render(st.value)
                    if inspect.isawaitable(doc):
                        doc = await doc
                except Exception as e:  # a value we cannot render fails this stream only
                    log.exception("cannot render %s watch value", kind)
                    await self._write(request, resp, f"{type(e).__name__}: {e}\n".encode("utf-8", "replace"))
                    break
                if doc is None or doc == last:
                    continue  # duplicates suppressed (Linkerd's dedup)
                last = doc
                await self._write(request, resp, doc)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError, _Stalled):
            pass  # the client went away, or was closed for not reading
        finally:
            closable.close()
            self.open_streams[kind] -= 1
        return resp

    async def _write(self, request: web.Request, resp: web.StreamResponse, data: bytes) -> None:
        """Write to a watch stream; a write blocked for ``watch_stall_timeout`` (the
        client stopped reading) aborts the connection and raises _Stalled."""
        try:
            await asyncio.wait_for(resp.write(data), self.watch_stall_timeout)
        except asyncio.TimeoutError:
            self._stalled.incr()
            log.info("closing a %s watch stream from %s: it took no data for %gs",
                     request.path, request.remote, self.watch_stall_timeout)
            if request.transport is not None:
                request.transport.abort()
            raise _Stalled() from None


class _Stalled(Exception):
    pass


def _ignore(_: Any) -> None:
    pass


def _addr_states(addr: Var[Addr]) -> States:
    """Addr Var -> activity-like states: pending addrs are not sent (Linkerd)."""
    from namerouter.naming.reactive import map_var

    from namerouter.naming.addr import AddrFailed

    def state(a: Addr) -> ActivityState[Any]:
        if a is ADDR_PENDING:
            return PENDING
        if isinstance(a, AddrFailed):  # namer failure: 500, or error line + end of stream
            return Failed(DtabStoreError(a.cause))
        return Ok(a)

    return map_var(addr, state)
