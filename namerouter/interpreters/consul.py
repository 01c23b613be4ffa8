"""Interpreter kind ``io.l5d.consul.interpreter``: the default interpreter with its dtab
kept in Consul's KV store (Linkerd's ConsulDtabInterpreterConfig) — routing rules
without namerd::

    interpreter:
      kind: io.l5d.consul.interpreter
      host: localhost
      port: 8500
      namespace: default          # the key <pathPrefix>/<namespace>
      pathPrefix: /namerd/dtabs   # namerd's io.l5d.consul store uses the same layout

The key holds the dtab text, as namerd's Consul store writes it, so routers and namerd
can share it. It is followed with blocking queries (``consul/kv_watch.py``) while the
router binds names; a change is in the routing as soon as Consul answers. A missing key
is the empty dtab (Linkerd's behaviour: the router's own ``dtab`` still applies). A
value that does not parse keeps the last good dtab (Linkerd fails the bindings). When
Consul goes away the last dtab stays in force and the watch retries with jittered
backoff (at most ``backoff.maxMs``, default 5 s).

Bindings use ``<Consul dtab> ++ <router dtab> ++ <request dtab>``. State:
``/interpreter_state/io.l5d.consul.interpreter.json`` (Linkerd's path; a second router
with this interpreter gets ``/<router>/interpreter_state/…``).
"""
from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any, Optional

from ..consul.client import CONSISTENCY_MODES, ConsulClient, ConsulResponse
from ..consul.kv_watch import follow_key
from ..naming.transform import build_transformers
from ..naming.var import Activity
from ..namers.consul import ConsulTls, _tls_context
from .default import interpreter_options, register_metrics
from .dtab_source import DtabSourceInterpreter, DtabText, register_admin_route

KIND = "io.l5d.consul.interpreter"


@dataclass
class ConsulInterpreterConfig:
    host: str = "localhost"
    port: int = field(default=8500, metadata={"min": 1, "max": 65535})
    pathPrefix: str = "/namerd/dtabs"
    namespace: str = "default"
    token: Optional[str] = None
    datacenter: Optional[str] = None
    readConsistencyMode: Optional[str] = field(default=None, metadata={"choices": CONSISTENCY_MODES})
    #: accepted for compatibility: this interpreter never writes
    writeConsistencyMode: Optional[str] = field(default=None, metadata={"choices": CONSISTENCY_MODES})
    failFast: bool = False
    backoff: Optional[dict[str, Any]] = None
    tls: Optional[ConsulTls] = None
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


class ConsulInterpreter(DtabSourceInterpreter):
    kind = KIND
    config_class = ConsulInterpreterConfig

    def __init__(self, client: ConsulClient, key: str, datacenter: Optional[str] = None,
                 consistency: Optional[str] = None, max_backoff_s: float = 5.0, wait: Optional[str] = None,
                 **kwargs: Any) -> None:
        self.client = client
        self.key = key.strip("/")
        self.datacenter = datacenter
        self.consistency = None if consistency == "default" else consistency
        self.max_backoff_s = max_backoff_s
        self.wait = wait
        self.errors = 0
        self.last_error: Optional[str] = None
        self._task: Optional[asyncio.Task[None]] = None
        self.source = DtabText(f"consul key {self.key}", self._start_watch, self._stop_watch)
        super().__init__(Activity(self.source), **kwargs)

    @classmethod
    def from_config(cls, config: ConsulInterpreterConfig, runtime: Any = None) -> "ConsulInterpreter":
        tls = config.tls
        client = ConsulClient(config.host, config.port, token=config.token,
                              scheme="https" if tls is not None else "http",
                              ssl=_tls_context(tls) if tls is not None else None)
        max_ms = (config.backoff or {}).get("maxMs")
        interp = cls(client, f"{config.pathPrefix.strip('/')}/{config.namespace}", config.datacenter,
                     config.readConsistencyMode, float(max_ms) / 1000 if max_ms else 5.0,
                     transformers=build_transformers(config.transformers, runtime), **interpreter_options(runtime))
        register_metrics(interp, runtime)
        register_admin_route(runtime, f"/interpreter_state/{KIND}.json", interp._admin_handler)
        return interp

    # the KV watch ---------------------------------------------------------------------
    def _start_watch(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                follow_key(self.client, self.key, self._on_answer, self._on_error, wait=self.wait,
                           consistency=self.consistency, dc=self.datacenter, max_backoff_s=self.max_backoff_s),
                name=f"{KIND}:{self.key}")

    def _stop_watch(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    def _on_answer(self, rsp: ConsulResponse) -> None:
        if rsp.status == 404:
            self.source.set_text(None)
            return
        entries = rsp.json() or []
        raw = entries[0].get("Value") if entries and isinstance(entries[0], dict) else None
        try:
            text = base64.b64decode(raw).decode("utf-8") if raw else ""
        except (ValueError, UnicodeDecodeError):
            text = "\x00"  # not text: fails to parse, keeps the last good dtab
        self.source.set_text(text)

    def _on_error(self, e: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"

    def admin_state(self) -> dict[str, Any]:
        st = self.source.admin_state()
        st.update({"consul": self.client.base, "key": self.key, "watching": self._task is not None,
                   "errors": self.errors, "lastError": self.last_error})
        return st

    async def close(self) -> None:
        self._stop_watch()
        await super().close()
        await self.client.close()
