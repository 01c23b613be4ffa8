"""Connection sessions: who may connect, and how long a connection may take — for every
codec (HTTP/1.1 today, HTTP/2 next), on the client-facing and the backend side.

**Admission** (:class:`Admission`, one per process): a server refuses a new connection
cleanly (the codec answers ``503`` + ``l5d-err`` and closes) when it is at its
``maxConnections`` or when the process's client connections reach their share of the
file descriptors (``RLIMIT_NOFILE``): ``(soft limit − reserve) / 2``, the other half
being for backend connections, and the reserve (a quarter of the limit, at most 256)
for the admin server, namer watches and files. So an idle-connection flood can neither
starve the admin port nor make ``accept`` fail with ``EMFILE``. A refused connection
lingers (its 503 must reach the client) only while few others do; past that it is
reset at once.

**Time limits** (:class:`ServerSessions` per server, :class:`ConnectionWatch` per
connection): Linkerd's ``serverSession {idleTimeMs, lifeTimeMs}`` and our
``headerReadTimeoutMs``. A connection has one timer on the router's wheel
(``timers.py``), armed for the earliest deadline its state calls for; the codec keeps a
count of reads and answers and the time the current head started, and decides, in
``session_check(now)``, what its state means (silence is "the count did not move since
the previous check", so an idle or stalled connection closes after ``idleTimeMs`` to
1.5 times it, checked every half period, at no cost per read):

- waiting for a new request: closed ``idleTimeMs`` after the last activity (Finagle's
  ``ExpiringService``: idle = nothing outstanding) — ``expired/idle``;
- a request head not complete ``headerReadTimeoutMs`` after its first byte (after the
  connection opened, for the first request): 408 and close — ``read_timeout/header``;
- a request body from which nothing arrives for ``idleTimeMs`` while the router reads it
  (backpressure pauses do not count): 408 (or a cut, when the answer has begun) —
  ``read_timeout/body``;
- older than ``lifeTimeMs``: finishes what it carries, then closes — ``expired/lifetime``.

Nothing of this runs per request: a busy connection's timer fires twice per idle period.

A codec that wants the same for its connections implements ``session_check(now) ->
Optional[float]`` (act on the state; return the monotonic time of the next check, or
None to stop) and calls :meth:`ServerSessions.admit` / :meth:`ServerSessions.watch` from
``connection_made`` (``HttpServer.connection_made`` does the admission); the backend side
uses :class:`ConnectionWatch` the same way (``clientSession``, stalled response bodies).
"""
from __future__ import annotations

import resource
import time
from typing import Any, Optional

from ..metrics import Counter, MetricsRegistry
from .timers import Timer, TimerWheel

_now = time.monotonic

#: Defaults of the server session limits (``servers[].serverSession``).
DEFAULT_IDLE_MS = 60_000
DEFAULT_HEADER_READ_MS = 5_000


