"""``io.l5d.serversets`` announcer: the router registers its own servers in ZooKeeper.

Linkerd config::

    announcers:
    - kind: io.l5d.serversets
      zkAddrs: [{host: 127.0.0.1, port: 2181}]
      pathPrefix: /discovery           # default
    routers:
    - servers:
      - port: 4141
        announce: [/#/io.l5d.serversets/pong]

The server's announce path is matched against the announcer's id prefix
``/#/<prefix>`` (default ``/#/io.l5d.serversets``); the rest (``/pong``) is appended to
``pathPrefix``, giving the serverset ``/discovery/pong``. The member JSON is the one
Linkerd's announcer writes: ``serviceEndpoint`` = the server's address, shard 0, ALIVE.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Optional

from ..announce import Announcer
from ..dtab.path import Path
from ..namers.serversets import ZkAddr, _path_of
from ..zk.session import DEFAULT_SESSION_TIMEOUT_MS, normalize_hosts

log = logging.getLogger("namerouter.announcers.serversets")

KIND = "io.l5d.serversets"
WILDCARD_IPS = ("", "0.0.0.0", "::", "0:0:0:0:0:0:0:0")


@dataclass
class ServersetsAnnouncerConfig:
    zkAddrs: list[ZkAddr] = field(metadata={"min_items": 1})
    pathPrefix: str = "/discovery"
    prefix: str = "/" + KIND
    sessionTimeoutMs: int = field(default=DEFAULT_SESSION_TIMEOUT_MS, metadata={"min": 100})


async def announce_host(ip: str) -> str:
    """The address to publish for a server bound to ``ip``: a wildcard bind publishes
    this host's own address (resolved off the loop), falling back to loopback."""
    if ip not in WILDCARD_IPS:
        return ip
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(socket.gethostname(), None, family=socket.AF_INET, type=socket.SOCK_STREAM)
        for info in infos:
            addr = str(info[4][0])
            if not addr.startswith("127."):
                return addr
        if infos:
            return str(infos[0][4][0])
    except OSError:
        pass
    return "127.0.0.1"


class Announcement:
    """One server registered under one name; ``close()`` withdraws it."""

    def __init__(self, owner: "ServersetsAnnouncer", announcer: Announcer) -> None:
        self.owner = owner
        self.announcer = announcer

    @property
    def path(self) -> str:
        return self.announcer.path

    @property
    def node(self) -> Optional[str]:
        return self.announcer.node.sample()

    async def wait_registered(self, timeout: Optional[float] = None) -> str:
        return await self.announcer.wait_registered(timeout)

    async def close(self) -> None:
        if self.announcer in self.owner.announcements:
            self.owner.announcements.remove(self.announcer)
        await self.announcer.close()


class ServersetsAnnouncer:
    """Creates one :class:`Announcer` per (server, name) it is asked to announce."""

    kind = KIND
    config_class = ServersetsAnnouncerConfig

    def __init__(
        self,
        zk_hosts: Any,
        path_prefix: str = "/discovery",
        prefix: Optional[Path] = None,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    ) -> None:
        self.zk_hosts = normalize_hosts(zk_hosts)
        if not path_prefix.startswith("/"):
            raise ValueError(f"pathPrefix must start with /, got {path_prefix!r}")
        self.path_prefix = path_prefix.rstrip("/")
        self.prefix = prefix if prefix is not None else Path.of(KIND)
        self.session_timeout_ms = session_timeout_ms
        self.announcements: list[Announcer] = []

    @classmethod
    def from_config(cls, config: ServersetsAnnouncerConfig, runtime: Any = None) -> "ServersetsAnnouncer":
        return cls(
            [(a.host, a.port) for a in config.zkAddrs],
            path_prefix=config.pathPrefix,
            prefix=_path_of(config.prefix),
            session_timeout_ms=config.sessionTimeoutMs,
        )

    @property
    def id_prefix(self) -> Path:
        """``/#/io.l5d.serversets``: announce paths starting with it are ours."""
        return Path([b"#"]) + self.prefix

    def zk_path(self, name: Path) -> str:
        if not len(name):
            raise ValueError(f"announce path {self.id_prefix.show()} names no serverset")
        return self.path_prefix + "/" + "/".join(name.text_labels())

    async def announce(self, server_addr: tuple[str, int], name: Path) -> "Announcement":
        """Register ``server_addr`` under ``pathPrefix + name``; ``await a.close()``
        removes it. Returns at once (registration completes when ZooKeeper answers)."""
        host = await announce_host(server_addr[0])
        ann = Announcer(self.zk_hosts, self.zk_path(name), host, int(server_addr[1]), shard=0,
                        session_timeout_ms=self.session_timeout_ms)
        await ann.start()
        self.announcements.append(ann)
        return Announcement(self, ann)

    def admin_state(self) -> list[dict[str, Any]]:
        return [
            {"path": a.path, "endpoint": a.endpoint, "member": a.node.sample(), "registrations": a.registrations}
            for a in self.announcements
        ]
