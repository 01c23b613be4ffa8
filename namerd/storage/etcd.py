"""``io.l5d.etcd``: dtabs in etcd v3, spoken through etcd's JSON gRPC gateway.

Key ``<pathPrefix>/<ns>`` holds the dtab text. The version is the UTF-8 text of
the key's ``mod_revision`` (the v3 counterpart of the ``modifiedIndex`` Linkerd's
etcd v2 store used), so an ETag looks like ``MTIz`` (= "123").

Writes are transactions (``/v3/kv/txn``): create compares ``create_revision == 0``,
update compares ``mod_revision == <If-Match>``, so etcd does the compare-and-set
for every namerd sharing the cluster. Keys and values travel base64-encoded; int64
fields are JSON strings; proto3 omits zero values (a PUT watch event has no
``type``, an unsuccessful txn has no ``succeeded``).

Watching: one range read of the whole prefix, then one ``/v3/watch`` stream from
the next revision; the stream is re-opened (with jittered backoff and a fresh read)
whenever it ends, so a restarted etcd or a compaction only delays updates. The
cache keeps the last known values meanwhile.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from namerouter.backoff import JitteredBackoff
from namerouter.dtab import Dtab
from namerouter.naming.var import PENDING, ActivityState, Failed, Ok, Var

from .base import (
    DtabStoreError,
    Forbidden,
    ListVar,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    NsState,
    Observed,
    ObservedDtabStore,
    StorageUnavailable,
    VersionedDtab,
    VersionMismatch,
    check_namespace,
)

log = logging.getLogger("namerd.storage.etcd")

OP_TIMEOUT = 5.0


@dataclass
class EtcdStoreConfig:
    """Linkerd's ``io.l5d.etcd`` storage keys (v3 API instead of v2)."""

    host: str = "localhost"
    port: int = field(default=2379, metadata={"min": 1, "max": 65535})
    pathPrefix: str = "/namerd/dtabs"


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _prefix_end(key: str) -> str:
    """range_end covering every key that starts with ``key`` (last byte + 1)."""
    raw = key.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode("latin-1")


