"""Transformer plugins (registered in ``namerouter/plugins.py``); the base classes and the
``/%/`` id prefixing are in ``namerouter.naming.transform``."""
