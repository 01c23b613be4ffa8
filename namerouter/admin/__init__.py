"""Admin HTTP server (aiohttp): ping, metrics (JSON, Prometheus), config, shutdown
(``app``), metrics export (``metrics_export``, ``influx_export``), the router's delegator
and namer/client state (``linker_routes``), and the browser UI (``ui``, ``dashboard``,
``static/``). ``build_admin_app`` and the UI helpers are shared with namerd."""
from .app import AdminServer, build_admin_app, json_response

__all__ = ["AdminServer", "build_admin_app", "json_response"]
