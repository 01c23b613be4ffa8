"""``io.l5d.influxdb``: the metrics in InfluxDB's line protocol at
``/admin/metrics/influxdb`` (format: ``namerouter/admin/influx_export.py``). Linkerd's
telemeter has no parameters and neither has this one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from aiohttp import web

from ..admin.influx_export import influx_lines
from ..metrics import MetricsRegistry

PATH = "/admin/metrics/influxdb"


@dataclass
class InfluxDbConfig:
    """``telemetry: [{kind: io.l5d.influxdb}]``."""


class InfluxDbTelemeter:
    config_class = InfluxDbConfig

    def __init__(self, registry: MetricsRegistry, known_ids: Optional[Callable[[], Iterable[str]]] = None) -> None:
        self.registry = registry
        self.known_ids = known_ids
        self.admin_routes = [("GET", PATH, self.handle)]

    @classmethod
    def from_config(cls, config: InfluxDbConfig, runtime: Any) -> "InfluxDbTelemeter":
        return cls(runtime.metrics, getattr(runtime, "known_ids", None))

    async def handle(self, request: web.Request) -> web.Response:
        ids = list(self.known_ids()) if self.known_ids is not None else ()
        text = influx_lines(self.registry, request.headers.get("Host") or "none", ids)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
