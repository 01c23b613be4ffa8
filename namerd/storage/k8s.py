"""``io.l5d.k8s`` storage: dtabs as Kubernetes custom resources (Linkerd's K8sDtabStore).

Each namespace is one ``DTab`` object of the ``dtabs.l5d.io`` custom resource
definition (group ``l5d.io``, version ``v1alpha1``, Linkerd's
``namerd/examples/k8s/3rdparty.yaml``) in the configured Kubernetes namespace, named
after the dtab namespace::

    {"apiVersion": "l5d.io/v1alpha1", "kind": "DTab",
     "metadata": {"name": "default", "resourceVersion": "4242"},
     "dentries": [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]}

The version is the UTF-8 text of ``metadata.resourceVersion`` (so the ETag of a
namespace is base64 of e.g. ``4242``), and every write is the API server's own
optimistic concurrency: create = ``POST`` (409 AlreadyExists → exists), update =
``PUT`` carrying the resourceVersion the caller read (409 Conflict → version mismatch),
delete = ``DELETE``. A put
without ``If-Match`` reads the current version and replaces (retried a few times
against concurrent writers, where Linkerd gives up at once).

Observations come from one list-then-watch of the collection (``k8s/watch.py``:
resourceVersions, bookmarks, re-list on 410, jittered backoff), running only while
someone observes; the last known dtabs stay while the API is away. Kubernetes object
names are DNS subdomains, so a dtab namespace with capitals or ``_`` is refused by the
API (400 here, with its message). With neither ``host`` nor ``port`` namerd talks to
the API server in-cluster when it runs in a pod, else to ``kubectl proxy`` on
``localhost:8001`` (Linkerd's only option).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp

from namerouter.dtab import Dtab, DtabSyntaxError
from namerouter.k8s.client import K8sApi, K8sApiError
from namerouter.k8s.watch import CollectionWatch
from namerouter.namers.k8s import make_api
from namerouter.naming.var import PENDING, ActivityState, Closable, Failed, Ok, Var, start_stop

from .base import (
    DtabStoreError,
    Forbidden,
    InvalidNamespace,
    ListVar,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    NsState,
    NsVar,
    Observed,
    ObservedDtabStore,
    StorageUnavailable,
    VersionedDtab,
    VersionMismatch,
    check_namespace,
)

GROUP_VERSION = "l5d.io/v1alpha1"
RESOURCE = f"{GROUP_VERSION}/dtabs"
KIND = "DTab"
#: attempts of an upsert (PUT without If-Match) against concurrent writers
PUT_ATTEMPTS = 5


@dataclass
class K8sStorageConfig:
    """Linkerd's ``io.l5d.k8s`` storage keys."""

    host: Optional[str] = None
    port: Optional[int] = field(default=None, metadata={"min": 1, "max": 65535})
    namespace: str = "default"


