"""Where connections come from: listening sockets and upstream connection set-up.

Both sides of the data plane open their sockets here and nowhere else, so TLS is a
matter of this module and the configs that feed it (docs/architecture.md, "TLS"):

- :func:`listen` → ``loop.create_server`` for a plaintext server (address,
  ``SO_REUSEPORT`` set by ``namerouter --workers N``, backlog); :func:`listen_tls` → a
  :class:`~namerouter.tls.server.TlsServer` for a server with ``tls``: each accepted
  connection shakes hands with the certificate of the moment (rotation) and failed
  handshakes are counted.
- :func:`server_protocol` makes the protocol of an accepted connection. Plaintext: the
  router's codec (``PLAIN_CODECS``: HTTP/1.1 directly; an h2 router's sniffer for prior
  knowledge and ``Upgrade: h2c``). TLS: an :class:`AlpnServerSelector`, which looks at
  the protocol ALPN negotiated once the handshake is done, hands the transport to that
  protocol's codec (``SERVER_CODECS``; the plaintext codec when nothing was negotiated)
  and steps aside (``transport.set_protocol``), so no read goes through it.
- :class:`Connector` → ``loop.create_connection``: one per client (bound id), with the
  client's TLS parameters (context of the moment, SNI/checked name; None = plaintext);
  with TLS the negotiated ALPN protocol picks the client codec (``CLIENT_CODECS``).
  HTTP/2 clients have their own subclass (``h2/client.py`` ``H2Connector``: streams
  multiplexed over sessions), which offers ``h2`` over TLS and requires it.
- :class:`UpstreamKey` is what makes two pooled connections interchangeable: host,
  port and the TLS settings (``ClientTlsParams.key``: context settings and server
  name), so TLS and plaintext connections, or connections made for two names, never
  stand in for each other.

**ALPN.** ``ALPN[router protocol]`` says what a TLS server advertises and what a TLS
client offers, preferred first: ``http/1.1`` for HTTP routers, ``h2`` for h2 routers
(which cannot serve HTTP/1.1 requests, so they do not offer it). ``SERVER_CODECS`` and
``CLIENT_CODECS`` map a negotiated protocol id to the codec's factory.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..tls.errors import HandshakeFailures
from ..tls.peer import PeerCert
from ..tls.reloading import ClientTlsParams, TlsSource
from ..tls.server import TlsServer
from .socket_options import SocketOptionsConfig, apply as apply_socket_options

if TYPE_CHECKING:  # pragma: no cover
    from .pool import Endpoint

#: A new upstream connection (TCP + TLS handshake) that takes longer fails (and may be
#: requeued elsewhere).
CONNECT_TIMEOUT_S = 3.0


def set_nodelay(transport: asyncio.BaseTransport, opts: Optional[SocketOptionsConfig] = None) -> None:
    """Disable Nagle on a proxied connection: a small head or body must leave at once
    (batching already makes one send per read event); with a ``socketOptions`` block,
    set its options instead (socket_options.py)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        apply_socket_options(sock, opts)


def client_cert_of(transport: asyncio.BaseTransport) -> Optional[bytes]:
    """The ``x-forwarded-client-cert`` value of a TLS connection's verified client
    certificate (once per connection), None without one. Control characters (a CA may
    sign anything) become ``?``, so the value is always one safe header line."""
    try:
        cert = PeerCert.of(transport.get_extra_info("ssl_object"))
    except ValueError:  # a certificate cryptography cannot parse: forward nothing
        return None
    if cert is None:
        return None
    value = cert.xfcc().encode("utf-8", "replace")
    return bytes(b if 0x20 <= b != 0x7F else 0x3F for b in value)


# --- ALPN: which protocols a router speaks over TLS, and their codecs -------------------------

@dataclass(frozen=True)
class AlpnProtocols:
    """ALPN protocol ids, preferred first: ``server`` is what a TLS server of the router
    advertises, ``client`` what its TLS clients offer (empty: no ALPN extension)."""

    server: tuple[str, ...]
    client: tuple[str, ...]


