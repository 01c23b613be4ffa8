"""Admin HTTP server (aiohttp): ping, metrics (JSON, Prometheus), config, shutdown
(``app``), metrics export (``metrics_export``) and the router's delegator and
namer/client state (``linker_routes``). ``build_admin_app`` is shared with namerd."""
from .app import AdminServer, build_admin_app, json_response

__all__ = ["AdminServer", "build_admin_app", "json_response"]
