"""Transport-level TLS shared by the data plane, the admin server, namerd and the
namerd interpreters (see docs/architecture.md, "TLS").

- ``config``: Linkerd's ``tls`` blocks (``ServerTlsConfig``, ``ClientTlsConfig``,
  ``ClientAuthConfig``), checked at load time.
- ``context``: ``ssl.SSLContext`` builders (ALPN settable); ``protocols``: versions and
  cipher names; ``material``: reading and checking PEM files.
- ``reloading``: ``TlsSource`` (the context new connections use, reloaded when files
  change), ``TlsRegistry`` (a process's sources, ``/admin/tls.json``),
  ``ClientTlsParams`` (context + server name + pool key); ``watch``: the file watch.
- ``server``: ``TlsServer``, TLS termination for any asyncio protocol;
  ``aiohttp_site``: the same for aiohttp servers.
- ``errors``: short reasons for TLS failures, ``HandshakeFailures`` counters;
  ``peer``: the client certificate and ``x-forwarded-client-cert``.
"""
from .config import ClientAuthConfig, ClientTlsConfig, ServerTlsConfig, check_common_name_vars
from .errors import HandshakeFailures, describe, is_tls_error
from .material import TlsConfigError
from .reloading import ClientTlsParams, TlsRegistry, TlsSource

__all__ = [
    "ServerTlsConfig", "ClientTlsConfig", "ClientAuthConfig", "check_common_name_vars",
    "TlsConfigError", "TlsRegistry", "TlsSource", "ClientTlsParams",
    "HandshakeFailures", "describe", "is_tls_error",
]
