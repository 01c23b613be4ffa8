"""Consul HTTP API client (aiohttp): catalog, health, agent and KV, with blocking queries.

Only transport and Consul's wire rules live here; what a namer or a dtab store does
with the answers is their business. Every response carries the parsed
``X-Consul-Index`` so callers can follow the blocking-query rules of
https://developer.hashicorp.com/consul/api-docs/features/blocking (see :func:`next_index`).
"""
from __future__ import annotations

import json
import ssl as _ssl
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import aiohttp

#: Consul answers 500 with exactly this body when ``dc=`` names an unknown datacenter.
NO_PATH_TO_DATACENTER = "No path to datacenter"

#: Consistency modes Linkerd accepts (``consistencyMode``): default adds no parameter.
CONSISTENCY_MODES = ("default", "stale", "consistent")


class ConsulError(Exception):
    """Consul answered with an unexpected status."""

    def __init__(self, status: int, body: str, what: str) -> None:
        super().__init__(f"consul {what}: HTTP {status}: {body.strip()[:200]}")
        self.status = status
        self.body = body


class NoPathToDatacenter(ConsulError):
    """The datacenter in the request does not exist (Consul's 500 "No path to datacenter")."""


class ConsulIndexError(Exception):
    """A blocking-query answer whose ``X-Consul-Index`` cannot be followed."""


@dataclass
class ConsulResponse:
    status: int
    #: ``X-Consul-Index`` as an int; None when missing or not a number.
    index: Optional[int]
    body: bytes
    known_leader: Optional[str] = None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def next_index(previous: Optional[int], answered: Optional[int]) -> int:
    """The ``index`` to send with the next blocking query, per Consul's documented rules.

    - no ``X-Consul-Index`` → error (we cannot block; retrying without an index is right);
    - the index went backwards (a server lost its state / snapshot restore) → error, the
      caller starts over without an index ("reset the index to 0");
    - an index of 0 is clamped to 1 so the next query blocks instead of spinning.
    """
    if answered is None:
        raise ConsulIndexError("consul did not return an X-Consul-Index header")
    if previous is not None and answered < previous:
        raise ConsulIndexError(f"consul index went backwards ({previous} -> {answered}); resetting")
    return max(answered, 1)


def _parse_index(raw: Optional[str]) -> Optional[int]:
    if raw is None:
        return None
    try:
        v = int(raw.strip())
    except ValueError:
        return None
    return v if v >= 0 else None


class ConsulClient:
    """One connection pool to one Consul agent; safe to share between watches.

    The aiohttp session is created lazily on first use, inside the running loop.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8500,
        token: Optional[str] = None,
        scheme: str = "http",
        ssl: Union[None, bool, _ssl.SSLContext] = None,
        request_timeout: float = 630.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.base = f"{scheme}://{host}:{self.port}"
        self._ssl = ssl
        # Consul caps ``wait`` at 10 minutes (+ up to wait/16 jitter); a read timeout a
        # little above that catches half-open connections without cutting real waits.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=request_timeout)
        self._session: Optional[aiohttp.ClientSession] = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # limit=0: every watched service holds one connection for minutes at a time.
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl if self._ssl is not None else True)
            headers = {"X-Consul-Token": self.token} if self.token else {}
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=headers
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, str]] = None,
        data: Optional[bytes] = None,
    ) -> ConsulResponse:
        """One HTTP call; network errors propagate as aiohttp/OSError exceptions."""
        session = self._get_session()
        async with session.request(method, self.base + path, params=params or None, data=data) as rsp:
            body = await rsp.read()
            return ConsulResponse(
                status=rsp.status,
                index=_parse_index(rsp.headers.get("X-Consul-Index")),
                body=body,
                known_leader=rsp.headers.get("X-Consul-KnownLeader"),
            )

    @staticmethod
    def _check(rsp: ConsulResponse, what: str, ok: tuple[int, ...] = (200,)) -> ConsulResponse:
        if rsp.status in ok:
            return rsp
        if rsp.status == 500 and NO_PATH_TO_DATACENTER in rsp.text:
            raise NoPathToDatacenter(rsp.status, rsp.text, what)
        raise ConsulError(rsp.status, rsp.text, what)

    @staticmethod
    def _params(consistency: Optional[str] = None, **values: Any) -> dict[str, str]:
        """Query parameters: ``None`` and ``False`` values are left out, ``True`` is sent
        as ``true``, other values as text; ``consistency`` ``stale``/``consistent`` adds
        that flag (Consul's consistency modes; ``default`` sends none)."""
        params = {k: "true" if v is True else str(v) for k, v in values.items() if v is not None and v is not False}
        if consistency in ("stale", "consistent"):
            params[consistency] = "true"
        return params

    # Agent ------------------------------------------------------------------------
    async def agent_self(self) -> dict[str, Any]:
        rsp = self._check(await self.request("GET", "/v1/agent/self"), "GET /v1/agent/self")
        doc = rsp.json()
        if not isinstance(doc, dict):
            raise ConsulError(rsp.status, rsp.text, "GET /v1/agent/self: not a JSON object")
        return doc

    # Catalog / health ---------------------------------------------------------------
    async def service_nodes(
        self,
        service: str,
        *,
        dc: Optional[str] = None,
        tag: Optional[str] = None,
        index: Optional[int] = None,
        wait: Optional[str] = None,
        consistency: Optional[str] = None,
        health: bool = False,
        passing: Optional[bool] = None,
    ) -> ConsulResponse:
        """``/v1/catalog/service/<svc>`` or (``health``) ``/v1/health/service/<svc>``."""
        params = self._params(
            consistency, dc=dc or None, tag=tag or None, index=index, wait=wait or None,
            passing=("true" if passing else "false") if health and passing is not None else None,
        )
        kind = "health" if health else "catalog"
        path = f"/v1/{kind}/service/{_quote(service)}"
        rsp = await self.request("GET", path, params)
        return self._check(rsp, f"GET {path}")

    # KV -------------------------------------------------------------------------
    async def kv_get(
        self,
        key: str,
        *,
        index: Optional[int] = None,
        wait: Optional[str] = None,
        consistency: Optional[str] = None,
        dc: Optional[str] = None,
        recurse: bool = False,
    ) -> ConsulResponse:
        """GET a key; 200 and 404 are both answers (404 = no such key, with an index)."""
        params = self._params(consistency, index=index, wait=wait or None, dc=dc or None, recurse=recurse)
        path = "/v1/kv/" + _quote(key.lstrip("/"))
        return self._check(await self.request("GET", path, params), f"GET {path}", ok=(200, 404))

    async def kv_put(
        self, key: str, value: bytes, *, cas: Optional[int] = None, dc: Optional[str] = None,
        consistency: Optional[str] = None,
    ) -> bool:
        """PUT a key; with ``cas`` the write happens only if ModifyIndex matches (0 = create)."""
        params = self._params(consistency, cas=cas, dc=dc or None)
        path = "/v1/kv/" + _quote(key.lstrip("/"))
        rsp = self._check(await self.request("PUT", path, params, data=value), f"PUT {path}")
        return rsp.text.strip() == "true"

    async def kv_delete(
        self, key: str, *, cas: Optional[int] = None, dc: Optional[str] = None, recurse: bool = False
    ) -> bool:
        params = self._params(cas=cas, dc=dc or None, recurse=recurse)
        path = "/v1/kv/" + _quote(key.lstrip("/"))
        rsp = self._check(await self.request("DELETE", path, params), f"DELETE {path}")
        return rsp.text.strip() == "true"


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="/")
