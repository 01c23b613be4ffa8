"""A TLS listener for any asyncio protocol, with the certificate of the moment.

``TlsServer(protocol_factory, source, failures)`` accepts TCP connections itself and
hands each to ``loop.connect_accepted_socket(..., ssl=source.context)``: the context of
*now*, so a rotated certificate applies to the next connection and open ones keep theirs.
The protocol's ``connection_made`` runs once the handshake is done; a failed handshake
(unknown CA, no client certificate, plaintext on a TLS port, timeout) is counted in
``failures`` with its short reason, the socket is closed, and nothing else notices.

Why not ``create_server(ssl=ctx)``: its context is fixed for the life of the listener and
a failed handshake is invisible to the application (asyncio logs it at debug level), so
neither rotation nor ``tls/handshake_failures`` could be done. (``start_tls`` on an
accepted transport is no way out either: uvloop may deliver the ClientHello to the
transport's first protocol before ``start_tls`` takes over.) The cost is one task per
connection while it shakes hands and a Python-level accept loop — small next to the
handshake itself. At most ``max_pending`` connections shake hands at once (each for at
most ``handshake_timeout``); beyond that the listener stops accepting until one is done,
so clients that connect and stay silent hold a bounded number of sockets.

``TlsServer`` has the parts of ``asyncio.Server`` its owners use: ``sockets``,
``close()``, ``wait_closed()``, ``is_serving()``.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Any, Callable, Optional

from .errors import HandshakeFailures
from .reloading import TlsSource

log = logging.getLogger("namerouter.tls")

#: A client that has not finished its handshake by then is dropped (and counted).
HANDSHAKE_TIMEOUT_S = 10.0
#: At most this many connections shake hands at once; beyond it the listener stops
#: accepting (the kernel's backlog holds the rest) until one finishes, so clients that
#: connect and never speak cost a bounded number of sockets and tasks.
MAX_PENDING_HANDSHAKES = 1024
#: Out of file descriptors: pause accepting this long (asyncio waits 1 s).
_ACCEPT_PAUSE_S = 0.1
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class TlsServer:
    """Listen on ``host:port`` and terminate TLS for ``protocol_factory``."""

    def __init__(self, protocol_factory: Callable[[], asyncio.BaseProtocol], source: Optional[TlsSource],
                 failures: Optional[HandshakeFailures] = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
                 max_pending: int = MAX_PENDING_HANDSHAKES) -> None:
        self.protocol_factory = protocol_factory
        #: may be set after ``listen(start=False)``, before ``start_serving()`` (a source
        #: whose metrics scope names the bound port)
        self.source = source
        self.failures = failures
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        #: set whenever fewer than ``max_pending`` handshakes are under way
        self._room = asyncio.Event()
        self._room.set()
        self.sockets: list[socket.socket] = []
        self.accepted = 0
        self._accept_task: Optional[asyncio.Task[None]] = None
        self._pending: set[asyncio.Task[None]] = set()

    async def listen(self, host: Optional[str], port: int, *, backlog: int = 128,
                     reuse_address: Optional[bool] = True, reuse_port: Optional[bool] = None,
                     start: bool = True) -> None:
        """Bind and listen; accept at once, or (``start=False``) after ``start_serving()``."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, type_, proto, _, addr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            if reuse_address is not False:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sockets = [sock]
        if start:
            self.start_serving()

    def start_serving(self) -> None:
        if self.source is None:
            raise RuntimeError("TlsServer.start_serving: no TLS source")
        if self._accept_task is None and self.sockets:
            self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(self.sockets[0]))

    @property
    def port(self) -> int:
        port: int = self.sockets[0].getsockname()[1]
        return port

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if len(self._pending) >= self.max_pending:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                conn, addr = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                if sock.fileno() < 0:
                    return  # closed
                if e.errno in _RESOURCE_ERRORS:
                    name = self.source.name if self.source is not None else "?"
                    log.error("%s: cannot accept connections: %s; pausing", name, e)
                    await asyncio.sleep(_ACCEPT_PAUSE_S)
                continue
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            task = loop.create_task(self._handshake(conn, addr))
            self._pending.add(task)
            task.add_done_callback(self._handshake_done)

    def _handshake_done(self, task: "asyncio.Task[None]") -> None:
        self._pending.discard(task)
        self._room.set()

    async def _handshake(self, conn: socket.socket, peer: Any) -> None:
        loop = asyncio.get_running_loop()
        assert self.source is not None
        try:
            await loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.source.context,
                                               ssl_handshake_timeout=self.handshake_timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (ssl.SSLError, asyncio.TimeoutError, TimeoutError) as e:
            conn.close()
            if self.failures is not None:
                self.failures.record(e, peer)
            return
        except (OSError, RuntimeError) as e:  # the peer went away while shaking hands
            conn.close()
            log.debug("%s: connection from %s closed during the TLS handshake: %r", self.source.name, peer, e)
            return
        self.accepted += 1

    def is_serving(self) -> bool:
        return self._accept_task is not None and not self._accept_task.done()

    def close(self) -> None:
        """Stop accepting and drop connections still shaking hands; established ones
        belong to their protocols (as with ``asyncio.Server.close``)."""
        if self._accept_task is not None:
            self._accept_task.cancel()
        for s in self.sockets:
            s.close()
        for t in list(self._pending):
            t.cancel()

    async def wait_closed(self) -> None:
        tasks = [t for t in [self._accept_task, *self._pending] if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)


async def serve_tls(protocol_factory: Callable[[], asyncio.BaseProtocol], source: TlsSource, host: Optional[str],
                    port: int, failures: Optional[HandshakeFailures] = None, **listen_kw: Any) -> TlsServer:
    """``loop.create_server`` for TLS with rotation and failure counting."""
    server = TlsServer(protocol_factory, source, failures)
    await server.listen(host, port, **listen_kw)
    return server