class Admission:
    """The process's budget of client-facing connections (see the module docstring)."""

    def __init__(self, nofile: Optional[int] = None) -> None:
        if nofile is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            nofile = soft if soft != resource.RLIM_INFINITY else 1 << 20
        self.nofile = nofile
        #: descriptors kept for the admin server, namers, files, listening sockets
        self.reserve = min(256, nofile // 4)
        #: client connections of every server of the process together
        self.limit = max(1, (nofile - self.reserve) // 2)
        #: refused connections allowed to linger (their 503 on its way) at once
        self.linger_limit = max(1, min(64, self.reserve // 4))
        self.open = 0
        self.lingering = 0

    def state(self) -> dict[str, int]:
        return {"nofile": self.nofile, "reserve": self.reserve, "limit": self.limit, "open": self.open,
                "lingering": self.lingering}


_ADMISSION: Optional[Admission] = None


def admission() -> Admission:
    """The process's :class:`Admission` (read ``RLIMIT_NOFILE`` once, at the first use)."""
    global _ADMISSION
    if _ADMISSION is None:
        _ADMISSION = Admission()
    return _ADMISSION


def _ms(v: Optional[int]) -> Optional[float]:
    return v / 1000.0 if v else None


class ServerSessions:
    """One server's connection limits, its counters, and the admission of its connections."""

    def __init__(self, config: Any, registry: MetricsRegistry, prefix: str, wheel: Any) -> None:
        session = getattr(config, "serverSession", None)
        self.idle_s: Optional[float] = _ms(getattr(session, "idleTimeMs", DEFAULT_IDLE_MS))
        self.life_s: Optional[float] = _ms(getattr(session, "lifeTimeMs", None))
        self.header_s: Optional[float] = _ms(getattr(session, "headerReadTimeoutMs", DEFAULT_HEADER_READ_MS))
        self.max_connections: Optional[int] = getattr(config, "maxConnections", None)
        #: socketOptions.readTimeoutMs / writeTimeoutMs (socket_options.py): nothing read
        #: or answered for that long, or the client not reading our answer: closed
        opts = getattr(config, "socketOptions", None)
        self.read_s: Optional[float] = _ms(getattr(opts, "readTimeoutMs", None))
        self.write_s: Optional[float] = _ms(getattr(opts, "writeTimeoutMs", None))
        self.read_timeouts: Counter = registry.counter(prefix + "socket/read_timeouts")
        self.write_timeouts: Counter = registry.counter(prefix + "socket/write_timeouts")
        #: () -> the router's TimerWheel
        self.wheel = wheel
        self.admission = admission()
        self.open = 0
        self.refused: Counter = registry.counter(prefix + "connects_refused")
        self.expired_idle: Counter = registry.counter(prefix + "expired/idle")
        self.expired_life: Counter = registry.counter(prefix + "expired/lifetime")
        self.header_timeouts: Counter = registry.counter(prefix + "read_timeout/header")
        self.body_timeouts: Counter = registry.counter(prefix + "read_timeout/body")

    @property
    def active(self) -> bool:
        """Whether connections need a watch at all."""
        return (self.idle_s is not None or self.life_s is not None or self.header_s is not None
                or self.read_s is not None or self.write_s is not None)

    def admit(self) -> Optional[str]:
        """Count a new connection in, or say why it is refused (the codec answers 503)."""
        adm = self.admission
        if self.max_connections is not None and self.open >= self.max_connections:
            why = f"this server is at maxConnections ({self.max_connections})"
        elif adm.open >= adm.limit:
            why = (f"the process is at its connection limit ({adm.limit}, from RLIMIT_NOFILE {adm.nofile} "
                   f"less {adm.reserve} kept for the admin server and the rest, halved for backend connections)")
        else:
            self.open += 1
            adm.open += 1
            return None
        self.refused.value += 1
        return f"connection refused: {why}"

    def release(self) -> None:
        """An admitted connection closed."""
        self.open -= 1
        self.admission.open -= 1

    def may_linger(self) -> bool:
        """Whether a refused connection may stay open while its 503 goes out (bounded,
        so refusals cannot take the descriptors the admission keeps free)."""
        adm = self.admission
        if adm.lingering >= adm.linger_limit:
            return False
        adm.lingering += 1
        return True

    def lingered(self) -> None:
        self.admission.lingering -= 1

    def socket_check(self, now: float, quiet_since: float, write_paused_at: float) -> Optional[str]:
        """socketOptions: why a connection quiet since ``quiet_since`` (its writes blocked
        since ``write_paused_at``, 0: not blocked) must close now, or None."""
        rs, ws = self.read_s, self.write_s
        if rs is not None and now - quiet_since >= rs:
            self.read_timeouts.value += 1
            return "read"
        if ws is not None and write_paused_at and now - write_paused_at >= ws:
            self.write_timeouts.value += 1
            return "write"
        return None

    def socket_period(self) -> Optional[float]:
        """How often socket timeouts are looked at (half the smallest), None: never."""
        xs = [x for x in (self.read_s, self.write_s) if x is not None]
        return min(xs) / 2 if xs else None

    def watch(self, conn: Any, first_check: float) -> Optional["ConnectionWatch"]:
        """Start watching ``conn`` (first check at ``first_check``, monotonic time)."""
        if not self.active:
            return None
        return ConnectionWatch(conn, self.wheel(), first_check)

    def first_check(self, born: float) -> float:
        """When a new connection is first looked at: when its first head is due (or idle)."""
        limits = [x for x in (self.header_s, self.idle_s, self.life_s, self.read_s, self.write_s) if x is not None]
        return born + min(limits) if limits else born


class ConnectionWatch:
    """One connection's single timer on the router's wheel. ``conn.session_check(now)``
    acts on the connection's state and returns when it wants the next check (None: stop).
    :meth:`arm` moves the check earlier when the codec sees a nearer deadline (a partial
    head began); deadlines that move later are handled by checking and re-arming."""

    __slots__ = ("conn", "wheel", "timer", "due")

    def __init__(self, conn: Any, wheel: TimerWheel, when: float) -> None:
        self.conn = conn
        self.wheel = wheel
        self.timer: Optional[Timer] = None
        self.due = 0.0
        self.arm(when)

    def arm(self, when: float) -> None:
        """Check at ``when`` (monotonic time) unless a check is already due by then."""
        t = self.timer
        if t is not None and t.active and self.due <= when:
            return
        if t is not None:
            t.cancel()
        self.due = when
        self.timer = self.wheel.after(max(0.0, when - _now()), ConnectionWatch._fire, self)

    def _fire(self) -> None:
        self.timer = None
        nxt = self.conn.session_check(_now())
        if nxt is not None:
            self.arm(nxt)

    def cancel(self) -> None:
        t = self.timer
        if t is not None:
            self.timer = None
            t.cancel()
        self.conn = None


class ClientSessions:
    """A client's (bound id's) ``clientSession {idleTimeMs, lifeTimeMs}`` and counters:
    pooled connections idle for ``idleTimeMs`` or older than ``lifeTimeMs`` are closed
    (``pool.Endpoint.close_idle`` / ``release``)."""

    __slots__ = ("idle_s", "life_s", "expired_idle", "expired_life")

    def __init__(self, block: Any, registry: MetricsRegistry, prefix: str) -> None:
        def get(key: str) -> Any:
            if block is None:
                return None
            return block.get(key) if isinstance(block, dict) else getattr(block, key, None)

        self.idle_s: Optional[float] = _ms(get("idleTimeMs"))
        self.life_s: Optional[float] = _ms(get("lifeTimeMs"))
        self.expired_idle: Counter = registry.counter(prefix + "expired/idle")
        self.expired_life: Counter = registry.counter(prefix + "expired/lifetime")
