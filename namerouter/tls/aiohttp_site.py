"""aiohttp servers (admin, namerd's HTTP controller) over TLS with rotation.

``serve(runner, ip, port, tls=source, failures=...)`` starts an aiohttp site: a plain
``web.TCPSite`` without ``tls``, else :class:`TlsSite`, which listens with
:class:`~namerouter.tls.server.TlsServer` instead of ``create_server(ssl=ctx)`` so the
certificate can change under a running server and failed handshakes are counted.
Handlers see the connection as usual: ``request.secure`` is true and
``request.transport.get_extra_info("ssl_object")`` is the TLS session.
"""
from __future__ import annotations

from typing import Any, Optional

from aiohttp import web

from .errors import HandshakeFailures
from .reloading import TlsSource
from .server import TlsServer


class TlsSite(web.TCPSite):
    """A ``TCPSite`` that terminates TLS with a :class:`TlsSource`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, tls: TlsSource,
                 failures: Optional[HandshakeFailures] = None, **kw: Any) -> None:
        super().__init__(runner, host, port, **kw)
        self._tls = tls
        self._failures = failures

    @property
    def name(self) -> str:
        return f"https://{self._host or '0.0.0.0'}:{self.port}"

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        tls_server = TlsServer(server, self._tls, self._failures)
        await tls_server.listen(self._host, self._port, backlog=self._backlog,
                                reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._server = tls_server  # type: ignore[assignment]  # close() is all BaseSite uses
        self._bound_port = tls_server.port


async def serve(runner: web.BaseRunner, ip: str, port: int, *, tls: Optional[TlsSource] = None,
                failures: Optional[HandshakeFailures] = None, **kw: Any) -> web.TCPSite:
    """Start a site on ``ip:port`` (TLS when ``tls`` is given); ``site.port`` is the bound port."""
    site: web.TCPSite
    if tls is None:
        site = web.TCPSite(runner, ip, port, **kw)
    else:
        site = TlsSite(runner, ip, port, tls=tls, failures=failures, **kw)
    await site.start()
    return site
