"""Resilience policy for the data plane (Linkerd's ``service`` and ``client`` blocks).

- ``config.py``: the config dataclasses (Linkerd's keys, kinds and defaults);
- ``static_config.py``: ``io.l5d.global`` / ``io.l5d.static`` prefix matching and merging;
- ``classifiers.py``: response classifiers;
- ``retries.py``: Finagle's retry budget and backoffs;
- ``timeouts.py``: total / per-attempt timeouts, ``l5d-ctx-deadline``;
- ``failure_accrual.py``: marking endpoints dead, probing, reviving;
- ``requeue.py``: requeue budget for failures that never reached a server;
- ``runtime.py``: what the routing stages and the request lifecycle call.
"""
from .runtime import ClientPolicy, PolicyTable, RequestPolicy, ServicePolicy

__all__ = ["PolicyTable", "ServicePolicy", "ClientPolicy", "RequestPolicy"]
