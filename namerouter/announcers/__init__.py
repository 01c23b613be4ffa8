"""Announcers: routers registering their own servers in service discovery.

Wiring in the main job (Linkerd's ``announcers:`` top-level list and each server's
``announce:`` list of paths such as ``/#/io.l5d.serversets/pong``)::

    announcers = build_announcers(config.announcers, runtime)          # once
    ...after router.start():
    handle = await announce_servers(announcers, rcfg.servers, router.bound_ports)
    ...on shutdown, before draining the router:
    await handle.close()                                              # deregister first

:func:`announce_server` does one server.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence, Union

from ..dtab.path import Path


class ServerAnnouncements:
    """Every announcement made for one server; ``await close()`` withdraws them all."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    async def close(self) -> None:
        items, self.items = self.items, []
        for a in items:
            await a.close()


def _as_path(p: Union[str, Path]) -> Path:
    if isinstance(p, Path):
        return p
    return Path.read(p)


async def announce_server(
    announcers: Sequence[Any], announce: Iterable[Union[str, Path]], server_addr: tuple[str, int]
) -> ServerAnnouncements:
    """Announce ``server_addr`` under each path of a server's ``announce`` list.

    Each path goes to the announcer whose ``id_prefix`` (``/#/<prefix>``) it starts with
    (longest prefix wins); the rest of the path is the name. A path no announcer claims
    is a configuration error (ValueError naming the path and the known prefixes).
    """
    done: list[Any] = []
    try:
        for raw in announce:
            path = _as_path(raw)
            matches = [a for a in announcers if path.startswith(a.id_prefix)]
            if not matches:
                known = ", ".join(a.id_prefix.show() for a in announcers) or "none configured"
                raise ValueError(f"announce path {path.show()} matches no announcer (announcers: {known})")
            best = max(matches, key=lambda a: len(a.id_prefix))
            done.append(await best.announce(server_addr, path.drop(len(best.id_prefix))))
    except BaseException:
        for a in done:
            await a.close()
        raise
    return ServerAnnouncements(done)


def build_announcers(configs: Iterable[Any], runtime: Any = None) -> list[Any]:
    """One announcer per ``announcers[]`` config item (kind looked up in plugins.ANNOUNCERS)."""
    from .. import plugins

    out = []
    for cfg in configs:
        cls = plugins.load_for(plugins.ANNOUNCERS, cfg)
        out.append(cls.from_config(cfg, runtime))
    return out


async def announce_servers(
    announcers: Sequence[Any], servers: Sequence[Any], bound: Sequence[tuple[str, int]]
) -> ServerAnnouncements:
    """Announce every server that has an ``announce`` list, at the address it is bound to
    (``bound[i]`` belongs to ``servers[i]``: a configured port 0 is the real port here)."""
    items: list[Any] = []
    try:
        for server, addr in zip(servers, bound):
            paths = getattr(server, "announce", None) or []
            if paths:
                group = await announce_server(announcers, paths, (addr[0], int(addr[1])))
                items.extend(group.items)
    except BaseException:
        for a in items:
            await a.close()
        raise
    return ServerAnnouncements(items)


__all__ = ["announce_server", "announce_servers", "build_announcers", "ServerAnnouncements"]
