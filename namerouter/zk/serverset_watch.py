"""Watching one ZooKeeper serverset: existence, ``member_*`` children, member data.

The same watch serves every "a znode whose children are instances" layout: the
serversets namer (``member_*`` children, serverset JSON), the ``io.l5d.zkLeader`` namer
(``member_*`` candidates of a Twitter-commons leader group) and the ``io.l5d.curator``
namer (every child, Curator ServiceInstance JSON) pass their own ``child_prefix`` and
``parse``.

Driven only by ZooKeeper watches (exists + children on the serverset znode, data on each
member), never by polling. kazoo forgets every watch when its connection drops, so on
each transition into ``connected`` the whole serverset is re-read and re-watched; in
between the last good state is kept. Why not kazoo's ChildrenWatch/DataWatch recipes:
ChildrenWatch stops for good when the znode does not exist (a serverset created later
would never be seen) and both retry synchronously on kazoo's callback thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent

from ..naming.var import Var
from ..backoff import JitteredBackoff
from .serverset_format import MEMBER_PREFIX, MalformedMember, parse_member
from .session import CONNECTION_ERRORS, ZkSession, iso_time

log = logging.getLogger("namerouter.zk.serverset")


@dataclass(frozen=True)
class Snapshot:
    """What ZooKeeper last told us about a serverset (valid members only)."""

    exists: bool
    members: tuple[tuple[str, Any], ...] = ()
    #: children whose data did not parse (name, reason): still candidates for a leader
    malformed: tuple[tuple[str, str], ...] = ()


class ServersetWatch:
    """Watches one serverset znode and its members (shared by every reader of it).

    ``snapshot`` is None until the first successful read, then the last good Snapshot —
    kept as is while ZooKeeper is unreachable. Reference-counted: :meth:`acquire` starts
    watching, and ``linger_s`` after the last :meth:`release` it stops and calls
    ``on_idle`` (the owner forgets it).
    """

    def __init__(
        self,
        session: ZkSession,
        path: str,
        linger_s: float = 2.0,
        on_idle: Optional[Callable[["ServersetWatch"], None]] = None,
        child_prefix: str = MEMBER_PREFIX,
        parse: Callable[[bytes], Any] = parse_member,
    ) -> None:
        self.session = session
        self.path = path
        self.child_prefix = child_prefix
        #: data → member; raises MalformedMember (a ValueError) for unusable data
        self.parse = parse
        self.linger_s = linger_s
        self._on_idle = on_idle
        self.snapshot: Var[Optional[Snapshot]] = Var(None)
        self.members: dict[str, Any] = {}
        self.malformed: dict[str, str] = {}
        self.exists: Optional[bool] = None
        self.last_update: Optional[float] = None
        self.last_sync: Optional[float] = None
        self.last_error: Optional[str] = None
        self.syncs = 0
        self.refs = 0
        self.running = False
        self._dirty_children = False
        self._dirty_members: set[str] = set()
        self._task: Optional[asyncio.Task[None]] = None
        self._retry: Optional[asyncio.TimerHandle] = None
        self._linger: Optional[asyncio.TimerHandle] = None
        self._stop_connected: Optional[Callable[[], None]] = None
        self._backoff = JitteredBackoff(0.05, 5.0)
        # Created once: kazoo keeps watchers in per-path sets, so re-registering the same
        # wrapper on every re-read never piles up duplicate callbacks.
        self._exists_cb = session.watcher(self._on_node_event)
        self._child_cb = session.watcher(self._on_node_event)
        self._data_cb = session.watcher(self._on_member_event)

    # Lifetime ------------------------------------------------------------------
    def acquire(self) -> None:
        self.refs += 1
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.running:
            self._start()

    def release(self) -> None:
        self.refs -= 1
        if self.refs <= 0 and self.running and self._linger is None:
            self._linger = self.session.loop.call_later(self.linger_s, self._idle)

    def _idle(self) -> None:
        self._linger = None
        if self.refs <= 0:
            self.stop()
            if self._on_idle is not None:
                self._on_idle(self)

    def _start(self) -> None:
        self.running = True
        session = self.session
        # Fires now if connected, and after every reconnect: kazoo dropped our watches.
        self._stop_connected = session.on_connected(self.resync)

    def stop(self) -> None:
        self.running = False
        for h in (self._retry, self._linger):
            if h is not None:
                h.cancel()
        self._retry = self._linger = None
        if self._stop_connected is not None:
            self._stop_connected()
            self._stop_connected = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    # Events (all on the loop) ----------------------------------------------------------
    def resync(self) -> None:
        """Re-read the serverset and every member, re-registering all watches."""
        self._dirty_children = True
        self._dirty_members |= set(self.members) | set(self.malformed)
        self._kick()

    def _on_node_event(self, event: WatchedEvent) -> None:
        self._dirty_children = True
        self._kick()

    def _on_member_event(self, event: WatchedEvent) -> None:
        name = event.path.rsplit("/", 1)[-1]
        if event.type == EventType.DELETED:
            # Publish the removal at once; the children watch fires too and re-syncs.
            self.members.pop(name, None)
            self.malformed.pop(name, None)
            self._publish()
            return
        self._dirty_members.add(name)
        self._kick()

    def _kick(self) -> None:
        if not self.running:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _schedule_retry(self) -> None:
        if self._retry is not None or not self.running:
            return
        delay = self._backoff.next()

        def fire() -> None:
            self._retry = None
            self.resync()

        self._retry = asyncio.get_running_loop().call_later(delay, fire)

    # Syncing ------------------------------------------------------------------------------
    async def _run(self) -> None:
        session = self.session
        while self.running and (self._dirty_children or self._dirty_members):
            try:
                if self._dirty_children:
                    self._dirty_children = False
                    await self._sync_children()
                if self._dirty_members:
                    names, self._dirty_members = self._dirty_members, set()
                    await self._sync_members(names)
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS as e:
                # Keep the last known members. The next "connected" transition re-syncs;
                # if we are (again) connected already, retry after a backoff.
                self.last_error = f"{type(e).__name__}: ZooKeeper unavailable, serving last known members"
                if session.connected:
                    self._schedule_retry()
                return
            except Exception as e:  # noqa: BLE001 - e.g. NoAuth: keep state, report, retry
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("serverset %s: sync failed: %s", self.path, self.last_error)
                self._schedule_retry()
                return
            self.last_sync = time.time()
            self.syncs += 1
            self.last_error = None
            self._backoff.reset()
            self._publish()

    async def _sync_children(self) -> None:
        session = self.session
        stat = await session.exists(self.path, watch=self._exists_cb)
        if stat is None:
            self._gone()
            return
        try:
            children = await session.get_children(self.path, watch=self._child_cb)
        except NoNodeError:
            self._gone()  # deleted in between; the exists watch is armed
            return
        self.exists = True
        names = {c for c in children if c.startswith(self.child_prefix)}
        for gone in (set(self.members) | set(self.malformed)) - names:
            self.members.pop(gone, None)
            self.malformed.pop(gone, None)
        self._dirty_members |= names - set(self.members) - set(self.malformed)

    def _gone(self) -> None:
        self.exists = False
        self.members.clear()
        self.malformed.clear()
        self._dirty_members.clear()

    async def _sync_members(self, names: set[str]) -> None:
        session = self.session
        ordered = sorted(names)
        results = await asyncio.gather(
            *(session.get(f"{self.path}/{n}", watch=self._data_cb) for n in ordered),
            return_exceptions=True,
        )
        failure: Optional[BaseException] = None
        for name, res in zip(ordered, results):
            if isinstance(res, NoNodeError):
                self.members.pop(name, None)
                self.malformed.pop(name, None)
            elif isinstance(res, BaseException):
                self._dirty_members.add(name)  # read it again on the next pass
                failure = failure or res
            else:
                self._set_member(name, res[0])
        if failure is not None:
            raise failure

    def _set_member(self, name: str, data: bytes) -> None:
        try:
            member = self.parse(data)
        except MalformedMember as e:
            self.members.pop(name, None)
            if self.malformed.get(name) != str(e):
                log.warning("serverset %s: skipping malformed member %s: %s", self.path, name, e)
            self.malformed[name] = str(e)
            return
        self.malformed.pop(name, None)
        self.members[name] = member

    def _publish(self) -> None:
        snap = Snapshot(bool(self.exists), tuple(sorted(self.members.items())),
                        tuple(sorted(self.malformed.items())))
        if snap != self.snapshot.sample():
            self.last_update = time.time()
            self.snapshot.update(snap)

    def admin_state(self) -> dict[str, Any]:
        session = self.session
        alive = sum(1 for m in self.members.values() if getattr(m, "status", "ALIVE") == "ALIVE")
        if self.snapshot.sample() is None:
            state = "pending"
        elif session is not None and not session.connected:
            state = "stale"
        else:
            state = "synced"
        return {
            "znode": self.path,
            "state": state,
            "exists": self.exists,
            "members": len(self.members),
            "alive": alive,
            "lastUpdate": iso_time(self.last_update),
            "lastSync": iso_time(self.last_sync),
            "session": session.state.sample() if session else None,
            "observers": self.refs,
            "errors": (
                [{"member": n, "error": e} for n, e in sorted(self.malformed.items())]
                + ([{"error": self.last_error}] if self.last_error else [])
            ),
        }
