"""ZooKeeper access shared by the serversets namer, the announcers and namerd's ZK storage.

One kazoo session per ensemble and event loop (:class:`ZkSession`), bridged into asyncio
so that nothing ever blocks the loop.
"""
from .session import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    CONNECTION_ERRORS,
    EXPIRED,
    SUSPENDED,
    ZkSession,
    normalize_hosts,
)

__all__ = [
    "ZkSession", "normalize_hosts", "CONNECTION_ERRORS",
    "CONNECTING", "CONNECTED", "SUSPENDED", "EXPIRED", "CLOSED",
]
