"""Host name resolution for namers: IP literals at once, names through the event loop.

Finagle resolves ``/$/inet`` hosts with its InetResolver (DNS, re-polled periodically);
the fs namer resolves the host names written in its files. Both use this module so a
name is resolved the same way everywhere: ``loop.getaddrinfo`` (a thread, never
blocking the loop), TCP, both address families, IPv4 first (as Java does by default).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Optional


def ip_literal(host: str) -> Optional[str]:
    """The canonical text of ``host`` if it is an IP literal, else None.

    IPv4 accepts the classic shortened forms Java's ``InetAddress`` accepts
    (``127.1`` is ``127.0.0.1``), decimal parts only. IPv6 may be bracketed.
    """
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return str(ipaddress.IPv6Address(h))
        except ValueError:
            return None
    parts = h.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(h))
    except OSError:
        return None


class UnknownHost(Exception):
    """The name does not exist in DNS (not a transient failure)."""


async def resolve(host: str) -> list[str]:
    """All addresses of ``host`` (literal → itself), IPv4 before IPv6, no duplicates.

    Raises :class:`UnknownHost` when the name does not exist and ``OSError`` for other
    resolver failures.
    """
    lit = ip_literal(host)
    if lit is not None:
        return [lit]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise UnknownHost(f"unknown host {host!r}") from e
        raise
    return _order(infos)


def resolve_blocking(host: str) -> list[str]:
    """Same as :func:`resolve` for code that runs without an event loop (CLI tools)."""
    lit = ip_literal(host)
    if lit is not None:
        return [lit]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise UnknownHost(f"unknown host {host!r}") from e
        raise
    return _order(infos)


def _order(infos: list[Any]) -> list[str]:
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    seen: dict[str, None] = {}
    for a in v4 + v6:
        seen.setdefault(a, None)
    return list(seen)
