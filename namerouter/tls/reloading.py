"""Live TLS material: the ``SSLContext`` new connections use, reloaded when files change.

A :class:`TlsSource` is one TLS block in use (a server's, the admin's, a client
config's). ``source.context`` is read at every new connection (accept or connect), so a
reload affects new connections only; established ones keep the context they were made
with. A reload that fails (missing file, key not matching, half-written PEM) is logged,
counted and shown by ``state()`` (the admin's ``/admin/tls.json``), and the previous
context stays in use; the next change that yields good files clears the error.

A :class:`TlsRegistry` holds every source of a process (router or namerd), drives them
from one :class:`~namerouter.tls.watch.DirectoryWatcher`, shares one source between
client configs whose settings are equal, and makes :class:`ClientTlsParams` (context +
server name) for the connections of a client.

Metrics per source, under its ``name`` (a metrics scope such as ``admin`` or
``rt/incoming/server/127.0.0.1/4143``): ``tls/reloads``, ``tls/reload_failures``, and the
gauge ``tls/cert_expires_in_s`` (seconds until the certificate it presents expires).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from ..metrics import MetricsRegistry
from .config import ClientTlsConfig, ServerTlsConfig
from .context import Built, client_context, server_context
from .errors import HandshakeFailures
from .material import CertInfo, TlsConfigError, digest
from .watch import DirectoryWatcher

log = logging.getLogger("namerouter.tls")

#: After a failed reload, try once more this much later: a writer may have been between
#: the certificate and the key when the change was seen.
RETRY_AFTER_FAILURE_S = 1.0


class TlsSource:
    """One TLS block's current context (see module docstring)."""

    def __init__(self, name: str, config_path: str, files: Sequence[str], build: Callable[[], Built],
                 settings_key: tuple[Any, ...], metrics: Optional[MetricsRegistry] = None) -> None:
        self.name = name
        self.config_path = config_path
        self.files = list(files)
        self.settings_key = settings_key
        self._build = build
        self._digest = digest(self.files)
        try:
            self.context, self.cert = build()
        except TlsConfigError as e:
            raise TlsConfigError(e.config_key, f"{config_path}.{e.config_key}: {e}") from None
        self.loaded_at = time.time()
        self.reloads = 0
        self.error: Optional[str] = None
        self.error_at: Optional[float] = None
        self._failed_digest: Optional[bytes] = None
        self._retry: Optional[asyncio.TimerHandle] = None
        m = metrics if metrics is not None else MetricsRegistry()
        self._reloads = m.counter(f"{name}/tls/reloads")
        self._failures = m.counter(f"{name}/tls/reload_failures")
        if self.cert is not None:
            m.gauge(f"{name}/tls/cert_expires_in_s", lambda: round(self.cert.not_after - time.time())
                    if self.cert else 0)

    def reload(self) -> bool:
        """Re-read the files if their contents changed; True when a new context is in use."""
        d = digest(self.files)
        if d == self._digest:
            return False
        try:
            ctx, cert = self._build()
        except (TlsConfigError, ssl.SSLError, OSError, ValueError) as e:
            key = getattr(e, "config_key", "")
            msg = f"{self.config_path}.{key}: {e}" if key else f"{self.config_path}: {e}"
            if d != self._failed_digest:  # once per distinct broken content
                log.error("TLS reload of %s failed, still using the previous certificate: %s", self.name, msg)
                self._failures.incr()
                self._failed_digest = d
                self._retry_later()
            self.error, self.error_at = msg, time.time()
            return False
        self.context, self.cert, self._digest = ctx, cert, d
        self.loaded_at, self.error, self.error_at, self._failed_digest = time.time(), None, None, None
        self.reloads += 1
        self._reloads.incr()
        log.info("TLS material of %s reloaded%s", self.name,
                 f" (certificate {cert.subject}, sha256 {cert.sha256[:16]}…)" if cert else "")
        return True

    def _retry_later(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._retry is not None:
            self._retry.cancel()
        self._retry = loop.call_later(RETRY_AFTER_FAILURE_S, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._failed_digest = None  # report it again if it is still broken
        self.reload()

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def state(self) -> dict[str, Any]:
        return {
            "config": self.config_path,
            "files": self.files,
            "loadedAt": self.loaded_at,
            "reloads": self.reloads,
            "certificate": self.cert.to_json() if isinstance(self.cert, CertInfo) else None,
            "error": self.error,
            "errorAt": self.error_at,
        }


@dataclass(frozen=True, eq=False)
class ClientTlsParams:
    """What one client (one bound id) connects with: ``loop.create_connection(...,
    ssl=params.context, server_hostname=params.server_hostname)``. ``key`` is hashable
    and equal for clients whose TLS settings are the same; pools keyed by it never mix
    TLS and plaintext connections or connections made for different names."""

    source: TlsSource
    server_hostname: Optional[str]

    @property
    def context(self) -> ssl.SSLContext:
        return self.source.context

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.source.settings_key, self.server_hostname)


class TlsRegistry:
    """Every TLS source of one process, their file watch and handshake-failure counters."""

    def __init__(self, metrics: Optional[MetricsRegistry] = None) -> None:
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self.watcher = DirectoryWatcher()
        self.sources: dict[str, TlsSource] = {}
        self._by_settings: dict[tuple[Any, ...], TlsSource] = {}
        self._failures: dict[str, HandshakeFailures] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def _add(self, source: TlsSource) -> TlsSource:
        self.sources[source.name] = source
        self._by_settings[source.settings_key] = source
        self._unsubscribe.append(self.watcher.subscribe(source.files, source.reload))
        return source

    def server(self, cfg: ServerTlsConfig, name: str, config_path: str,
               alpn: Optional[Sequence[str]] = None) -> Optional[TlsSource]:
        """The source for a server's ``tls`` block (None when ``enabled: false``).
        TlsConfigError (key path and reason) when its files are wrong."""
        if not cfg.enabled:
            return None
        key = cfg.settings_key() + (tuple(alpn or ()),)
        return self._add(TlsSource(name, config_path, cfg.files(), lambda: server_context(cfg, alpn), key,
                                   self.metrics))

    def client(self, cfg: ClientTlsConfig, name: str, config_path: str,
               alpn: Optional[Sequence[str]] = None) -> Optional[TlsSource]:
        """The shared source for a client ``tls`` block (None when ``enabled: false``)."""
        if not cfg.enabled:
            return None
        key = cfg.settings_key() + (tuple(alpn or ()),)
        found = self._by_settings.get(key)
        if found is not None:
            return found
        return self._add(TlsSource(name, config_path, cfg.files(), lambda: client_context(cfg, alpn), key,
                                   self.metrics))

    def client_params(self, cfg: Optional[ClientTlsConfig], variables: Mapping[str, str], name: str,
                      config_path: str, alpn: Optional[Sequence[str]] = None) -> Optional[ClientTlsParams]:
        """Context and server name for one client: ``commonName`` with ``variables``
        (captured by the client prefix) substituted. None = plaintext."""
        if cfg is None or not cfg.enabled:
            return None
        source = self.client(cfg, name, config_path, alpn)
        assert source is not None
        return ClientTlsParams(source, cfg.common_name(variables))

    def handshake_failures(self, scope: str) -> HandshakeFailures:
        """The failure counter of one server or client scope (created on first use)."""
        f = self._failures.get(scope)
        if f is None:
            f = self._failures[scope] = HandshakeFailures(self.metrics, scope)
        return f

    def drop_handshake_failures(self, scope: str) -> None:
        """Forget a scope's counter (a client that is gone: client ids come and go)."""
        f = self._failures.pop(scope, None)
        if f is not None:
            self.metrics.remove(f.counter.name)

    def start(self) -> None:
        """Start watching (call from a running loop; sources added in a loop start it too)."""
        self.watcher.start()

    def reload_all(self) -> None:
        for s in list(self.sources.values()):
            s.reload()

    def state(self) -> dict[str, Any]:
        """``/admin/tls.json``: every source and every handshake-failure counter."""
        return {
            "sources": {name: s.state() for name, s in sorted(self.sources.items())},
            "handshakes": {scope: f.state() for scope, f in sorted(self._failures.items())},
        }

    async def close(self) -> None:
        await self.watcher.close()  # drops every subscription
        self._unsubscribe.clear()
        for s in self.sources.values():
            s.close()
