"""List-then-watch of one named Kubernetes object, as an observable value.

The loop follows the API's resourceVersion contract
(https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):

1. list the collection (``fieldSelector=metadata.name=<name>``, plus the configured
   ``labelSelector``); the list's ``metadata.resourceVersion`` is where the watch starts;
2. watch from that version with ``allowWatchBookmarks=true``; every event (bookmarks too)
   moves the version forward; events older than the newest version seen are skipped;
3. the server ends the stream (``timeoutSeconds``, apiserver restart, EOF) → watch again
   from the last version; ``410 Gone`` or an ERROR event with code 410 → list again;
4. anything else (connection refused, 5xx, garbage) → jittered backoff, then watch again
   from the last version (a stale version earns a 410 and a re-list).

The object itself is filtered by name on our side too, so an API server (or proxy)
that ignores ``fieldSelector`` still works. Through all of it the last known object
stays in :attr:`state`; it only changes when the API says the object changed.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Optional

from ..backoff import JitteredBackoff  # the same decorrelated jitter for every watch
from ..naming.var import PENDING, Var, start_stop
from .client import Gone, K8sApi, K8sApiError

log = logging.getLogger(__name__)

#: Value of :attr:`ObjectWatch.state` while the object does not exist.
MISSING = None


def rv_older(candidate: Optional[str], newest: Optional[str]) -> bool:
    """True if resourceVersion ``candidate`` is older than ``newest``.

    resourceVersions are opaque strings, but etcd-backed servers use integers; when both
    parse as integers we can tell old events (replayed after a re-watch) from new ones.
    """
    if not candidate or not newest:
        return False
    if candidate.isdigit() and newest.isdigit():
        return int(candidate) < int(newest)
    return False


class ObjectWatch:
    """``state`` is PENDING (never listed yet), None (no such object) or the object dict.

    Runs only while ``state`` is observed (Var hooks) and stops when the last observer
    leaves, so names nobody routes to cost nothing.
    """

    def __init__(
        self,
        api: K8sApi,
        resource: str,
        namespace: str,
        name: str,
        label_selector: Optional[str] = None,
        max_backoff_s: float = 10.0,
        watch_timeout_s: Optional[int] = None,
    ) -> None:
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self.name = name
        self.label_selector = label_selector
        self.max_backoff_s = max_backoff_s
        # client-go picks a random watch timeout in [5, 10) minutes so a fleet of clients
        # does not reconnect in lockstep; the server ends the stream then and we re-watch.
        self.watch_timeout_s = watch_timeout_s or random.randint(300, 599)
        self.state: Var[Any] = Var.lazy(PENDING, start_stop(self._start, self._stop))
        self.resource_version: Optional[str] = None
        self._task: Optional[asyncio.Task[None]] = None
        self.lists = 0
        self.watches = 0
        self.events = 0
        self.errors = 0
        self.last_error: Optional[str] = None
        self.last_error_at: Optional[float] = None

    @property
    def collection_path(self) -> str:
        """Core (v1) resources; a ``group/version/plural`` resource is a custom resource
        (``/apis/<group>/<version>/namespaces/<ns>/<plural>``)."""
        if "/" in self.resource:
            return f"/apis/{self.resource.rsplit('/', 1)[0]}/namespaces/{self.namespace}/{self.resource.rsplit('/', 1)[1]}"
        return f"/api/v1/namespaces/{self.namespace}/{self.resource}"

    def _params(self) -> dict[str, str]:
        p = {"fieldSelector": f"metadata.name={self.name}"} if self.name is not None else {}
        if self.label_selector:
            p["labelSelector"] = self.label_selector
        return p

    # lifecycle -------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"k8s-watch:{self.resource}/{self.namespace}/{self.name}"
            )

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self.resource_version = None
        self.state.update(PENDING)

    @property
    def running(self) -> bool:
        return self._task is not None

    # the loop ---------------------------------------------------------------------
    def _set(self, obj: Any) -> None:
        self.state.update(obj)

    def _mine(self, obj: Any) -> bool:
        md = (obj or {}).get("metadata") or {}
        return md.get("name") == self.name

    def _apply_list(self, items: list[Any]) -> None:
        self._set(items[0] if items else MISSING)

    def _apply_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._set(obj)
        elif kind == "DELETED":
            self._set(MISSING)

    async def _list(self) -> None:
        doc = await self.api.get(self.collection_path, self._params())
        self.lists += 1
        items = [o for o in (doc.get("items") or []) if self._mine(o)]
        self.resource_version = str(((doc.get("metadata") or {}).get("resourceVersion")) or "") or None
        self._apply_list(items)

    async def _watch_once(self) -> int:
        """One watch stream; returns how many events it delivered. Raises Gone on 410."""
        params = self._params()
        params["allowWatchBookmarks"] = "true"
        params["timeoutSeconds"] = str(self.watch_timeout_s)
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        self.watches += 1
        n = 0
        async for ev in self.api.watch(self.collection_path, params, idle_timeout=self.watch_timeout_s + 30):
            n += 1
            kind = str(ev.get("type"))
            obj = ev.get("object") or {}
            if kind == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                msg = (obj.get("message") if isinstance(obj, dict) else None) or str(obj)
                if code == 410:
                    raise Gone(410, msg, str(obj.get("reason") or "Expired"))
                raise K8sApiError(int(code or 500), msg, str(obj.get("reason") or ""))
            rv = str(((obj.get("metadata") or {}).get("resourceVersion")) or "") or None
            if kind == "BOOKMARK":
                if rv and not rv_older(rv, self.resource_version):
                    self.resource_version = rv
                continue
            if rv_older(rv, self.resource_version):
                continue  # a replay of something we already applied
            if rv:
                self.resource_version = rv
            self.events += 1
            if not self._mine(obj):
                continue
            self._apply_event(kind, obj)
        return n

    def _record(self, err: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(err).__name__}: {err}"
        self.last_error_at = time.time()

    async def _run(self) -> None:
        backoff = JitteredBackoff(0.01, self.max_backoff_s)
        relist = True
        while True:
            try:
                if relist:
                    await self._list()
                    relist = False
                    backoff.reset()
                started = time.monotonic()
                n = await self._watch_once()
                # The stream ended (timeoutSeconds / EOF): watch again from the last version.
                if n == 0 and time.monotonic() - started < 0.05:
                    await asyncio.sleep(backoff.next())  # a server closing at once must not make us spin
                else:
                    backoff.reset()
            except asyncio.CancelledError:
                raise
            except Gone as e:
                self._record(e)
                relist = True  # our version is too old: the only way forward is a fresh list
            except Exception as e:  # connection refused/reset, 5xx, bad JSON ...
                log.debug("k8s watch %s/%s/%s failed: %s", self.resource, self.namespace, self.name, e)
                self._record(e)
                if self.state.sample() is PENDING:
                    # Nothing known yet: say "no such object" (Neg) instead of hanging.
                    self._set(MISSING)
                if self.resource_version is None:
                    relist = True
                await asyncio.sleep(backoff.next())

    def admin_state(self) -> dict[str, Any]:
        st = self.state.sample()
        return {
            "resource": self.resource,
            "namespace": self.namespace,
            "name": self.name,
            "labelSelector": self.label_selector,
            "exists": None if st is PENDING else st is not MISSING,
            "resourceVersion": self.resource_version,
            "running": self.running,
            "lists": self.lists,
            "watches": self.watches,
            "events": self.events,
            "errors": self.errors,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
        }


class CollectionWatch(ObjectWatch):
    """List-then-watch of a whole collection (every object of a resource in a
    namespace): ``state`` is PENDING, then a dict name → object, replaced on every
    change. Same loop, versions and recovery as :class:`ObjectWatch`; a failure before
    the first list leaves the state pending (there is no "missing" for a collection)."""

    def __init__(self, api: K8sApi, resource: str, namespace: str, label_selector: Optional[str] = None,
                 max_backoff_s: float = 10.0, watch_timeout_s: Optional[int] = None) -> None:
        super().__init__(api, resource, namespace, None, label_selector,  # type: ignore[arg-type]
                         max_backoff_s, watch_timeout_s)
        self._objects: dict[str, dict[str, Any]] = {}

    def _mine(self, obj: Any) -> bool:
        return bool(((obj or {}).get("metadata") or {}).get("name"))

    def _apply_list(self, items: list[Any]) -> None:
        self._objects = {o["metadata"]["name"]: o for o in items}
        self._set(dict(self._objects))

    def _apply_event(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind in ("ADDED", "MODIFIED"):
            self._objects[name] = obj
        elif kind == "DELETED":
            self._objects.pop(name, None)
        else:
            return
        self._set(dict(self._objects))

    def _set(self, obj: Any) -> None:
        if obj is MISSING:  # the loop's "nothing known yet" after an error: stay pending
            return
        self.state.update(obj)

    def admin_state(self) -> dict[str, Any]:
        st = super().admin_state()
        st.pop("name", None)
        st["exists"] = None
        st["objects"] = sorted(self._objects)
        return st
