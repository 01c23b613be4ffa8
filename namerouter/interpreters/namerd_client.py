"""Reaching one or more namerd addresses, for the ``io.l5d.namerd.http``,
``io.l5d.mesh`` and ``io.l5d.namerd`` interpreters.

:class:`NamerdEndpoints` owns everything about *reaching* namerd whatever the protocol;
the interpreters own what the answers mean. :class:`NamerdClient` adds HTTP (the
controller API); the gRPC and ThriftMux clients live beside their interpreters. Jobs:

* parse the ``dst`` addresses (Finagle paths such as ``/$/inet/127.0.0.1/4180``);
* open watch streams and one-shot requests against the address currently in use;
* fail over: a connection failure on the current address moves every stream to the
  next address at once;
* when no address answers, one probe task (not one loop per stream) polls the
  addresses with a short jittered backoff; the moment one answers, every stream that
  is waiting (for reachability *or* in an error backoff) is woken and reconnects.
  That wake-up is the "full re-sync": every live watch is re-opened and the first
  value of each new stream replaces what the router had;
* jittered exponential backoff between ``retry.baseSeconds`` and ``retry.maxSeconds``
  for failures namerd itself reports (5xx, error lines, bad JSON), as Linkerd does.

Why a probe instead of Linkerd's per-request backoff for "connection refused": with
the 5 s / 600 s defaults a router would wait minutes after a long namerd outage
before noticing namerd is back (Linkerd #847, #2411). A refused TCP connection costs
nothing, so probing at most every ``retry.probeSeconds`` (1 s) is cheap and bounds the
time to re-sync after namerd returns.

TLS (the interpreter's ``tls`` block): every connection uses the ``ClientTlsParams``
context of the moment (a rotated client certificate or CA applies to the next
connection) and the configured ``commonName`` as SNI and verified name. A failed
handshake is counted (``…/tls/handshake_failures``), its short reason ("unknown CA",
"name mismatch", …) becomes ``lastError`` in the admin state, and namerd is treated as
unreachable for that address (fail-over, probing), since retrying the same handshake
cannot succeed until a certificate changes.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, TypeVar, Union

import aiohttp

from ..naming.dns import ip_literal
from ..tls.errors import HandshakeFailures, describe, is_tls_error
from ..tls.reloading import ClientTlsParams

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long to wait for namerd's response headers on a new stream or request.
HEADERS_TIMEOUT_S = 30.0
#: TCP connect timeout per attempt: a black-holed address must not stall fail-over.
CONNECT_TIMEOUT_S = 2.0
#: Longest ``close()`` waits for the probe task and for aiohttp to see its connections
#: closed; past it the sockets are aborted (a router reload must never hang on us).
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Endpoint:
    """One namerd HTTP controller address."""

    host: str
    port: int

    def url(self, scheme: str) -> str:
        host = ip_literal(self.host) or self.host  # URLs need canonical IPs: /$/inet/127.1/4180
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _port(text: str, where: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{_where(where)}port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{_where(where)}port {port} is outside 1-65535")
    return port


def parse_endpoint(value: Any, where: str = "dst") -> Endpoint:
    """``/$/inet/<host>/<port>`` (also ``/$/fixedinet/…``, ``/$/io.buoyant.rinet/<port>/<host>``,
    ``/$/inet/<port>`` = this host) or a plain ``host:port``. Errors start with ``where``."""
    w = _where(where)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{w}expected a namerd address such as /$/inet/127.0.0.1/4180, got {value!r}")
    text = value.strip()
    if text.startswith("/"):
        labels = [l for l in text.split("/") if l]
        if len(labels) >= 3 and labels[0] == "$" and labels[1] in ("inet", "fixedinet"):
            if len(labels) == 3:
                return Endpoint("127.0.0.1", _port(labels[2], where))
            if len(labels) == 4:
                return Endpoint(labels[2], _port(labels[3], where))
        if len(labels) == 4 and labels[0] == "$" and labels[1] == "io.buoyant.rinet":
            return Endpoint(labels[3], _port(labels[2], where))
        raise ValueError(
            f"{w}{text!r} is not a namerd address; expected /$/inet/<host>/<port> "
            "(or /$/io.buoyant.rinet/<port>/<host>, or host:port)")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{w}{text!r} is not a namerd address; expected /$/inet/<host>/<port> or host:port")
    return Endpoint(host.strip("[]"), _port(port, where))


def parse_endpoints(dst: Union[str, Sequence[str]]) -> list[Endpoint]:
    """``dst`` is one address or a list of addresses to fail over between, in order."""
    if isinstance(dst, str):
        return [parse_endpoint(dst)]
    if not isinstance(dst, (list, tuple)) or not dst:
        raise ValueError(f"dst: expected a namerd address or a non-empty list of them, got {dst!r}")
    return [parse_endpoint(v, f"dst[{i}]") for i, v in enumerate(dst)]


def jittered_backoff(attempt: int, base: float, cap: float) -> float:
    """Finagle's exponentialJittered: the n-th delay is uniform in [base, min(cap, base*2^n)]."""
    if base <= 0:
        return 0.0
    hi = min(cap, base * (2 ** min(attempt, 30)))
    return random.uniform(base, max(base, hi))


