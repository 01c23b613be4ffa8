"""Telemeters (Linkerd's ``telemetry:`` block) other than ``io.l5d.prometheus``, which the
admin server serves itself: one module per kind, registered in ``plugins.TELEMETERS``.

A telemeter is built with ``cls.from_config(config, runtime)`` and has ``admin_routes``
(``(method, path, handler)`` for the admin server), ``async start()`` and ``async close()``.
The router (``linker.py``) builds them before its admin server starts.
"""
