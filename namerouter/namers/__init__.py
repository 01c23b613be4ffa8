"""Namer plugins, one module per kind (registered in ``namerouter/plugins.py``).

A namer resolves ``/#/<prefix>/…`` paths; see ``namerouter.naming.namer.Namer`` for the
contract and ``namerouter.namers.fs`` for the simplest complete example.
"""