#: router ``protocol`` → ALPN ids. An h2 router advertises ``h2`` only: it cannot serve
#: HTTP/1.1 requests (a TLS client that negotiates nothing gets the h2 router's plaintext
#: codec: HTTP/2 with prior knowledge, or a 505 that says so)
ALPN: dict[str, AlpnProtocols] = {"http": AlpnProtocols(("http/1.1",), ("http/1.1",)),
                                  "h2": AlpnProtocols(("h2",), ("h2",))}
#: the codec when the peer negotiated nothing (no ALPN extension)
DEFAULT_ALPN = "http/1.1"


def alpn_for(router_protocol: str) -> AlpnProtocols:
    return ALPN.get(router_protocol) or ALPN["http"]


def _h1_server(server: Any) -> Any:
    from .h1.server import H1ServerConnection

    return H1ServerConnection(server)


def _h1_client(endpoint: "Endpoint") -> Any:
    from .h1.client import H1ClientConnection

    return H1ClientConnection(endpoint)


def _h2_server(server: Any) -> Any:
    from .h2.accept import h2_connection

    return h2_connection(server)


def _h2_sniff(server: Any) -> Any:
    from .h2.accept import h2_accept

    return h2_accept(server)


#: negotiated ALPN id → server codec factory ``(HttpServer) -> protocol``
SERVER_CODECS: dict[str, Callable[[Any], Any]] = {"http/1.1": _h1_server, "h2": _h2_server}
#: router ``protocol`` → its codec on a plaintext connection, and on a TLS one without a
#: negotiated protocol (h2: prior knowledge, ``Upgrade: h2c``, else a 505)
PLAIN_CODECS: dict[str, Callable[[Any], Any]] = {"http": _h1_server, "h2": _h2_sniff}
#: negotiated ALPN id → client codec factory ``(Endpoint) -> protocol``
CLIENT_CODECS: dict[str, Callable[[Any], Any]] = {"http/1.1": _h1_client}


def negotiated(transport: asyncio.BaseTransport) -> str:
    """The ALPN protocol of a TLS connection (``DEFAULT_ALPN`` when none was agreed)."""
    ssl_object = transport.get_extra_info("ssl_object")
    proto = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    return proto or DEFAULT_ALPN


class _AlpnSelector(asyncio.Protocol):
    """Stands in as a TLS connection's protocol until the handshake is done, then hands
    the transport to the codec of the negotiated protocol and steps aside."""

    __slots__ = ("owner", "codecs", "default", "chosen")

    def __init__(self, owner: Any, codecs: dict[str, Callable[[Any], Any]],
                 default: Optional[Callable[[Any], Any]] = None) -> None:
        self.owner = owner
        self.codecs = codecs
        #: the codec when nothing was negotiated (None: ``codecs[DEFAULT_ALPN]``)
        self.default = default
        self.chosen: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        proto_id = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        factory = self.codecs.get(proto_id) if proto_id else self.default
        if factory is None:
            factory = self.codecs[DEFAULT_ALPN]
        proto = self.chosen = factory(self.owner)
        transport.set_protocol(proto)
        proto.connection_made(transport)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        # only reached when the connection ends before connection_made (never, with TLS)
        if self.chosen is not None:
            self.chosen.connection_lost(exc)


AlpnServerSelector = _AlpnSelector


# --- listening ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListenSettings:
    """How a router server listens."""

    ip: str
    port: int
    #: share the port with other processes (the workers of ``namerouter --workers N``)
    reuse_port: bool = False
    backlog: int = 1024
    #: ``socketOptions.reuseAddr`` (SO_REUSEADDR before bind)
    reuse_addr: bool = True


