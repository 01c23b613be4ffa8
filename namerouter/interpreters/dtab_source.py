"""The default interpreter with a live base dtab from somewhere else: the shared part of
the ``io.l5d.fs`` (file), ``io.l5d.consul.interpreter`` (Consul KV) and
``io.l5d.k8s.configMap`` (ConfigMap key) interpreters — Linkerd's ConfiguredDtabNamer.

Bindings use ``<source dtab> ++ <router dtab> ++ <request dtab>``: the source plays the
part namerd's namespace plays for ``io.l5d.namerd.http``. Every binding follows the
source: when its dtab changes, every bound name is re-bound (inner bindings are cached
by DefaultInterpreter per (source dtab ++ local dtab, path)). While the source is
pending, bindings are pending; while it has failed (e.g. a dtab that does not parse),
they fail with its message.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from ..dtab.dtab import Dtab
from ..dtab.errors import DtabSyntaxError
from ..dtab.path import Path
from ..dtab.tree import NameTree
from ..naming.binding_cache import BindingCache
from ..naming.bound import BoundName, same_tree_state
from ..naming.interpreter import DefaultInterpreter
from ..naming.reactive import flat_map
from ..naming.var import PENDING, Activity, ActivityState, Closable, Failed, LazyVar, Ok

log = logging.getLogger(__name__)


class DtabSourceInterpreter(DefaultInterpreter):
    def __init__(self, dtab_activity: Activity[Dtab], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dtab_activity: Activity[Dtab] = dtab_activity
        # Outer bindings (local dtab, path) → follow the source.
        self.outer = BindingCache(max_size=self.cache.max_size, idle_ttl=self.cache.idle_ttl)

    def bind(self, dtab: Dtab, path: Path, *, from_request: bool = False) -> Activity[NameTree[BoundName]]:
        inner_bind = super().bind

        def bind_on(base: Dtab) -> Activity[NameTree[BoundName]]:
            return inner_bind(base + dtab, path, from_request=from_request)

        return self.outer.get((dtab, path, from_request),
                              lambda: flat_map(self.dtab_activity, bind_on, same_tree_state))

    async def delegate(self, dtab: Dtab, path: Path, timeout: float = 2.0, *,
                       from_request: bool = False) -> dict[str, Any]:
        base = await self.dtab_activity.wait_ok(timeout)
        return await super().delegate(base + dtab, path, timeout=timeout, from_request=from_request)

    def admin_state(self) -> dict[str, Any]:
        """What the kind's ``/interpreter_state/<kind>.json`` shows (kinds that serve one
        say what they watch)."""
        raise NotImplementedError(f"{type(self).__name__} has no admin state")

    async def _admin_handler(self, request: Any) -> Any:
        """The JSON of :meth:`admin_state`, for the admin server."""
        import aiohttp.web

        return aiohttp.web.json_response(self.admin_state())

    def cache_stats(self) -> dict[str, Any]:
        s = super().cache_stats()
        s["outer"] = self.outer.stats()
        return s

    async def close(self) -> None:
        self.outer.clear()
        await super().close()


def register_admin_route(runtime: Any, path: str, handler: Callable[..., Any]) -> None:
    """Serve ``handler`` at Linkerd's ``path`` on the admin server; a second router with the
    same interpreter kind gets ``/<router label><path>``."""
    routes = getattr(runtime, "admin_routes", None)
    if isinstance(routes, list):
        if any(r[1] == path for r in routes):
            path = f"/{getattr(runtime, 'router_label', '')}{path}"
        routes.append(("GET", path, handler))


class DtabText(LazyVar[ActivityState[Dtab]]):
    """A dtab kept as text somewhere (a Consul key, a ConfigMap key), as an Activity state.

    ``start``/``stop`` run the backend watch while somebody observes; the watch calls
    :meth:`set_text` with each value (None = the key does not exist = the empty dtab, as
    Linkerd). A text that does not parse keeps the last good dtab (logged and shown in
    :meth:`admin_state`); with no good dtab yet, bindings fail with the parser's message.
    """

    __slots__ = ("where", "_start_hook", "_stop_hook", "error", "text", "updates")

    def __init__(self, where: str, start: Callable[[], None], stop: Callable[[], None]) -> None:
        super().__init__(PENDING)
        self.where = where
        self._start_hook = start
        self._stop_hook = stop
        self.error: Optional[str] = None
        self.text: Optional[str] = None
        self.updates = 0

    def start(self) -> Closable:
        """The backend watch runs while somebody observes (see :class:`LazyVar`)."""
        self._start_hook()
        return Closable(self._stop_hook)

    def set_text(self, text: Optional[str]) -> None:
        self.updates += 1
        self.text = text
        try:
            dtab = Dtab.read(text or "")
        except DtabSyntaxError as e:
            self.error = f"{self.where}: invalid dtab at line {e.line}: {e}"
            if isinstance(self.sample(), Ok):
                log.error("%s; still using the last good dtab", self.error)
                return
            self.update(Failed(DtabSyntaxError(self.error, e.text, e.offset)))
            return
        self.error = None
        self.update(Ok(dtab))

    def admin_state(self) -> dict[str, Any]:
        st = self.sample()
        return {
            "source": self.where,
            "state": "pending" if st is PENDING else ("ok" if isinstance(st, Ok) else "failed"),
            "dtab": st.value.show() if isinstance(st, Ok) else None,
            "error": self.error,
            "updates": self.updates,
        }