class EtcdDtabStore(ObservedDtabStore):
    kind = "io.l5d.etcd"
    config_class = EtcdStoreConfig

    def __init__(self, url: str, path_prefix: str = "/namerd/dtabs") -> None:
        self.url = url.rstrip("/")
        self.prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self._dir = self.prefix + "/"
        self._session: Any = None
        self._cache: dict[str, NsState] = {}
        self._synced = False
        self._observed = Observed(self._initial_state)
        self._list_var: ListVar = Var(PENDING)
        self._watch_task: Optional[asyncio.Task[None]] = None
        self._state = "NEW"
        self._synced_event: Optional[asyncio.Event] = None

    @classmethod
    def from_config(cls, config: EtcdStoreConfig, runtime: Any = None) -> "EtcdDtabStore":
        return cls(f"http://{config.host}:{config.port}", config.pathPrefix)

    # Lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        import aiohttp

        # No total timeout on the session: the watch stream lives for hours.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._synced_event = asyncio.Event()
        self._watch_task = asyncio.create_task(self._watch_loop(), name="etcd-dtab-watch")
        try:
            await asyncio.wait_for(self._synced_event.wait(), 5.0)
        except asyncio.TimeoutError:
            log.warning("etcd %s not reachable yet; namerd keeps trying", self.url)

    async def close(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    # HTTP ---------------------------------------------------------------------------
    async def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        if self._session is None:
            raise StorageUnavailable("etcd storage is not started")
        try:
            async with self._session.post(
                f"{self.url}/v3/{endpoint}", json=body, timeout=aiohttp.ClientTimeout(total=OP_TIMEOUT)
            ) as r:
                text = await r.text()
                try:
                    doc = json.loads(text) if text else {}
                except ValueError:
                    doc = {"error": text}
                if r.status != 200:
                    msg = doc.get("error") or doc.get("message") or text
                    code = doc.get("code")
                    if r.status in (401, 403) or code in (7, 16):
                        raise Forbidden(f"etcd denied access: {msg}")
                    raise DtabStoreError(f"etcd {endpoint} failed ({r.status}): {msg}")
                return doc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise StorageUnavailable(f"etcd {self.url} unavailable: {e or type(e).__name__}") from None

    def _key(self, ns: str) -> str:
        return self._dir + ns

    def _decode(self, ns: str, kv: dict[str, Any]) -> NsState:
        from namerd.dtabtext import DtabParseError, parse_dtab_at

        try:
            text = _unb64(kv.get("value", "")).decode("utf-8")
            dtab = parse_dtab_at(text, f"etcd key {self._key(ns)}")
        except (DtabParseError, UnicodeDecodeError) as e:
            return Failed(DtabStoreError(str(e)))
        return Ok(VersionedDtab(dtab, str(kv.get("mod_revision", "0")).encode()))

    def _ns_of(self, kv: dict[str, Any]) -> Optional[str]:
        key = _unb64(kv["key"]).decode("utf-8", "replace")
        if not key.startswith(self._dir):
            return None
        ns = key[len(self._dir):]
        return ns if ns and "/" not in ns else None

    # Watch (one stream for the whole prefix) --------------------------------------------
    async def _watch_loop(self) -> None:
        import aiohttp

        # Jittered backoff so many namerds do not stampede a new etcd.
        backoff = JitteredBackoff(0.1, 5.0)
        while True:
            try:
                rev = await self._resync()
                backoff.reset()
                self._state = "WATCHING"
                await self._stream(rev + 1)
                self._state = "RECONNECTING"
            except asyncio.CancelledError:
                raise
            except (DtabStoreError, aiohttp.ClientError, OSError, ValueError, asyncio.TimeoutError) as e:
                self._state = f"RECONNECTING ({e})"
                log.info("etcd watch on %s interrupted: %s", self._dir, e)
            await asyncio.sleep(backoff.next())

    async def _resync(self) -> int:
        doc = await self._post("kv/range", {"key": _b64(self._dir), "range_end": _b64(_prefix_end(self._dir))})
        fresh: dict[str, ActivityState[Any]] = {}
        for kv in doc.get("kvs", []):
            ns = self._ns_of(kv)
            if ns is not None:
                fresh[ns] = self._decode(ns, kv)
        for ns in list(self._cache):
            if ns not in fresh:
                self._set_ns(ns, Ok(None))
        for ns, st in fresh.items():
            self._set_ns(ns, st)
        self._synced = True
        for ns, var in self._observed.items():
            if ns not in fresh:
                var.update(Ok(None))
        self._publish_list()
        if self._synced_event is not None:
            self._synced_event.set()
        return int(doc.get("header", {}).get("revision", "0"))

    async def _stream(self, start_revision: int) -> None:
        body = {"create_request": {"key": _b64(self._dir), "range_end": _b64(_prefix_end(self._dir)),
                                   "start_revision": str(start_revision)}}
        assert self._session is not None
        async with self._session.post(f"{self.url}/v3/watch", json=body) as r:
            if r.status != 200:
                raise DtabStoreError(f"etcd watch failed ({r.status})")
            buf = b""
            async for chunk in r.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self._on_watch_doc(json.loads(line))

    def _on_watch_doc(self, doc: dict[str, Any]) -> None:
        if "error" in doc:
            raise DtabStoreError(f"etcd watch error: {doc['error']}")
        result = doc.get("result", {})
        if result.get("canceled") or result.get("compact_revision"):
            raise DtabStoreError("etcd watch canceled (compaction); re-syncing")
        changed = False
        for ev in result.get("events", []):
            kv = ev.get("kv", {})
            ns = self._ns_of(kv)
            if ns is None:
                continue
            changed = True
            if ev.get("type") == "DELETE":  # PUT events carry no "type" (proto3 default)
                self._set_ns(ns, Ok(None))
            else:
                self._set_ns(ns, self._decode(ns, kv))
        if changed:
            self._publish_list()

    def _publish_list(self) -> None:
        self._list_var.update(Ok(tuple(sorted(self._cache))))

    def _set_ns(self, ns: str, state: ActivityState[Any]) -> None:
        if state == Ok(None):
            self._cache.pop(ns, None)
        else:
            self._cache[ns] = state
        var = self._observed.peek(ns)
        if var is not None:
            var.update(state)

    def _initial_state(self, ns: str) -> NsState:
        if ns in self._cache:
            return self._cache[ns]
        return Ok(None) if self._synced else PENDING

    # Reads ------------------------------------------------------------------------------
    async def list(self) -> list[str]:
        try:
            doc = await self._post("kv/range", {"key": _b64(self._dir), "range_end": _b64(_prefix_end(self._dir)),
                                                "keys_only": True})
        except StorageUnavailable:
            if self._synced:
                return sorted(self._cache)  # last known while etcd is away
            raise
        return sorted(ns for ns in (self._ns_of(kv) for kv in doc.get("kvs", [])) if ns)

    async def get(self, ns: str) -> Optional[VersionedDtab]:
        check_namespace(ns)
        try:
            doc = await self._post("kv/range", {"key": _b64(self._key(ns))})
        except StorageUnavailable:
            st = self._cache.get(ns)
            if isinstance(st, Ok):
                cached: Optional[VersionedDtab] = st.value
                return cached
            if self._synced:
                return None
            raise
        kvs = doc.get("kvs", [])
        if not kvs:
            return None
        st = self._decode(ns, kvs[0])
        if isinstance(st, Failed):
            raise st.error
        assert isinstance(st, Ok)  # _decode gives Ok or Failed
        value: Optional[VersionedDtab] = st.value
        return value

    # Writes ----------------------------------------------------------------------------
    async def _txn(self, ns: str, compare: dict[str, Any], dtab: Dtab) -> dict[str, Any]:
        key = _b64(self._key(ns))
        return await self._post("kv/txn", {
            "compare": [dict(compare, key=key)],
            "success": [{"request_put": {"key": key, "value": _b64(dtab.show())}}],
            "failure": [{"request_range": {"key": key, "keys_only": True}}],
        })

    async def create(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        doc = await self._txn(ns, {"target": "CREATE", "result": "EQUAL", "create_revision": "0"}, dtab)
        if not doc.get("succeeded"):
            raise NamespaceAlreadyExists(ns)

    async def update(self, ns: str, dtab: Dtab, version: bytes) -> None:
        check_namespace(ns)
        try:
            rev = int(version.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            rev = -1  # not one of ours: can never match
        if rev <= 0:
            if await self.get(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch(ns)
        doc = await self._txn(ns, {"target": "MOD", "result": "EQUAL", "mod_revision": str(rev)}, dtab)
        if doc.get("succeeded"):
            return
        responses = doc.get("responses", [])
        found = responses and responses[0].get("response_range", {}).get("kvs")
        raise VersionMismatch(ns) if found else NamespaceNotFound(ns)

    async def put(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        await self._post("kv/put", {"key": _b64(self._key(ns)), "value": _b64(dtab.show())})

    async def delete(self, ns: str) -> None:
        check_namespace(ns)
        doc = await self._post("kv/deleterange", {"key": _b64(self._key(ns))})
        if int(doc.get("deleted", "0")) == 0:
            raise NamespaceNotFound(ns)

    def admin_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "pathPrefix": self.prefix or "/",
                "state": self._state, "namespaces": sorted(self._cache), "observers": self.watch_count()}
