"""An upstream connection for an attempt: pooled, or new — with connect failures requeued
to another endpoint of the same client within its ``requeueBudget`` (Finagle's requeues:
a failure that provably never reached a server is re-sent at once elsewhere). A failed
TLS handshake is a connect failure too (another endpoint may have a good certificate);
it is also counted as ``…/tls/handshake_failures`` of the client and, when no endpoint is
left, answered with a 502 naming the address and the TLS reason."""
from __future__ import annotations

import asyncio
import time
from random import getrandbits
from typing import TYPE_CHECKING, Any

from ..tls.errors import is_tls_error
from .fail_fast import FailedFast
from .errors import ConnectFailed, ForbiddenDestination, NoHosts, TlsFailed

if TYPE_CHECKING:  # pragma: no cover
    from .pool import Endpoint
    from .routing import ClientStage, ServiceStage

_now = time.monotonic


async def connection_for(route: "ServiceStage", client: "ClientStage", node: "Endpoint",
                         fresh: bool = False) -> tuple["Endpoint", Any]:
    """(endpoint, connection); raises ConnectFailed / NoHosts (RouterErrors) when out of tries.
    ``fresh``: never an idle pooled connection (a CONNECT tunnel gets its own)."""
    tries = 0
    limit = max(1, min(client.balancer.max_effort, len(client.endpoints)))
    while True:
        if node.forbidden is not None:
            node = _not_forbidden(route, client, node)
        conn = None if fresh else node.get_idle()
        if conn is not None:
            return node, conn
        ff = client.fail_fast
        if ff is not None and ff.is_down(node):
            tries += 1
            node = _next_endpoint(route, client, node, FailedFast(
                f"{node.label} is marked down by failFast until a reconnect succeeds"), tries, limit)
            continue
        try:
            conn = await node.connect()
        except (OSError, asyncio.TimeoutError) as e:
            tries += 1
            if ff is not None:
                ff.connect_failed(node)
            node = _next_endpoint(route, client, node, e, tries, limit)
            continue
        protected = route.table.protected
        what = protected.refusal_for(conn.transport) if protected else None
        if what is None:
            return node, conn
        # The address reached is the router's own control plane (or itself): never.
        # (An HTTP/2 stream slot gives up its whole multiplexed session.)
        getattr(conn, "abort_connection", conn.abort)()
        node.forbidden = what
        node = _not_forbidden(route, client, node)


def _not_forbidden(route: "ServiceStage", client: "ClientStage", node: "Endpoint") -> "Endpoint":
    """Another endpoint of the client than a protected one, or ForbiddenDestination (403)."""
    others = [n for n in client.endpoints.values() if n.forbidden is None and n.available]
    if others:
        return others[getrandbits(32) % len(others)]
    raise ForbiddenDestination(route.explain(
        f"{node.label} is {node.forbidden}, which the router never forwards to, whatever the dtab says "
        f"(bound name {client.id_text})", headline="Refusing to forward"))


def _next_endpoint(route: "ServiceStage", client: "ClientStage", node: "Endpoint", e: BaseException,
                   tries: int, limit: int) -> "Endpoint":
    """Count a connect failure and choose the endpoint to try next (or raise)."""
    tls_reason = None
    if not isinstance(e, FailedFast):  # (failFast: no connection was attempted)
        client.connect_failures.value += 1
        tls_reason = client.tls_failed(e, node) if is_tls_error(e) else None
        if node.accrual is not None:
            node.accrual.failure()  # failure accrual decides when the endpoint is marked dead
        else:
            node.down_until = max(node.down_until, _now() + 1.0)
    if tries >= limit or not client.policy.requeues.try_requeue():
        if tls_reason is not None:
            raise TlsFailed(route.explain(
                f"address {node.label} (bound name {client.id_text}): {tls_reason} (certificate name "
                f"expected: {client.server_name or '(not checked)'}; {tries} endpoint attempt(s))",
                headline="TLS handshake failed for"))
        why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or type(e).__name__)
        raise ConnectFailed(route.explain(
            f"unable to connect to {node.label} (bound name {client.id_text}, {tries} endpoint "
            f"attempt(s)): {why}", headline="Connection failed for"))
    nxt = client.balancer.pick()
    if nxt is node:  # a requeue goes to another endpoint when there is one
        others = [n for n in client.balancer.nodes if n is not node and n.available]
        if others:
            nxt = others[getrandbits(32) % len(others)]
    if nxt is None:
        raise NoHosts(route.explain_no_hosts(client))
    return nxt  # type: ignore[return-value]