class NamerdUnreachable(Exception):
    """The TCP connection to a namerd address could not be made (or was lost at once)."""


class NamerdResponseError(Exception):
    """namerd answered with a non-200 status; ``status`` and namerd's ``body`` text."""

    def __init__(self, endpoint: Endpoint, url: str, status: int, body: str) -> None:
        msg = body.strip() or f"HTTP {status}"
        super().__init__(f"namerd {endpoint} answered {status} to GET {url}: {msg}")
        self.endpoint = endpoint
        self.status = status
        self.body = body


def _keepalive_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """Sockets with TCP keepalive, so a namerd host that vanishes without closing the
    connection (power loss, partition) ends our watch streams within ~30 s instead of
    leaving them silently stale (there is no heartbeat frame in namerd's protocol)."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, val in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)
    return sock


class NamerdEndpoints:
    """Shared by every watch of one interpreter: address choice, fail-over, probing,
    backoff and the re-sync signal. Subclasses say how to probe an address
    (:meth:`_probe`) and close their connections (:meth:`_close_transport`)."""

    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        base_seconds: float = 5.0,
        max_seconds: float = 600.0,
        probe_seconds: float = 1.0,
        on_event: Optional[Callable[[str], None]] = None,
        tls: Optional[ClientTlsParams] = None,
        tls_failures: Optional[HandshakeFailures] = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.tls = tls
        self.tls_failures = tls_failures
        if not self.endpoints:
            raise ValueError("at least one namerd address is required")
        self.base_seconds = float(base_seconds)
        self.max_seconds = max(float(max_seconds), self.base_seconds)
        self.probe_seconds = float(probe_seconds)
        self._on_event = on_event or (lambda name: None)
        self._current = 0
        # Addresses that refused us since the last success; all of them => unreachable.
        self._failed: set[int] = set()
        self._probe_task: Optional[asyncio.Task[None]] = None
        self._resync: Optional[asyncio.Event] = None  # created lazily on the loop
        self.reachable = True
        self.generation = 0  # bumped on every re-sync (namerd came back / fail-over)
        self.last_error: Optional[str] = None
        self.last_change = time.time()
        self._closed = False

    # -- state ---------------------------------------------------------------------
    @property
    def current(self) -> Endpoint:
        return self.endpoints[self._current]

    def _event(self) -> asyncio.Event:
        if self._resync is None:
            self._resync = asyncio.Event()
        return self._resync

    def _signal_resync(self) -> None:
        """Wake every stream waiting for namerd (reachability or error backoff)."""
        self.generation += 1
        ev = self._event()
        self._resync = asyncio.Event()
        ev.set()

    def report_success(self, ep: Endpoint) -> None:
        """A stream got an answer from ``ep``: it is good; stop probing."""
        idx = self.endpoints.index(ep)
        self._failed.discard(idx)
        if not self.reachable:
            self.reachable = True
            self._current = idx
            self.last_change = time.time()
            self._on_event("reconnected")
            self._signal_resync()

    async def connection_failed(self, ep: Endpoint, error: BaseException,
                                generation: Optional[int] = None) -> None:
        """A stream could not reach ``ep``. Fail over; when every address failed, wait
        until the probe finds one that answers (or the client closes).

        ``generation`` is :attr:`generation` read before the failed attempt started: if a
        re-sync happened since (the probe found namerd while this attempt was still
        failing on a loaded box), the failure is stale; return so the stream retries
        at once instead of declaring namerd gone again."""
        if self._closed:
            return
        if generation is not None and generation != self.generation:
            return
        self.last_error = f"{ep}: {error}"
        idx = self.endpoints.index(ep)
        self._failed.add(idx)
        if idx == self._current and len(self.endpoints) > 1:
            nxt = (idx + 1) % len(self.endpoints)
            for _ in range(len(self.endpoints)):
                if nxt not in self._failed:
                    break
                nxt = (nxt + 1) % len(self.endpoints)
            if nxt != idx and nxt not in self._failed:
                log.warning("namerd %s unreachable (%s); failing over to %s", ep, error, self.endpoints[nxt])
                self._current = nxt
                self._on_event("failover")
                return  # retry at once on the new address
        if idx != self._current and self._current not in self._failed:
            return  # someone already failed over; retry on the current address
        if len(self._failed) < len(self.endpoints):
            return
        if self.reachable:
            self.reachable = False
            self.last_change = time.time()
            log.warning("no namerd address answers (%s); serving last known state", self.last_error)
            self._on_event("unreachable")
        self._ensure_probe()
        await self._event().wait()

    async def wait_backoff(self, delay: float) -> None:
        """Sleep ``delay`` seconds unless a re-sync happens first."""
        if delay <= 0:
            return
        ev = self._event()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the inner await completes, and a closed watch would live on.
            async with asyncio.timeout(delay):
                await ev.wait()
        except TimeoutError:
            pass

    async def on_any(self, fn: Callable[[Endpoint], Awaitable[T]]) -> T:
        """``fn(endpoint)`` on the current address, then on each other one while it
        raises NamerdUnreachable (a one-shot request with fail-over)."""
        errors: list[str] = []
        n = len(self.endpoints)
        for k in range(n):
            ep = self.endpoints[(self._current + k) % n]
            try:
                result = await fn(ep)
            except NamerdUnreachable as e:
                errors.append(str(e))
                continue
            self.report_success(ep)
            return result
        raise NamerdUnreachable("; ".join(errors))

    def backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt, self.base_seconds, self.max_seconds)

    # -- probing -----------------------------------------------------------------------
    def _ensure_probe(self) -> None:
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop())

    async def _probe_loop(self) -> None:
        """While namerd is unreachable: try every address, back off (jittered, up to
        ``probe_seconds``), repeat. One cheap ``GET /api/1/dtabs`` per round."""
        attempt = 0
        while not self._closed and not self.reachable:
            order = [self._current] + [i for i in range(len(self.endpoints)) if i != self._current]
            for idx in order:
                ep = self.endpoints[idx]
                if await self._probe(ep):
                    self._failed.clear()
                    self._current = idx
                    self.reachable = True
                    self.last_change = time.time()
                    log.info("namerd %s answers again; re-syncing every watch", ep)
                    self._on_event("reconnected")
                    self._signal_resync()
                    return
            cap = max(self.probe_seconds, 0.05)
            delay = min(cap, 0.05 * (2 ** min(attempt, 10)))
            attempt += 1
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _probe(self, ep: Endpoint) -> bool:
        """Does ``ep`` answer? (One cheap request of the protocol.)"""
        raise NotImplementedError

    def _tls_failed(self, e: BaseException, ep: Endpoint) -> str:
        """Count a failed handshake with ``ep``; its short reason."""
        if self.tls_failures is not None:
            reason = self.tls_failures.record(e, str(ep))
        else:
            reason = describe(e)
        name = self.tls.server_hostname if self.tls is not None else None
        return f"TLS handshake failed{f' (expected name {name})' if name else ''}: {reason}"

    def describe_failure(self, e: BaseException, ep: Endpoint) -> str:
        """Why a connection to ``ep`` failed, TLS handshakes counted and explained."""
        return self._tls_failed(e, ep) if is_tls_error(e) else _describe(e)

    async def close(self) -> None:
        """Stop probing and close every connection. Bounded: each step waits at most
        ``CLOSE_TIMEOUT_S``; what is still open then is aborted and logged (a close that
        hangs would hang a router reload or a test's teardown with it)."""
        self._closed = True
        if self._resync is not None:
            self._resync.set()  # release waiters so their tasks can finish
        probe, self._probe_task = self._probe_task, None
        if probe is not None and not probe.done():
            probe.cancel()
            # asyncio.wait, not `await probe`: it neither hangs on a task that lost its
            # cancel inside a library call nor swallows a cancel of close() itself.
            await asyncio.wait({probe}, timeout=CLOSE_TIMEOUT_S)
            if not probe.done():
                log.warning("namerd probe task did not stop within %gs; abandoning it", CLOSE_TIMEOUT_S)
        await self._close_transport()

    async def _close_transport(self) -> None:
        """Close the protocol's connections (bounded by ``CLOSE_TIMEOUT_S``)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def admin_state(self) -> dict[str, Any]:
        return {
            "addresses": [str(e) for e in self.endpoints],
            "current": str(self.current),
            "reachable": self.reachable,
            "lastError": self.last_error,
            "resyncs": self.generation,
            "since": self.last_change,
            "tls": None if self.tls is None else {
                "serverName": self.tls.server_hostname,
                **(self.tls_failures.state() if self.tls_failures is not None else {}),
            },
        }


class NamerdClient(NamerdEndpoints):
    """:class:`NamerdEndpoints` over namerd's HTTP controller (aiohttp)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._session: Optional[aiohttp.ClientSession] = None
        self._scheme = "https" if self.tls is not None else "http"

    def _tls_kw(self) -> dict[str, Any]:
        """aiohttp request arguments for TLS: the current context and the server name."""
        if self.tls is None:
            return {}
        kw: dict[str, Any] = {"ssl": self.tls.context}
        if self.tls.server_hostname:
            kw["server_hostname"] = self.tls.server_hostname
        return kw

    def session(self) -> aiohttp.ClientSession:
        if self._closed:
            # Never open a fresh session (and sockets nobody will close) after close().
            raise NamerdUnreachable("the namerd client is closed")
        if self._session is None or self._session.closed:
            # limit=0: every watch holds one HTTP/1.1 connection for its lifetime, so a
            # pool limit would silently block the 101st stream.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, socket_factory=_keepalive_socket)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=None),
                auto_decompress=True,
            )
        return self._session

    async def _probe(self, ep: Endpoint) -> bool:
        if self._closed:
            return False
        try:
            async with self.session().get(
                ep.url(self._scheme) + "/api/1/dtabs",
                timeout=aiohttp.ClientTimeout(total=max(self.probe_seconds, 1.0), sock_connect=CONNECT_TIMEOUT_S),
                **self._tls_kw(),
            ) as resp:
                await resp.read()
                return resp.status < 500
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, NamerdUnreachable) as e:
            if is_tls_error(e):
                self.last_error = f"{ep}: {self._tls_failed(e, ep)}"
            return False

    # -- requests ------------------------------------------------------------------------
    async def open(self, ep: Endpoint, path: str, params: Mapping[str, str]) -> aiohttp.ClientResponse:
        """Start ``GET path?params`` on ``ep``; returns the response once its headers are
        in and the status is 200. Raises NamerdUnreachable or NamerdResponseError."""
        url = ep.url(self._scheme) + path
        if self._closed:
            raise NamerdUnreachable("the namerd client is closed")
        try:
            async with asyncio.timeout(HEADERS_TIMEOUT_S):  # see wait_backoff
                resp = await self.session().get(url, params=dict(params), headers={"Accept": "application/json"},
                                                **self._tls_kw())
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            # refused, reset, timed out, not speaking HTTP, or a failed TLS handshake:
            # try elsewhere / later
            raise NamerdUnreachable(f"cannot reach namerd at {ep}: {self.describe_failure(e, ep)}") from e
        if resp.status != 200:
            try:
                body = (await resp.read()).decode("utf-8", "replace")
            except (aiohttp.ClientError, OSError):
                body = ""
            finally:
                resp.release()
            raise NamerdResponseError(ep, path, resp.status, body)
        return resp

    async def get_json(self, path: str, params: Mapping[str, str]) -> Any:
        """One-shot GET with fail-over: tries every address once, starting with the current."""

        async def attempt(ep: Endpoint) -> bytes:
            resp = await self.open(ep, path, params)
            try:
                async with resp:
                    async with asyncio.timeout(HEADERS_TIMEOUT_S):
                        return await resp.read()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                raise NamerdUnreachable(f"namerd {ep}: {_describe(e)}") from None

        data = await self.on_any(attempt)
        try:
            return json.loads(data)
        except ValueError as e:
            raise NamerdResponseError(self.current, path, 200, f"invalid JSON: {e}") from None

    async def _close_transport(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            connector = session.connector
            closing = asyncio.ensure_future(session.close())
            await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_S)
            if not closing.done():
                closing.cancel()
                n = _abort_connections(connector)
                log.warning("aiohttp did not close the namerd connections within %gs; aborted %d",
                            CLOSE_TIMEOUT_S, n)
            elif not closing.cancelled() and closing.exception() is not None:
                log.debug("closing the namerd session failed: %r", closing.exception())



def _abort_connections(connector: Optional[aiohttp.BaseConnector]) -> int:
    """Abort every socket ``connector`` still holds (pooled or in use); returns how many.
    Used only when aiohttp's own close did not finish in time."""
    if connector is None:
        return 0
    protos: list[Any] = list(getattr(connector, "_acquired", ()))
    for conns in getattr(connector, "_conns", {}).values():
        protos.extend(p for p, _ in conns)
    n = 0
    for proto in protos:
        transport = getattr(proto, "transport", None)
        if transport is not None:
            transport.abort()
            n += 1
    return n


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
