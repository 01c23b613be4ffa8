"""One shared kazoo session per ZooKeeper ensemble, bridged into asyncio.

kazoo is thread-based: its connection thread reports state changes and its callback
thread completes async requests and fires watches. Nothing here ever waits on a kazoo
result from the event loop: every request is issued with kazoo's ``*_async`` API and
completed through ``loop.call_soon_threadsafe``, and every watch callback is re-posted
onto the loop the same way. Code on the loop therefore only ever sees plain awaitables
and loop-thread callbacks.

Why a shared session: the serversets namer, the announcers and namerd's ZooKeeper
storage may all talk to the same ensemble in one process; one session per ensemble keeps
the server-side cost (and the number of things that can expire) at one.

Connection states (``ZkSession.state``, a :class:`Var`):

``connecting``  never connected yet (or reconnecting after :meth:`start`)
``connected``   the session is live
``suspended``   the TCP connection dropped; the session may still be alive on the server
``expired``     the server expired the session; kazoo is opening a new one
``closed``      released by every user

kazoo forgets every client-side watch whenever the connection drops (even when the
session survives), so users must re-read and re-watch on every transition into
``connected``; :attr:`ZkSession.connects` counts those transitions.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.protocol.states import EventType, KeeperState, WatchedEvent
from kazoo.retry import KazooRetry

from ..naming.var import Var

log = logging.getLogger("namerouter.zk")
# kazoo logs every (re)connection attempt at INFO; our own logger reports the state
# changes that matter, so keep kazoo's chatter to warnings unless someone asks for it.
_kazoo_log = logging.getLogger("namerouter.zk.kazoo")
if _kazoo_log.level == logging.NOTSET:
    _kazoo_log.setLevel(logging.WARNING)

#: Errors that mean "the connection is not usable right now": retry after reconnecting.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionLoss,
    SessionExpiredError,
    ConnectionClosedError,
    OperationTimeoutError,
)

CONNECTING = "connecting"
CONNECTED = "connected"
SUSPENDED = "suspended"
EXPIRED = "expired"
CLOSED = "closed"

DEFAULT_SESSION_TIMEOUT_MS = 10_000

#: a watch callback as kazoo calls it (from its thread: see ``ZkSession.watcher``)
KazooWatcher = Callable[[WatchedEvent], None]


def normalize_hosts(hosts: str | list[tuple[str, int]] | list[dict[str, Any]]) -> str:
    """``"h1:2181,h2:2181"`` from a connect string, ``[(h, p)]`` or Linkerd's
    ``[{host, port}]``. Order is kept (kazoo shuffles it itself)."""
    if isinstance(hosts, str):
        parts = [h.strip() for h in hosts.split(",") if h.strip()]
    else:
        parts = []
        for h in hosts:
            if isinstance(h, dict):
                parts.append(f"{h['host']}:{int(h.get('port', 2181))}")
            elif isinstance(h, (tuple, list)):
                parts.append(f"{h[0]}:{int(h[1])}")
            else:  # a config dataclass with .host/.port
                parts.append(f"{h.host}:{int(h.port)}")
    if not parts:
        raise ValueError("no ZooKeeper address given")
    out = []
    for p in parts:
        host, sep, port = p.rpartition(":")
        if not sep:
            host, port = p, "2181"
        if not host:
            raise ValueError(f"bad ZooKeeper address {p!r}: expected HOST:PORT")
        try:
            n = int(port)
        except ValueError:
            raise ValueError(f"bad ZooKeeper address {p!r}: port {port!r} is not a number") from None
        if not 0 < n < 65536:
            raise ValueError(f"bad ZooKeeper address {p!r}: port must be 1-65535")
        out.append(f"{host}:{n}")
    return ",".join(out)


class ZkSession:
    """A refcounted kazoo client for one ensemble, usable from one asyncio loop.

    Get one with :meth:`acquire` (shared per (loop, hosts)) and give it back with
    :meth:`release`. Connecting never blocks and never gives up: while ZooKeeper is down
    requests fail fast with a connection error and the state Var says why.
    """

    _shared: dict[tuple[int, str], "ZkSession"] = {}

    def __init__(
        self,
        hosts: str,
        loop: asyncio.AbstractEventLoop,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    ) -> None:
        self.hosts = hosts
        self.loop = loop
        self.session_timeout_ms = session_timeout_ms
        self.state: Var[str] = Var(CONNECTING)
        #: Transitions into ``connected`` (1 after the first connect).
        self.connects = 0
        #: Session expirations seen (each one means ephemeral nodes were lost).
        self.expirations = 0
        self.last_change = time.time()
        #: The id of the current (or, while disconnected, the last) session.
        self.last_session_id: Optional[int] = None
        self._refs = 0
        self._closed = False
        # Reconnect forever with jittered backoff capped at 2 s: kazoo's default cap is
        # an hour, which would leave a router blind long after ZooKeeper came back.
        retry = KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_jitter=0.5, max_delay=2.0)
        self.kazoo = KazooClient(
            hosts=hosts,
            timeout=session_timeout_ms / 1000.0,
            connection_retry=retry,
            command_retry=KazooRetry(max_tries=3, delay=0.05, max_delay=1.0),
            logger=logging.getLogger("namerouter.zk.kazoo"),
        )
        self.kazoo.add_listener(self._kazoo_listener)

    # Sharing -------------------------------------------------------------------
    @classmethod
    def acquire(
        cls,
        hosts: Any,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> "ZkSession":
        """The session for ``hosts`` on the running loop, started if new.

        Must be called on the loop thread. Never blocks: the connection is made in
        kazoo's thread; await :meth:`wait_connected` if you need it live.
        """
        loop = loop or asyncio.get_running_loop()
        key = (id(loop), normalize_hosts(hosts))
        session = cls._shared.get(key)
        if session is None or session._closed:
            session = cls(key[1], loop, session_timeout_ms)
            cls._shared[key] = session
            session._start()
        session._refs += 1
        return session

    async def release(self) -> None:
        """Drop one reference; the last one closes the session (its ephemerals vanish)."""
        self._refs -= 1
        if self._refs > 0 or self._closed:
            return
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        key = (id(self.loop), self.hosts)
        if self._shared.get(key) is self:
            del self._shared[key]
        self.kazoo.remove_listener(self._kazoo_listener)
        # stop() joins kazoo's threads and sends closeSession: do it off the loop.
        await self.loop.run_in_executor(None, self._stop_blocking)
        self.state.update(CLOSED)

    def _stop_blocking(self) -> None:
        try:
            self.kazoo.stop()
            self.kazoo.close()
        except Exception:  # pragma: no cover - best effort on shutdown
            log.exception("closing ZooKeeper client for %s", self.hosts)

    def _start(self) -> None:
        # start_async returns at once; kazoo's connection thread does the work.
        self.kazoo.start_async()
        log.info("connecting to ZooKeeper %s", self.hosts)

    # State bridging -----------------------------------------------------------------
    def _kazoo_listener(self, state: str) -> None:
        """Runs on kazoo's connection thread: never block here, only post to the loop."""
        # The simplified KazooState does not tell "session expired" from "closed";
        # the raw keeper state does.
        raw = self.kazoo.client_state
        if state == KazooState.CONNECTED:
            new = CONNECTED
        elif state == KazooState.SUSPENDED:
            new = SUSPENDED
        elif raw == KeeperState.EXPIRED_SESSION:
            new = EXPIRED
        else:
            new = CLOSED if self._closed else EXPIRED
        try:
            self.loop.call_soon_threadsafe(self._set_state, new)
        except RuntimeError:  # loop already closed: nobody is listening any more
            pass

    def _set_state(self, new: str) -> None:
        if self._closed and new != CLOSED:
            return
        old = self.state.sample()
        if new == old:
            return
        if new == CONNECTED:
            self.connects += 1
            self.last_session_id = self.session_id or self.last_session_id
            log.info("ZooKeeper %s: connected (session 0x%x)", self.hosts, self.session_id or 0)
        elif new == EXPIRED:
            self.expirations += 1
            log.warning("ZooKeeper %s: session expired, opening a new one", self.hosts)
        else:
            log.warning("ZooKeeper %s: %s", self.hosts, new)
        self.last_change = time.time()
        self.state.update(new)

    @property
    def connected(self) -> bool:
        return self.state.sample() == CONNECTED

    @property
    def session_id(self) -> Optional[int]:
        cid: Optional[tuple[int, bytes]] = self.kazoo.client_id
        return cid[0] if cid else None

    @property
    def client_id(self) -> Optional[tuple[int, bytes]]:
        """(session id, password) while connected — what a second client needs to
        take the session over (the standard way to force an expiry in tests)."""
        cid: Optional[tuple[int, bytes]] = self.kazoo.client_id
        return cid

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        await self.state.wait_for(lambda s: s == CONNECTED, timeout)

    def on_connected(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` on the loop at every transition into ``connected`` (and now, if
        connected). Returns a function that stops it."""
        last: list[Optional[str]] = [None]  # so the initial call fires when connected

        def observe(s: str) -> None:
            prev, last[0] = last[0], s
            if s == CONNECTED and prev != CONNECTED:
                fn()

        closable = self.state.observe(observe)
        return closable.close

    # Requests ----------------------------------------------------------------------
    def _bridge(self, async_result: Any) -> "asyncio.Future[Any]":
        """Turn a kazoo IAsyncResult into an asyncio future completed on the loop."""
        fut: asyncio.Future[Any] = self.loop.create_future()

        def settle(res: Any) -> None:  # on the loop
            if fut.done():
                return
            try:
                fut.set_result(res.get(block=False))
            except BaseException as e:  # kazoo stores the exception on the result
                fut.set_exception(e)

        def done(res: Any) -> None:  # on kazoo's callback thread
            try:
                self.loop.call_soon_threadsafe(settle, res)
            except RuntimeError:
                pass

        async_result.rawlink(done)
        return fut

    def watcher(self, fn: Callable[[WatchedEvent], None]) -> Callable[[WatchedEvent], None]:
        """Wrap a loop-side watch callback so kazoo can call it from its thread.

        kazoo keeps watchers in per-path sets, so registering the *same* wrapper again
        for a path is free: create the wrapper once and reuse it. Events of type NONE
        (kazoo dropping its watch tables on a disconnect) are not forwarded: the
        ``connected`` transition that follows triggers a full re-sync instead.
        """

        def on_kazoo_thread(event: WatchedEvent) -> None:
            if event.type == EventType.NONE:
                return
            try:
                self.loop.call_soon_threadsafe(fn, event)
            except RuntimeError:
                pass

        return on_kazoo_thread

    def _check(self) -> None:
        if self._closed:
            raise ConnectionClosedError(f"ZooKeeper session for {self.hosts} is closed")

    async def exists(self, path: str, watch: Optional[KazooWatcher] = None) -> Any:
        """kazoo's ZnodeStat, or None."""
        self._check()
        return await self._bridge(self.kazoo.exists_async(path, watch=watch))

    async def get(self, path: str, watch: Optional[KazooWatcher] = None) -> tuple[bytes, Any]:
        self._check()
        data: tuple[bytes, Any] = await self._bridge(self.kazoo.get_async(path, watch=watch))
        return data

    async def get_children(self, path: str, watch: Optional[KazooWatcher] = None) -> list[str]:
        self._check()
        children: list[str] = await self._bridge(self.kazoo.get_children_async(path, watch=watch))
        return children

    async def create(
        self,
        path: str,
        value: bytes = b"",
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        self._check()
        created: str = await self._bridge(
            self.kazoo.create_async(path, value, ephemeral=ephemeral, sequence=sequence, makepath=makepath)
        )
        return created

    async def set(self, path: str, value: bytes, version: int = -1) -> Any:
        """kazoo's ZnodeStat of the new version."""
        self._check()
        return await self._bridge(self.kazoo.set_async(path, value, version=version))

    async def delete(self, path: str, version: int = -1) -> None:
        self._check()
        await self._bridge(self.kazoo.delete_async(path, version=version))

    async def ensure_path(self, path: str) -> None:
        self._check()
        await self._bridge(self.kazoo.ensure_path_async(path))

    def admin_state(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "state": self.state.sample(),
            "sessionId": f"0x{self.last_session_id:x}" if self.last_session_id else None,
            "connects": self.connects,
            "expirations": self.expirations,
            "lastChange": iso_time(self.last_change),
        }


def iso_time(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
