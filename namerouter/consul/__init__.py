"""A thin asyncio client for the parts of Consul's HTTP API that namerouter uses.

Why not py-consul's ``consul.aio``: a blocking-query watch has to see the raw
``X-Consul-Index`` header of every answer (missing, going backwards, zero) to apply
Consul's documented reset rules, and it must tell "no path to datacenter" from other
5xx answers. ``consul.aio`` hides the header behind an ``(index, data)`` tuple and has
to be constructed inside a running loop; a few dozen lines of aiohttp are simpler.
"""
from .client import (
    ConsulClient,
    ConsulError,
    ConsulIndexError,
    ConsulResponse,
    NoPathToDatacenter,
    next_index,
)

__all__ = [
    "ConsulClient", "ConsulError", "ConsulIndexError", "ConsulResponse",
    "NoPathToDatacenter", "next_index",
]
