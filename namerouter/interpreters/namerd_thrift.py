"""``io.l5d.namerd``: a router that hands all binding to namerd's thrift interface.

The original Linkerd 1 way to use namerd (port 4100, ``io.l5d.thriftNameInterpreter``):
ThriftMux (``namerouter/mux``) carrying the long-polling ``Namer`` service
(``namerouter/thriftapi/namer.thrift``). Per distinct (dtab, path) a loop of ``bind``
calls, each carrying the stamp of the tree it has, answered when the tree changes; per
bound id a loop of ``addr`` calls; ``dtab`` for the admin view; one ``delegate`` call
per delegator request. All calls to one namerd share one Mux session; a router that
stops watching a name discards its pending call (``Tdiscarded``).

The shared machinery — last known state while namerd is away, re-sync on its return
(a new session starts every loop again from an empty stamp, so namerd answers at once),
fail-over across several ``dst`` addresses, bounded idle state, admin and metrics — is
``remote.py``'s, as for ``io.l5d.namerd.http`` and ``io.l5d.mesh``.

Config (Linkerd's keys; ``cache`` and ``retry.probeSeconds`` are ours, a list ``dst``
fails over)::

    interpreter:
      kind: io.l5d.namerd
      dst: /$/inet/namerd.example/4100
      namespace: default
      retry: {baseSeconds: 5, maxSeconds: 600}
      failureThreshold: {minPeriodMs: 5000, closeTimeoutMs: 4000}   # Mux pings
      tls: {commonName: namerd, caCert: /certs/ca.pem}   # TLS; caCert default: the system's CAs

namerd's ``BindFailure``/``AddrFailure``/``DtabFailure`` keep the last value and retry
with backoff (as Linkerd).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, AsyncIterator, Optional

from thriftpy2.thrift import TException

from ..dtab import Dtab, DtabSyntaxError, NameTree, Path
from ..metrics import MetricsRegistry
from ..mux.client import MuxClosed, MuxRemoteError, MuxSession
from ..mux.thrift import ThriftCallError, decode_reply, encode_call
from ..naming.addr import Addr
from ..naming.bound import BoundName
from ..thriftapi import convert, namer
from .namerd_client import Endpoint, NamerdEndpoints, NamerdUnreachable, parse_endpoints
from .remote import (
    AddrWatch,
    BindWatch,
    FailureThresholdConfig,
    NamerdError,
    NamerdTlsConfig,
    RemoteConfig,
    RemoteFailure,
    RemoteInterpreter,
    StreamLost,
    Watch,
)

log = logging.getLogger(__name__)

KIND = "io.l5d.namerd"
DELEGATE_TIMEOUT = 5.0
#: Declared failures of the Namer service: namerd answered, with an error.
_FAILURES = (namer.BindFailure, namer.AddrFailure, namer.DtabFailure, namer.DelegationFailure)


@dataclass
class NamerdThriftConfig(RemoteConfig):
    kind: str = KIND
    failureThreshold: FailureThresholdConfig = field(default_factory=FailureThresholdConfig)
    tls: Optional[NamerdTlsConfig] = None  # type: ignore[assignment]  # Linkerd's {commonName, caCert}

    def __post_init__(self) -> None:
        pass  # commonName is a plain name here (no {variables})


class ThriftMuxClient(NamerdEndpoints):
    """:class:`NamerdEndpoints` over ThriftMux: one Mux session per namerd address."""

    def __init__(self, *args: Any, ping_interval: float = 5.0, ping_timeout: float = 4.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._sessions: dict[Endpoint, MuxSession] = {}
        self._connecting: dict[Endpoint, asyncio.Future[MuxSession]] = {}
        self._seq = 0

    async def session(self, ep: Endpoint) -> MuxSession:
        """A usable session to ``ep`` (one connect at a time per address)."""
        if self.closed:
            raise NamerdUnreachable("the namerd client is closed")
        s = self._sessions.get(ep)
        if s is not None and s.usable:
            return s
        pending = self._connecting.get(ep)
        if pending is None:
            pending = self._connecting[ep] = asyncio.ensure_future(self._connect(ep))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done() and self._connecting.get(ep) is pending:
                del self._connecting[ep]

    async def _connect(self, ep: Endpoint) -> MuxSession:
        tls = self.tls
        try:
            s = await MuxSession.connect(ep.host, ep.port, ping_interval=self.ping_interval,
                                         ping_timeout=self.ping_timeout,
                                         ssl=tls.context if tls is not None else None,
                                         server_hostname=tls.server_hostname if tls is not None else None)
        except MuxClosed as e:
            cause = e.__cause__
            why = self.describe_failure(cause, ep) if cause is not None else str(e)
            raise NamerdUnreachable(f"cannot reach namerd at {ep}: {why}") from None
        old = self._sessions.get(ep)
        self._sessions[ep] = s
        if old is not None and not old.closed and not old.outstanding:
            old.close("replaced")
        return s

    async def call(self, ep: Endpoint, method: str, req: Any) -> Any:
        """One thrift call. Raises NamerdUnreachable (no session), StreamLost (the session
        broke while waiting), RemoteFailure (namerd's declared failure or a Mux error)."""
        session = await self.session(ep)
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        payload = encode_call(namer.Namer, method, self._seq, req=req)
        try:
            reply = await session.dispatch(payload)
        except MuxClosed as e:
            raise StreamLost(str(e)) from None
        except MuxRemoteError as e:
            raise RemoteFailure(f"namerd {ep}: {e}") from None
        try:
            return decode_reply(namer.Namer, method, reply)
        except _FAILURES as e:
            raise RemoteFailure(_reason(e)) from None
        except (ThriftCallError, TException) as e:
            raise RemoteFailure(f"namerd {ep}: {e}") from None

    async def _probe(self, ep: Endpoint) -> bool:
        try:
            await self.session(ep)
        except NamerdUnreachable:
            return False
        return True

    async def _close_transport(self) -> None:
        for s in self._sessions.values():
            s.close("interpreter closed")
        self._sessions.clear()
        for f in self._connecting.values():
            f.cancel()
        self._connecting.clear()
        await asyncio.sleep(0)


def _reason(e: Any) -> str:
    r = getattr(e, "reason", None)
    return r if isinstance(r, str) and r else type(e).__name__


class NamerdThriftInterpreter(RemoteInterpreter[ThriftMuxClient]):
    """Name interpreter backed by namerd's thrift interface (see module docstring)."""

    kind = KIND
    config_class = NamerdThriftConfig

    def __init__(self, config: NamerdThriftConfig, metrics: Optional[MetricsRegistry] = None,
                 scope: str = f"interpreter/{KIND}", transformers: Optional[list[Any]] = None,
                 tls_registry: Any = None) -> None:
        super().__init__(config, config.namespace, metrics, scope, transformers, tls_registry)

    @staticmethod
    def client_tls(config: Any) -> Any:
        return config.tls.client_config() if config.tls is not None else None

    def _make_client(self, config: Any, options: dict[str, Any]) -> "ThriftMuxClient":
        return ThriftMuxClient(parse_endpoints(config.dst), **options,
                               ping_interval=config.failureThreshold.minPeriodMs / 1000.0,
                               ping_timeout=config.failureThreshold.closeTimeoutMs / 1000.0)

    # -- transport -----------------------------------------------------------------------
    def _request(self, watch: Watch, stamp: bytes) -> tuple[str, Any]:
        ns = self.namespace
        if isinstance(watch, BindWatch):
            ref = namer.NameRef(stamp=stamp, name=convert.path_to_thrift(watch.path), ns=ns)
            return "bind", namer.BindReq(dtab=watch.dtab.show(), name=ref, clientId=[])
        if isinstance(watch, AddrWatch):
            ref = namer.NameRef(stamp=stamp, name=convert.path_to_thrift(watch.id), ns=ns)
            return "addr", namer.AddrReq(name=ref, clientId=[])
        return "dtab", namer.DtabReq(stamp=stamp, ns=ns, clientId=[])

    async def _open(self, watch: Watch, ep: Endpoint) -> AsyncIterable[Any]:
        client = self.client
        method, req = self._request(watch, b"")
        try:
            first = await client.call(ep, method, req)
        except StreamLost as e:
            raise NamerdUnreachable(str(e)) from None
        return self._polls(watch, ep, first)

    async def _polls(self, watch: Watch, ep: Endpoint, first: Any) -> AsyncIterator[Any]:
        """The long-poll loop as a stream: each answer's stamp asks for the next change."""
        client = self.client
        value = first
        while True:
            yield value
            method, req = self._request(watch, value.stamp or b"")
            value = await client.call(ep, method, req)

    def decode_tree(self, doc: Any) -> NameTree[BoundName]:
        if doc.tree is None:
            raise ValueError("a bind answer without a tree")
        return convert.bound_tree_from_thrift(doc.tree, self._bound_name)

    def decode_addr(self, doc: Any) -> Addr:
        return convert.addr_from_thrift(doc.value)

    def decode_dtab(self, doc: Any) -> Dtab:
        try:
            return Dtab.read(doc.dtab or "")
        except DtabSyntaxError as e:
            raise ValueError(f"namerd sent an unreadable dtab: {e}") from None

    async def delegate(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> dict[str, Any]:
        """namerd's delegation of ``path`` (one ``delegate`` call), as delegate-tree JSON."""
        client = self.client
        req = namer.DelegateReq(dtab=dtab.show(), clientId=[], delegation=namer.Delegation(
            stamp=b"", tree=convert.path_delegate_tree(path), ns=self.namespace))

        async def attempt(ep: Endpoint) -> Any:
            try:
                async with asyncio.timeout(DELEGATE_TIMEOUT):
                    return await client.call(ep, "delegate", req)
            except (StreamLost, TimeoutError) as e:
                raise NamerdUnreachable(f"namerd {ep}: {e or 'timed out'}") from None

        try:
            rsp = await client.on_any(attempt)
            return convert.delegate_thrift_to_json(rsp.tree)
        except RemoteFailure as e:
            raise NamerdError(str(e)) from None
        except NamerdUnreachable as e:
            raise NamerdError(f"namerd unreachable: {e}") from None
        except ValueError as e:
            raise NamerdError(f"unreadable delegation from namerd: {e}") from None
