"""Interpreter plugins (registered in ``namerouter/plugins.py``): ``default`` and
``io.l5d.fs`` here, ``io.l5d.namerd.http`` in ``namerd_http.py``."""
