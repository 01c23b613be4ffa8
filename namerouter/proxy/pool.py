"""Per-endpoint connection pools (Finagle's per-host pool), protocol-neutral.

An :class:`Endpoint` is one backend address of a client: its load-balancer state
(``Node``), its idle connections (LIFO, so a warm connection is reused), its open
connection count and ``hostConnectionPool`` limits. Connections come from the client's
:class:`~.transport.Connector` (which picks the codec); the pool only needs them to
have ``closed``, ``reused``, ``got_bytes``, ``idle_since``, ``born`` (when connected:
``clientSession.lifeTimeMs``), ``lc``, ``close()``.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from ..naming.addr import Address
from .balancers import Node
from .errors import Overloaded
from .policy.config import HostConnectionPoolConfig
from .transport import PLAIN, Connector, UpstreamKey

if TYPE_CHECKING:  # pragma: no cover
    from .routing import ClientStage

_monotonic = time.monotonic

#: Idle connections kept per endpoint; more are closed on release.
MAX_IDLE = 256


class PoolSettings:
    """A client's ``hostConnectionPool`` (Finagle's per-host pool), read once per client.

    ``maxSize``: at most this many open connections per endpoint; further requests wait
    for one to be released (at most ``maxWaiters`` of them; beyond that 503).
    ``idleTimeMs``: pooled connections idle that long are closed, keeping ``minSize``.
    """

    __slots__ = ("min_size", "max_size", "idle_time_s", "max_waiters", "life_s", "sweep_s")

    def __init__(self, block: Optional[HostConnectionPoolConfig] = None) -> None:
        b = block if block is not None else HostConnectionPoolConfig()
        self.min_size = b.minSize
        self.max_size: Optional[int] = b.maxSize or None
        self.idle_time_s: Optional[float] = b.idleTimeMs / 1000.0 if b.idleTimeMs else None
        self.max_waiters: Optional[int] = b.maxWaiters
        #: set by the client stage: clientSession.lifeTimeMs, and how often its idle
        #: connections are swept (None: never)
        self.life_s: Optional[float] = None
        self.sweep_s: Optional[float] = None


#: No limits (the default, as in Linkerd).
UNBOUNDED = PoolSettings()


class PoolExhausted(Overloaded):
    """``hostConnectionPool.maxWaiters`` requests are already waiting for a connection (503)."""


class Endpoint(Node):
    """One backend address of a client: LB state, idle pool, connection count."""

    __slots__ = ("address", "host", "port", "key", "stage", "connector", "idle", "open_conns", "retired",
                 "label", "accrual", "pool", "connecting", "waiters", "forbidden")

    def __init__(self, address: Address, stage: "ClientStage", pool: PoolSettings = UNBOUNDED,
                 connector: Connector = PLAIN) -> None:
        super().__init__(address.weight)
        self.address = address
        self.host = address.host
        self.port = address.port
        self.connector = connector
        #: the pool holds connections of this key only
        self.key: UpstreamKey = connector.key(address.host, address.port)
        self.stage = stage
        self.idle: list[Any] = []
        self.open_conns = 0
        self.retired = False
        self.label = f"{self.host}:{self.port}"
        #: failure accrual state (policy/failure_accrual.py), set by the ClientStage
        self.accrual: Any = None
        self.pool = pool
        self.connecting = 0
        #: requests waiting for a connection when the pool is at maxSize (FIFO)
        self.waiters: Optional[deque[asyncio.Future[Any]]] = None
        #: what this address is, once a connection showed it is protected (protected.py)
        self.forbidden: Optional[str] = None

    def get_idle(self) -> Any:
        idle = self.idle
        while idle:
            c = idle.pop()
            if not c.closed:
                c.reused = True
                return c
        return None

    async def connect(self) -> Any:
        """A new connection — or, when the pool is at ``maxSize``, the next released one."""
        pool = self.pool
        if pool.max_size is not None and self.open_conns + self.connecting >= pool.max_size:
            if self.waiters is None:
                self.waiters = deque()
            if pool.max_waiters is not None and len(self.waiters) >= pool.max_waiters:
                raise PoolExhausted(
                    f"{self.label}: all {pool.max_size} connections busy and {len(self.waiters)} "
                    "requests already waiting (hostConnectionPool maxSize/maxWaiters)")
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                conn = await fut
            except asyncio.CancelledError:
                # Cancelled after a connection was handed over: give it back, not leak it.
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self.release(fut.result())
                elif fut.done() and not fut.cancelled():
                    self._wake_for_slot()  # pass the free slot on
                raise
            if conn is not None:
                return conn
            # else: a connection closed, its slot is ours
        self.connecting += 1
        try:
            return await self.connector.connect(self)
        finally:
            self.connecting -= 1
            if self.waiters:
                self._wake_for_slot()

    def _wake_for_slot(self) -> None:
        """A slot may have freed up (a connection closed, a connect failed)."""
        pool = self.pool
        ws = self.waiters
        while ws and (pool.max_size is None or self.open_conns + self.connecting < pool.max_size):
            w = ws.popleft()
            if not w.done():
                w.set_result(None)
                return

    def conn_opened(self) -> None:
        self.open_conns += 1
        self.stage.connects.value += 1

    def conn_lost(self) -> None:
        self.open_conns -= 1
        if self.waiters:
            self._wake_for_slot()

    def release(self, conn: Any) -> None:
        """Back to the idle pool after a complete keep-alive exchange (or straight to a
        request waiting for a connection)."""
        conn.lc = None
        if conn.closed:
            return
        if self.retired:
            conn.close()
            return
        conn.got_bytes = False
        ws = self.waiters
        while ws:
            w = ws.popleft()
            if not w.done():
                conn.reused = True
                w.set_result(conn)
                return
        pool = self.pool
        now = _monotonic()
        life = pool.life_s
        if life is not None and now - conn.born >= life:  # clientSession.lifeTimeMs
            self.stage.sessions.expired_life.value += 1
            conn.close()
            return
        if len(self.idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)
        if pool.sweep_s is not None:
            self.stage.schedule_idle_sweep()

    def close_idle(self, now: float) -> int:
        """``hostConnectionPool.idleTimeMs``: close pooled connections idle for longer,
        keeping ``minSize`` open; ``clientSession``: close those idle for its
        ``idleTimeMs`` or older than its ``lifeTimeMs`` (whatever ``minSize`` says)."""
        t = self.pool.idle_time_s
        sessions = self.stage.sessions
        s_idle, s_life = sessions.idle_s, sessions.life_s
        if (t is None and s_idle is None and s_life is None) or not self.idle:
            return 0
        closed = 0
        keep: list[Any] = []
        # oldest first (the list is LIFO: index 0 is the longest idle)
        for c in self.idle:
            if c.closed:
                continue
            idle = now - c.idle_since
            if s_idle is not None and idle >= s_idle:
                sessions.expired_idle.value += 1
            elif s_life is not None and now - c.born >= s_life:
                sessions.expired_life.value += 1
            elif not (t is not None and idle > t and self.open_conns - closed > self.pool.min_size):
                keep.append(c)
                continue
            c.close()
            closed += 1
        self.idle = keep
        return closed

    def retire(self) -> None:
        """Address removed by the namer: close idle connections; busy ones close on release."""
        self.retired = True
        if self.accrual is not None:
            self.accrual.retire()
        idle, self.idle = self.idle, []
        for c in idle:
            c.close()
        ws, self.waiters = self.waiters, None
        for w in ws or ():
            if not w.done():
                w.set_result(None)  # they connect on their own (and close on release)

    def __repr__(self) -> str:
        return f"Endpoint({self.label}, w={self.weight}, out={self.outstanding})"
