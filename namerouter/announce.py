"""Register a service instance in a ZooKeeper serverset (Python API).

    async with announce("127.0.0.1:2181", "/discovery/pong", "127.0.0.1", 8002):
        await serve_forever()

    with announce("127.0.0.1:2181", "/discovery/pong", "127.0.0.1", 8002):   # plain threads
        httpd.serve_forever()

The instance becomes an ephemeral sequential ``member_`` znode under the serverset path
holding the serverset JSON (``serviceEndpoint``, ``additionalEndpoints``, ``status``
``ALIVE`` and, if given, ``shard``), so it disappears with our session if the process
dies. The :class:`Announcer` keeps it registered: after every reconnect it checks that
its node still exists and belongs to the current session, and re-creates it after a
session expiry. Leaving the context (or :meth:`Announcer.close`) deletes it at once.
ZooKeeper being down never blocks or fails the service: registration happens when
ZooKeeper answers.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Mapping, Optional

from kazoo.exceptions import NoNodeError

from .naming.var import Var
from .backoff import JitteredBackoff
from .zk.serverset_format import MEMBER_PREFIX, HostPort, member_json
from .zk.session import CONNECTION_ERRORS, DEFAULT_SESSION_TIMEOUT_MS, ZkSession

log = logging.getLogger("namerouter.announce")

__all__ = ["Announcer", "announce", "member_json"]


def _check_path(path: str) -> str:
    if not path.startswith("/") or path == "/" or path.endswith("/") or "//" in path:
        raise ValueError(f"serverset path must look like /discovery/name, got {path!r}")
    for part in path.split("/")[1:]:
        if part in (".", ".."):
            raise ValueError(f"serverset path {path!r}: {part!r} is not a valid znode name")
    return path


class Announcer:
    """Keeps one instance registered in one serverset for as long as it is open."""

    def __init__(
        self,
        zk_hosts: Any,
        path: str,
        host: str,
        port: int,
        endpoints: Optional[Mapping[str, HostPort]] = None,
        shard: Optional[int] = None,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    ) -> None:
        self.zk_hosts = zk_hosts
        self.path = _check_path(path)
        self.data = member_json(host, port, endpoints, shard)
        self.endpoint = f"{host}:{port}"
        self.session_timeout_ms = session_timeout_ms
        self.session: Optional[ZkSession] = None
        #: Full znode path of our member while registered, else None.
        self.node: Var[Optional[str]] = Var(None)
        #: How many times the member was (re-)created.
        self.registrations = 0
        self._owner: Optional[int] = None  # session id that owns self._current
        self._current: Optional[str] = None  # our member znode, as soon as it is created
        self._uncertain = False  # a create may have succeeded although we saw an error
        self._task: Optional[asyncio.Task[None]] = None
        self._again = False
        self._retry: Optional[asyncio.TimerHandle] = None
        self._backoff = JitteredBackoff(0.05, 2.0)
        self._stop_connected: Any = None
        self._node_cb: Any = None
        self._closed = False

    async def start(self) -> "Announcer":
        """Connect and register in the background; returns at once."""
        if self.session is None:
            self.session = ZkSession.acquire(self.zk_hosts, self.session_timeout_ms)
            if not self.session.connected:
                log.info("announce %s at %s: waiting for ZooKeeper %s", self.endpoint, self.path, self.session.hosts)
            # An exists watch on our own member: if someone deletes it, register again.
            self._node_cb = self.session.watcher(lambda event: self._ensure())
            self._stop_connected = self.session.on_connected(self._ensure)
        return self

    async def wait_registered(self, timeout: Optional[float] = None) -> str:
        node = await self.node.wait_for(lambda n: n is not None, timeout)
        assert node is not None
        return node

    # Keeping the member ---------------------------------------------------------
    def _ensure(self) -> None:
        if self._closed:
            return
        if self._task is not None and not self._task.done():
            self._again = True  # re-check once the running pass ends
            return
        self._task = asyncio.get_running_loop().create_task(self._ensure_loop())

    async def _ensure_loop(self) -> None:
        self._again = True
        while self._again and not self._closed:
            self._again = False
            try:
                await self._ensure_once()
                self._backoff.reset()
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS:
                # The next "connected" transition calls _ensure again.
                if self.session is not None and self.session.connected:
                    self._schedule_retry()
                return
            except Exception as e:  # noqa: BLE001 - e.g. NoAuth on the parent: report, retry
                log.warning("announce %s at %s failed: %s: %s", self.endpoint, self.path, type(e).__name__, e)
                self._schedule_retry()
                return

    def _schedule_retry(self) -> None:
        if self._retry is not None or self._closed:
            return

        def fire() -> None:
            self._retry = None
            self._ensure()

        self._retry = asyncio.get_running_loop().call_later(self._backoff.next(), fire)

    async def _ensure_once(self) -> None:
        session = self.session
        assert session is not None
        sid = session.session_id
        node = self._current
        if node is not None and self._owner == sid:
            stat = await session.exists(node, watch=self._node_cb)
            if stat is not None and stat.ephemeralOwner == sid:
                self.node.update(node)
                return  # still ours (and watched again)
        if node is not None:
            why = "deleted" if self._owner == sid else "session expired"
            log.warning("announce %s: member %s is gone (%s); registering again", self.endpoint, node, why)
            self._current = None
            self.node.update(None)
        if self._uncertain and await self._adopt(sid):
            self._again = True  # verify and watch it on the next pass
            return
        await session.ensure_path(self.path)
        self._uncertain = True
        try:
            created = await session.create(f"{self.path}/{MEMBER_PREFIX}", self.data, ephemeral=True, sequence=True)
        except NoNodeError:
            # The serverset was deleted between ensure_path and create: try again.
            self._again = True
            self._uncertain = False
            return
        # Remembered at once so that close() deletes it even if we are cancelled now.
        self._current, self._owner, self._uncertain = created, sid, False
        self.registrations += 1
        log.info("announced %s as %s on ZooKeeper %s", self.endpoint, created, session.hosts)
        # Watch it before publishing it in ``node``: a deletion right after registration
        # must not go unnoticed by whoever waits on ``node``.
        if await session.exists(created, watch=self._node_cb) is None:
            self._again = True
            return
        self.node.update(created)

    async def _adopt(self, sid: Optional[int]) -> bool:
        """After a create whose answer was lost: reuse the member it may have made."""
        session = self.session
        assert session is not None
        try:
            children = await session.get_children(self.path)
        except NoNodeError:
            self._uncertain = False
            return False
        for child in sorted(children):
            if not child.startswith(MEMBER_PREFIX):
                continue
            full = f"{self.path}/{child}"
            try:
                data, stat = await session.get(full)
            except NoNodeError:
                continue
            if stat.ephemeralOwner == sid and data == self.data:
                self._uncertain = False
                self._owner = sid
                self._current = full
                return True
        self._uncertain = False
        return False

    # Leaving ------------------------------------------------------------------------
    async def close(self) -> None:
        """Delete the member now (if reachable) and release the session."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._stop_connected is not None:
            self._stop_connected()
        task = self._task
        if task is not None and not task.done():
            # Let a pass that is creating the member finish (requests fail fast while
            # ZooKeeper is unreachable), so a member created just now is deleted below
            # rather than left behind in a session someone else may keep open.
            done, _ = await asyncio.wait({task}, timeout=2.0)
            if not done:
                task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - cancelled or failed: we are leaving
                pass
        node, session = self._current, self.session
        if node is not None and session is not None and session.connected and self._owner == session.session_id:
            try:
                await asyncio.wait_for(session.delete(node), 5.0)
                log.info("deregistered %s (%s)", node, self.endpoint)
            except NoNodeError:
                pass
            except (asyncio.TimeoutError,) + CONNECTION_ERRORS as e:
                # Ephemeral: it goes away with the session we are about to close.
                log.warning("could not delete %s (%s); it expires with the session", node, type(e).__name__)
        self._current = None
        self.node.update(None)
        if session is not None:
            self.session = None
            await session.release()

    async def __aenter__(self) -> "Announcer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class announce:  # noqa: N801 - used like a function: ``with announce(...):``
    """Context manager registering an instance for the duration of a block.

    ``async with`` runs on the current loop; plain ``with`` runs the announcer on a
    private loop in a daemon thread (for threaded servers such as ``http.server``).
    On entry it waits up to ``register_timeout`` seconds for the registration; if
    ZooKeeper is not reachable by then it logs a warning and keeps trying in the
    background rather than failing the service.
    """

    def __init__(
        self,
        zk_hosts: Any,
        path: str,
        host: str,
        port: int,
        endpoints: Optional[Mapping[str, HostPort]] = None,
        shard: Optional[int] = None,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        register_timeout: float = 10.0,
    ) -> None:
        self._args = (zk_hosts, path, host, port, endpoints, shard, session_timeout_ms)
        member_json(host, port, endpoints, shard)  # validate now, in the caller's frame
        _check_path(path)
        self.register_timeout = register_timeout
        self.announcer: Optional[Announcer] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    async def _open(self) -> Announcer:
        ann = Announcer(*self._args)
        await ann.start()
        try:
            await ann.wait_registered(self.register_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "not registered in %s after %.1fs (ZooKeeper unreachable?); still trying",
                ann.path, self.register_timeout,
            )
        return ann

    @property
    def node(self) -> Optional[str]:
        return self.announcer.node.sample() if self.announcer else None

    async def __aenter__(self) -> Announcer:
        self.announcer = await self._open()
        return self.announcer

    async def __aexit__(self, *exc: Any) -> None:
        if self.announcer is not None:
            await self.announcer.close()

    def __enter__(self) -> "announce":
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="namerouter-announce", daemon=True)
        self._thread.start()
        self.announcer = asyncio.run_coroutine_threadsafe(self._open(), loop).result()
        return self

    def __exit__(self, *exc: Any) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self.announcer is not None:
                asyncio.run_coroutine_threadsafe(self.announcer.close(), loop).result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._loop = self._thread = None