async def listen(settings: ListenSettings, protocol: Callable[[], asyncio.Protocol]) -> asyncio.AbstractServer:
    """A plaintext listener."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(protocol, settings.ip, settings.port, reuse_address=settings.reuse_addr,
                                    reuse_port=settings.reuse_port or None, backlog=settings.backlog)


#: ``(bound port) -> (source, failure counter)``: a TLS server's material, made once the
#: port is known (its metrics scope names the port)
TlsMaterial = Callable[[int], tuple[TlsSource, Optional[HandshakeFailures]]]


async def listen_tls(settings: ListenSettings, protocol: Callable[[], asyncio.BaseProtocol],
                     material: TlsMaterial) -> TlsServer:
    """A TLS listener: binds, then asks ``material`` for the source and failure counter
    of the bound port, then accepts. Whatever ``material`` raises (a TLS file that
    changed since the config was checked) closes the socket and propagates."""
    server = TlsServer(protocol, None)
    await server.listen(settings.ip, settings.port, backlog=settings.backlog, reuse_address=settings.reuse_addr,
                        reuse_port=settings.reuse_port or None, start=False)
    try:
        server.source, server.failures = material(server.port)
    except BaseException:
        server.close()
        raise
    server.start_serving()
    return server


def server_protocol(server: Any, tls: bool = False) -> Callable[[], Any]:
    """The protocol factory of a router server: the router's own codec for plaintext
    (``PLAIN_CODECS``); with TLS the codec ALPN negotiated, or the plaintext one when
    nothing was negotiated (see the module docstring)."""
    protocol = server.core.config.protocol
    plain = PLAIN_CODECS.get(protocol, _h1_server)
    if tls:
        return lambda: _AlpnSelector(server, SERVER_CODECS, plain)
    if plain is not _h1_server:
        return lambda: plain(server)
    from .h1.server import H1ServerConnection

    return lambda: H1ServerConnection(server)


# --- connecting --------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpstreamKey:
    """What makes two upstream connections interchangeable."""

    host: str
    port: int
    #: ``ClientTlsParams.key`` (TLS settings + server name); None = plaintext
    tls: Optional[tuple[Any, ...]] = None


class Connector:
    """Opens upstream connections for one client (bound id): plaintext, or TLS with
    ``tls`` (the context of the moment, so a rotated client certificate is used by the
    next new connection)."""

    __slots__ = ("tls", "timeout_s")

    def __init__(self, tls: Optional[ClientTlsParams] = None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.tls = tls
        self.timeout_s = timeout_s

    def key(self, host: str, port: int) -> UpstreamKey:
        return UpstreamKey(host, port, self.tls.key if self.tls is not None else None)

    async def connect(self, endpoint: "Endpoint") -> Any:
        """A new connection to ``endpoint`` with its codec; asyncio.TimeoutError after
        ``timeout_s`` (on the router's timer wheel); an ``ssl.SSLError`` (an OSError)
        when the TLS handshake fails."""
        loop = asyncio.get_running_loop()
        tls = self.tls
        attempt: "asyncio.Task[tuple[Any, Any]]"
        if tls is None:
            from .h1.client import H1ClientConnection

            attempt = loop.create_task(loop.create_connection(
                lambda: H1ClientConnection(endpoint), endpoint.host, endpoint.port))
        else:
            attempt = loop.create_task(loop.create_connection(
                lambda: _AlpnSelector(endpoint, CLIENT_CODECS), endpoint.host, endpoint.port,
                ssl=tls.context, server_hostname=tls.server_hostname or endpoint.host,
                ssl_handshake_timeout=self.timeout_s))
        expired: list[bool] = []
        timer = endpoint.stage.table.wheel().after(self.timeout_s, _give_up, (attempt, expired))
        proto: Any
        try:
            _, proto = await attempt
        except asyncio.CancelledError:
            if expired:
                raise asyncio.TimeoutError(f"no connection after {self.timeout_s:g} s") from None
            raise
        finally:
            timer.cancel()
        if isinstance(proto, _AlpnSelector):
            proto = proto.chosen
        return proto


def _give_up(arg: tuple["asyncio.Task[Any]", list[bool]]) -> None:
    attempt, expired = arg
    if not attempt.done():
        expired.append(True)
        attempt.cancel()


PLAIN = Connector()