def to_object(ns: str, dtab: Dtab, version: Optional[str] = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": ns}
    if version is not None:
        md["resourceVersion"] = version
    return {"apiVersion": GROUP_VERSION, "kind": KIND, "metadata": md,
            "dentries": [{"prefix": d.prefix.show(), "dst": d.dst.show()} for d in dtab.dentries]}


def from_object(obj: dict[str, Any]) -> VersionedDtab:
    """The stored dtab of a DTab object; DtabStoreError naming it for garbage."""
    md = obj.get("metadata") or {}
    name, version = md.get("name"), md.get("resourceVersion")
    if not version:
        raise DtabStoreError(f"DTab {name!r} has no metadata.resourceVersion")
    entries = obj.get("dentries") or []
    try:
        if not isinstance(entries, list):
            raise ValueError("dentries is not a list")
        text = ";".join(f"{e['prefix']}=>{e['dst']}" for e in entries)
        dtab = Dtab.read(text)
    except (DtabSyntaxError, ValueError, KeyError, TypeError) as e:
        raise DtabStoreError(f"DTab {name!r} holds an invalid dtab: {e}") from None
    return VersionedDtab(dtab, str(version).encode("utf-8"))


class K8sDtabStore(ObservedDtabStore):
    kind = "io.l5d.k8s"
    config_class = K8sStorageConfig

    def __init__(self, api: K8sApi, namespace: str = "default", max_backoff_s: float = 5.0) -> None:
        self.api = api
        self.namespace = namespace
        self.collection = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/dtabs"
        self.watch = CollectionWatch(api, RESOURCE, namespace, max_backoff_s=max_backoff_s)
        self._observed = Observed(lambda ns: PENDING, self._start_ns, self._stop_ns)
        self._subs: dict[str, Closable] = {}
        self._list_var: ListVar = Var.lazy(PENDING, start_stop(self._start_list, self._stop_list))
        self._list_sub: Optional[Closable] = None

    @classmethod
    def from_config(cls, config: K8sStorageConfig, runtime: Any = None) -> "K8sDtabStore":
        return cls(make_api(config.host, config.port), config.namespace)

    async def close(self) -> None:
        for sub in list(self._subs.values()):
            sub.close()
        self._subs.clear()
        if self._list_sub is not None:
            self._list_sub.close()
            self._list_sub = None
        if self.watch.running:
            self.watch._stop()
        await self.api.close()

    # API calls ------------------------------------------------------------------------------
    def _named(self, ns: str) -> str:
        return f"{self.collection}/{ns}"

    async def _call(self, method: str, path: str, body: Optional[dict[str, Any]] = None, ns: str = "") -> dict[str, Any]:
        """One API call; K8sApiError for statuses the caller handles, the storage
        contract's exceptions for the rest."""
        try:
            if method == "GET":
                return await self.api.get(path)
            return await self.api.send(method, path, body)
        except K8sApiError as e:
            if e.status in (401, 403):
                raise Forbidden(f"the Kubernetes API denied access to {path}: {e.message}") from None
            if e.status == 422:
                raise InvalidNamespace(f"invalid namespace {ns!r} for Kubernetes: {e.message}") from None
            if e.status == 404 and path == self.collection:
                raise StorageUnavailable(
                    f"{path} not found: is the dtabs.l5d.io custom resource definition installed in the "
                    f"cluster (Linkerd's namerd/examples/k8s/3rdparty.yaml)?") from None
            if e.status in (404, 409):
                raise
            raise StorageUnavailable(str(e)) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise StorageUnavailable(f"Kubernetes API {self.api.base_url} unavailable: {e or type(e).__name__}") \
                from None

    async def _get(self, ns: str) -> Optional[dict[str, Any]]:
        try:
            return await self._call("GET", self._named(ns), ns=ns)
        except K8sApiError as e:
            if e.status == 404:
                return None
            raise StorageUnavailable(str(e)) from None

    # DtabStore API -------------------------------------------------------------------------
    async def list(self) -> list[str]:
        doc = await self._call("GET", self.collection)
        return sorted(str(o["metadata"]["name"]) for o in doc.get("items") or [] if (o.get("metadata") or {}).get("name"))

    async def get(self, ns: str) -> Optional[VersionedDtab]:
        check_namespace(ns)
        obj = await self._get(ns)
        return from_object(obj) if obj is not None else None

    async def create(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        try:
            await self._call("POST", self.collection, to_object(ns, dtab), ns)
        except K8sApiError as e:
            if e.status == 409:
                raise NamespaceAlreadyExists(ns) from None
            raise StorageUnavailable(str(e)) from None

    async def update(self, ns: str, dtab: Dtab, version: bytes) -> None:
        check_namespace(ns)
        try:
            rv = version.decode("utf-8")
        except UnicodeDecodeError:
            rv = ""
        if not rv.isdigit():  # not a version this store handed out
            if await self._get(ns) is None:
                raise NamespaceNotFound(ns)
            raise VersionMismatch(ns)
        try:
            await self._call("PUT", self._named(ns), to_object(ns, dtab, rv), ns)
        except K8sApiError as e:
            if e.status == 404:
                raise NamespaceNotFound(ns) from None
            raise VersionMismatch(ns) from None  # 409 Conflict: someone wrote since

    async def put(self, ns: str, dtab: Dtab) -> None:
        check_namespace(ns)
        for _ in range(PUT_ATTEMPTS):
            cur = await self._get(ns)
            try:
                if cur is None:
                    await self._call("POST", self.collection, to_object(ns, dtab), ns)
                else:
                    rv = str((cur.get("metadata") or {}).get("resourceVersion") or "")
                    await self._call("PUT", self._named(ns), to_object(ns, dtab, rv), ns)
                return
            except K8sApiError:
                continue  # created, changed or deleted concurrently: read again
        raise VersionMismatch(ns)

    async def delete(self, ns: str) -> None:
        check_namespace(ns)
        try:
            await self._call("DELETE", self._named(ns), None, ns)
        except K8sApiError as e:
            if e.status == 404:
                raise NamespaceNotFound(ns) from None
            raise StorageUnavailable(str(e)) from None

    # observations ---------------------------------------------------------------------------
    def _ns_state(self, ns: str, objects: Any) -> NsState:
        if not isinstance(objects, dict):  # PENDING until the first list
            return PENDING
        obj = objects.get(ns)
        if obj is None:
            return Ok(None)
        try:
            return Ok(from_object(obj))
        except DtabStoreError as e:
            return Failed(e)

    def _start_ns(self, ns: str, var: NsVar) -> None:
        def on_objects(objects: Any) -> None:
            st = self._ns_state(ns, objects)
            if st is not PENDING:
                var.update(st)

        self._subs[ns] = self.watch.state.observe(on_objects)

    def _stop_ns(self, ns: str, var: NsVar) -> None:
        sub = self._subs.pop(ns, None)
        if sub is not None:
            sub.close()

    def _start_list(self) -> None:
        def on_objects(objects: Any) -> None:
            if objects is not PENDING:
                self._list_var.update(Ok(tuple(sorted(objects))))

        self._list_sub = self.watch.state.observe(on_objects)

    def _stop_list(self) -> None:
        sub, self._list_sub = self._list_sub, None
        if sub is not None:
            sub.close()

    def admin_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "apiServer": self.api.base_url, "namespace": self.namespace,
                "watch": self.watch.admin_state()}
