"""Accepting TLS connections for any asyncio protocol, with the current certificate.

``TlsAcceptor(protocol_factory, source, failures)`` is itself a protocol factory for
``loop.create_server``: each accepted TCP connection is paused, upgraded with
``loop.start_tls(..., source.context, server_side=True)`` — the context of *now*, so a
rotated certificate applies to the next connection — and only then handed to a protocol
from ``protocol_factory`` through its ``connection_made``. A failed handshake (unknown
CA, no client certificate, plaintext on a TLS port, timeout) is counted in
``failures`` and the connection is dropped; the protocol never sees it.

Why not ``create_server(ssl=ctx)``: its context is fixed for the life of the listener
and a failed handshake is invisible to the application (asyncio logs it at debug level),
so neither rotation nor ``tls/handshake_failures`` could be done. The price is one task
per connection while it shakes hands.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable, Optional

from .errors import HandshakeFailures
from .reloading import TlsSource

log = logging.getLogger("namerouter.tls")

#: A client that has not finished its handshake by then is dropped (and counted).
HANDSHAKE_TIMEOUT_S = 10.0


class _Handshake(asyncio.Protocol):
    """The protocol of a connection until its TLS handshake is done."""

    def __init__(self, acceptor: "TlsAcceptor") -> None:
        self.acceptor = acceptor
        self.task: Optional[asyncio.Task] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello must reach start_tls, not us
        self.task = asyncio.get_running_loop().create_task(self.acceptor._upgrade(transport))
        self.acceptor._pending.add(self.task)
        self.task.add_done_callback(self.acceptor._pending.discard)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        pass  # start_tls sees it and fails


class TlsAcceptor:
    """A ``create_server`` protocol factory that terminates TLS (see module docstring)."""

    def __init__(self, protocol_factory: Callable[[], asyncio.BaseProtocol], source: TlsSource,
                 failures: Optional[HandshakeFailures] = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_S) -> None:
        self.protocol_factory = protocol_factory
        self.source = source
        self.failures = failures
        self.handshake_timeout = handshake_timeout
        self._pending: set[asyncio.Task] = set()
        self.accepted = 0

    def __call__(self) -> asyncio.Protocol:
        return _Handshake(self)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        app = self.protocol_factory()
        try:
            tls = await loop.start_tls(transport, app, self.source.context, server_side=True,
                                       ssl_handshake_timeout=self.handshake_timeout)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (ssl.SSLError, asyncio.TimeoutError, TimeoutError) as e:
            transport.abort()
            if self.failures is not None:
                self.failures.record(e, peer)
            return
        except (OSError, RuntimeError) as e:  # closed by the peer before/while shaking hands
            transport.abort()
            log.debug("%s: connection from %s closed during the TLS handshake: %r", self.source.name, peer, e)
            return
        if tls is None:  # pragma: no cover - start_tls returns None only on a closed loop
            transport.abort()
            return
        self.accepted += 1
        app.connection_made(tls)

    def close(self) -> None:
        """Drop connections still shaking hands (the listener is closed by its owner)."""
        for t in list(self._pending):
            t.cancel()


def peer_ssl_object(transport: Any) -> Optional[ssl.SSLObject]:
    """The ``SSLObject`` of an accepted TLS transport (None for plaintext)."""
    get = getattr(transport, "get_extra_info", None)
    return get("ssl_object") if get is not None else None
