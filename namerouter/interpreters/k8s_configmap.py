"""Interpreter kind ``io.l5d.k8s.configMap``: the default interpreter with its dtab kept
in a key of a Kubernetes ConfigMap (Linkerd's ConfigMapInterpreterConfig)::

    interpreter:
      kind: io.l5d.k8s.configMap
      experimental: true
      name: dtabs            # the ConfigMap
      filename: my-dtab      # its key holding the dtab
      namespace: default
      host: localhost        # kubectl proxy (as the io.l5d.k8s namer)
      port: 8001

The ConfigMap is followed by list-then-watch (``k8s/watch.py``) while the router binds
names, so ``kubectl apply`` of a new dtab is in the routing as soon as the API says so.
As in Linkerd: a ConfigMap or key that does not exist (or is deleted) is the empty dtab;
a value that does not parse keeps the last good dtab. Bindings use
``<ConfigMap dtab> ++ <router dtab> ++ <request dtab>``. State:
``/interpreter_state/io.l5d.k8s.configmap.json`` (Linkerd's path).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..k8s.watch import MISSING, ObjectWatch
from ..namers.k8s import make_api
from ..naming.transform import build_transformers
from ..naming.var import PENDING, Activity, Closable
from .default import interpreter_options, register_metrics
from .dtab_source import DtabSourceInterpreter, DtabText, register_admin_route

KIND = "io.l5d.k8s.configMap"


@dataclass
class ConfigMapInterpreterConfig:
    name: str
    filename: str
    namespace: str = "default"
    host: Optional[str] = None
    port: Optional[int] = field(default=None, metadata={"min": 1, "max": 65535})
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class ConfigMapInterpreter(DtabSourceInterpreter):
    kind = KIND
    config_class = ConfigMapInterpreterConfig

    def __init__(self, watch: ObjectWatch, filename: str, **kwargs: Any) -> None:
        self.watch = watch
        self.filename = filename
        self._obs: Optional[Closable] = None
        self.source = DtabText(f"ConfigMap {watch.namespace}/{watch.name} key {filename}",
                               self._start_watch, self._stop_watch)
        super().__init__(Activity(self.source), **kwargs)

    @classmethod
    def from_config(cls, config: ConfigMapInterpreterConfig, runtime: Any = None) -> "ConfigMapInterpreter":
        watch = ObjectWatch(make_api(config.host, config.port), "configmaps", config.namespace, config.name)
        interp = cls(watch, config.filename, transformers=build_transformers(config.transformers, runtime),
                     **interpreter_options(runtime))
        register_metrics(interp, runtime)
        register_admin_route(runtime, "/interpreter_state/io.l5d.k8s.configmap.json", interp._admin_handler)
        return interp

    def _start_watch(self) -> None:
        if self._obs is None:
            self._obs = self.watch.state.observe(self._on_object)

    def _stop_watch(self) -> None:
        obs, self._obs = self._obs, None
        if obs is not None:
            obs.close()

    def _on_object(self, obj: Any) -> None:
        if obj is PENDING:
            return  # keep whatever we had; the watch is (re)starting
        if obj is MISSING:
            if self.watch.lists == 0:
                return  # the API could not be reached yet: stay pending rather than guess "absent"
            self.source.set_text(None)
            return
        value = (obj.get("data") or {}).get(self.filename)
        self.source.set_text(value if isinstance(value, str) else None)

    def admin_state(self) -> dict[str, Any]:
        st = self.source.admin_state()
        st["watch"] = self.watch.admin_state()
        return st

    async def close(self) -> None:
        self._stop_watch()
        await super().close()
        await self.watch.api.close()
