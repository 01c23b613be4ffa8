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
from ..naming.bound import BoundName
from ..naming.interpreter import DefaultInterpreter
from ..naming.reactive import flat_map
from ..naming.var import PENDING, Activity, ActivityState, Failed, Ok, Var

log = logging.getLogger(__name__)


class DtabSourceInterpreter(DefaultInterpreter):
    def __init__(self, dtab_activity: Activity[Dtab], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dtab_activity: Activity[Dtab] = dtab_activity
        # Outer bindings (local dtab, path) → follow the source.
        self.outer = BindingCache(max_size=self.cache.max_size, idle_ttl=self.cache.idle_ttl)

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[BoundName]]:
        inner_bind = super().bind
        return self.outer.get(
            (dtab, path), lambda: flat_map(self.dtab_activity, lambda base: inner_bind(base + dtab, path)))

    async def delegate(self, dtab: Dtab, path: Path, timeout: float = 2.0) -> dict:
        base = await self.dtab_activity.wait_ok(timeout)
        return await super().delegate(base + dtab, path, timeout=timeout)

    async def _admin_handler(self, request: Any) -> Any:
        """The JSON of :meth:`admin_state` (subclasses define it), for the admin server."""
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


class DtabText(Var[ActivityState[Dtab]]):
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

    _lazy = True

    def _first_observed(self) -> None:
        self._start_hook()

    def _last_unobserved(self) -> None:
        self._stop_hook()

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
