"""A thin asyncio client for the Kubernetes API: get/list and watch streams.

Two ways to reach the API server, as a pod would:

* through ``kubectl proxy`` (Linkerd's default, ``localhost:8001``): plain HTTP, no auth;
* in-cluster with no sidecar: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``,
  the service-account bearer token and CA bundle from
  ``/var/run/secrets/kubernetes.io/serviceaccount/`` (the directory and environment are
  parameters so tests can point them elsewhere). The token is re-read when its file
  changes: projected service-account tokens are rotated by the kubelet.

Watches are ``GET <collection>?watch=true&resourceVersion=...``: a chunked stream of
JSON lines ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}``.
"""
from __future__ import annotations

import json
import os
import ssl
from typing import Any, AsyncIterator, Mapping, Optional

import aiohttp

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8001
#: Longest JSON line accepted from a watch stream (a huge Endpoints object is ~MBs).
MAX_EVENT_BYTES = 16 * 1024 * 1024


class K8sApiError(Exception):
    """The API answered with an error status (or an ERROR watch event)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"k8s API {status} {reason}: {message}".replace("  ", " "))
        self.status = status
        self.reason = reason
        self.message = message


class Gone(K8sApiError):
    """410: the resourceVersion is too old; list again."""


def _error_from(status: int, body: Any, fallback: str) -> K8sApiError:
    msg, reason, code = fallback, "", status
    if isinstance(body, dict) and body.get("kind") == "Status":
        msg = str(body.get("message") or fallback)
        reason = str(body.get("reason") or "")
        code = int(body.get("code") or status)
    cls = Gone if code == 410 else K8sApiError
    return cls(code, msg, reason)


def in_cluster_available(sa_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(os.path.join(sa_dir, "token"))


class K8sApi:
    """One connection pool to one API server (or kubectl proxy)."""

    def __init__(
        self,
        base_url: str,
        token_file: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_file = token_file
        self._ssl = ssl_context
        self._token: Optional[str] = None
        self._token_mtime: Optional[float] = None
        self._connect_timeout = connect_timeout
        self._session: Optional[aiohttp.ClientSession] = None

    @classmethod
    def proxy(cls, host: Optional[str] = None, port: Optional[int] = None) -> "K8sApi":
        """``kubectl proxy`` (or any plain-HTTP endpoint)."""
        return cls(f"http://{host or DEFAULT_HOST}:{port or DEFAULT_PORT}")

    @classmethod
    def in_cluster(
        cls, sa_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] = os.environ
    ) -> "K8sApi":
        """The API server as seen from inside a pod; ValueError naming what is missing."""
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ValueError("in-cluster k8s config: KUBERNETES_SERVICE_HOST is not set")
        token = os.path.join(sa_dir, "token")
        ca = os.path.join(sa_dir, "ca.crt")
        if not os.path.exists(token):
            raise ValueError(f"in-cluster k8s config: no service-account token at {token}")
        ctx = ssl.create_default_context(cafile=ca if os.path.exists(ca) else None)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 service IP
        return cls(f"https://{host}:{port}", token_file=token, ssl_context=ctx)

    def _headers(self) -> dict[str, str]:
        if not self.token_file:
            return {}
        try:
            mtime = os.stat(self.token_file).st_mtime
            if mtime != self._token_mtime:
                with open(self.token_file, encoding="utf-8") as f:
                    self._token = f.read().strip()
                self._token_mtime = mtime
        except OSError:
            pass  # keep the last token we read
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str, params: Optional[Mapping[str, str]] = None, timeout: float = 30.0) -> dict[str, Any]:
        """GET a resource or collection; K8sApiError (Gone for 410) on an error status."""
        t = aiohttp.ClientTimeout(total=timeout, connect=self._connect_timeout)
        async with self._get_session().get(
            self.base_url + path, params=params or None, headers=self._headers(), timeout=t
        ) as rsp:
            body = await rsp.read()
            doc = _loads(body)
            if rsp.status != 200:
                raise _error_from(rsp.status, doc, body.decode("utf-8", "replace")[:200] or rsp.reason or "")
            if not isinstance(doc, dict):
                raise K8sApiError(rsp.status, f"GET {path}: expected a JSON object")
            return doc

    async def send(self, method: str, path: str, body: Optional[dict[str, Any]] = None, timeout: float = 30.0) -> dict[str, Any]:
        """POST/PUT/DELETE a JSON object; K8sApiError (with the API's Status reason,
        e.g. ``Conflict``, ``AlreadyExists``, ``NotFound``) on an error status."""
        t = aiohttp.ClientTimeout(total=timeout, connect=self._connect_timeout)
        async with self._get_session().request(
            method, self.base_url + path, json=body, headers=self._headers(), timeout=t
        ) as rsp:
            raw = await rsp.read()
            doc = _loads(raw)
            if rsp.status not in (200, 201, 202):
                raise _error_from(rsp.status, doc, raw.decode("utf-8", "replace")[:200] or rsp.reason or "")
            return doc if isinstance(doc, dict) else {}

    async def watch(
        self, path: str, params: Optional[Mapping[str, str]] = None, idle_timeout: float = 330.0
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events until the server ends the stream.

        ERROR events are yielded as they come (the caller decides: 410 → re-list). A
        stream silent for ``idle_timeout`` seconds is treated as dead (half-open TCP).
        """
        q = dict(params or {})
        q["watch"] = "true"
        t = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout, sock_read=idle_timeout)
        async with self._get_session().get(
            self.base_url + path, params=q, headers=self._headers(), timeout=t
        ) as rsp:
            if rsp.status != 200:
                body = await rsp.read()
                raise _error_from(rsp.status, _loads(body), body.decode("utf-8", "replace")[:200])
            buf = b""
            async for chunk in rsp.content.iter_any():
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl].strip(), buf[nl + 1:]
                    if line:
                        yield _event(line)
                if len(buf) > MAX_EVENT_BYTES:
                    raise K8sApiError(200, f"watch event larger than {MAX_EVENT_BYTES} bytes")
            if buf.strip():
                yield _event(buf.strip())


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _event(line: bytes) -> dict[str, Any]:
    try:
        ev = json.loads(line)
    except ValueError as e:
        raise K8sApiError(200, f"malformed watch event: {e}") from None
    if not isinstance(ev, dict) or "type" not in ev:
        raise K8sApiError(200, "malformed watch event: no type")
    return ev
