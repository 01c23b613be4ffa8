"""Linkerd 2's destination API (``io.linkerd.proxy.destination``), generated modules."""
