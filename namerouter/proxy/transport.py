"""Where connections come from: listening sockets and upstream connection set-up.

Both sides of the data plane open their sockets here and nowhere else, so that TLS
(issue 11) is a change to this module and the configs that feed it:

- :class:`ListenSettings` → ``loop.create_server``: address, ``SO_REUSEPORT`` (set by
  ``namerouter --workers N``), backlog, and ``ssl`` (an ``ssl.SSLContext``; None = plain).
  The protocol is made by :func:`server_protocol`; with TLS, ALPN picks the codec there.
- :class:`Connector` → ``loop.create_connection``: one per client (bound id), built from
  the client's config; ``ssl``/``server_hostname`` go to ``create_connection``, and the
  codec of a new connection is chosen in :meth:`Connector.connect`.
- :class:`UpstreamKey` is what makes two pooled connections interchangeable: a pool
  (``pool.Endpoint``) holds connections of one key only. TLS settings join the key as
  one more field.
"""
from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .pool import Endpoint

#: A new upstream connection that takes longer fails (and may be requeued elsewhere).
CONNECT_TIMEOUT_S = 3.0


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle on a proxied connection: a small head or body must leave at once
    (batching already makes one send per read event)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


@dataclass(frozen=True)
class ListenSettings:
    """How a router server listens."""

    ip: str
    port: int
    #: share the port with other processes (the workers of ``namerouter --workers N``)
    reuse_port: bool = False
    backlog: int = 1024
    #: TLS: the server context (ALPN protocols set on it choose the codec); None = plain
    ssl: Optional[_ssl.SSLContext] = None


async def listen(settings: ListenSettings, protocol: Callable[[], asyncio.Protocol]) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(protocol, settings.ip, settings.port, reuse_address=True,
                                    reuse_port=settings.reuse_port or None, backlog=settings.backlog,
                                    ssl=settings.ssl)


def server_protocol(server: Any) -> Callable[[], asyncio.Protocol]:
    """The protocol factory of a router server: HTTP/1.1, or for an h2 router
    ``h2/accept.py``'s (prior knowledge, ``Upgrade: h2c``, or ALPN ``h2`` with TLS: it
    looks at ``ssl_object.selected_alpn_protocol()`` in ``connection_made``)."""
    if getattr(server.core, "h2", False):
        from .h2.accept import h2_server_protocol

        return h2_server_protocol(server)
    from .h1.server import H1ServerConnection

    return lambda: H1ServerConnection(server)


@dataclass(frozen=True)
class UpstreamKey:
    """What makes two upstream connections interchangeable."""

    host: str
    port: int


class Connector:
    """Opens upstream connections for one client (bound id)."""

    __slots__ = ("ssl", "server_hostname", "timeout_s")

    def __init__(self, ssl: Optional[_ssl.SSLContext] = None, server_hostname: Optional[str] = None,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.timeout_s = timeout_s

    def key(self, host: str, port: int) -> UpstreamKey:
        return UpstreamKey(host, port)

    async def connect(self, endpoint: "Endpoint") -> Any:
        """A new connection to ``endpoint`` with its codec (HTTP/1.1); asyncio.TimeoutError
        after ``timeout_s`` (on the router's timer wheel)."""
        from .h1.client import H1ClientConnection

        loop = asyncio.get_running_loop()
        attempt = loop.create_task(loop.create_connection(
            lambda: H1ClientConnection(endpoint), endpoint.host, endpoint.port,
            ssl=self.ssl, server_hostname=self.server_hostname if self.ssl else None))
        expired: list[bool] = []
        timer = endpoint.stage.table.wheel().after(self.timeout_s, _give_up, (attempt, expired))
        try:
            _, proto = await attempt
        except asyncio.CancelledError:
            if expired:
                raise asyncio.TimeoutError(f"no connection after {self.timeout_s:g} s") from None
            raise
        finally:
            timer.cancel()
        return proto


def _give_up(arg: tuple[asyncio.Task, list[bool]]) -> None:
    attempt, expired = arg
    if not attempt.done():
        expired.append(True)
        attempt.cancel()


PLAIN = Connector()
