"""Addresses the router never forwards to, whatever a dtab says: the servers of the same
router (a loop), the process's admin server, and the namerd it is configured with.

Issue 17: with Linkerd's rules a request dtab (``l5d-dtab: /svc/x => /$/inet/127.1/9990``)
reaches any port the router can, including its own control plane: one ``POST
/admin/shutdown`` through the data port stopped the router. Names and dtabs can reach an
address in many ways (``/$/inet``, a namer, DNS), so the check is made where every way
ends: on each new backend connection, against the address it actually reached
(``connect.py``). A protected address listening on a wildcard (``0.0.0.0``, ``::``) is
reached through any address of this host, which is what a connection to this host shows:
its local and peer addresses are equal (or loopback).

Another router of the same process is not protected: linker-to-linker setups send the
outgoing router's traffic to the local incoming router on purpose.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Optional

from ..naming.dns import ip_literal

log = logging.getLogger("namerouter.proxy")

#: listening addresses that mean "every address of this host"
WILDCARDS = frozenset(("", "0.0.0.0", "::", "*"))


def normalize(host: str) -> str:
    """A comparable form of an IP address (``127.1`` is ``127.0.0.1``, IPv4-mapped IPv6
    becomes IPv4); other text (a name) is returned lower-cased."""
    lit = ip_literal(host.split("%", 1)[0])
    if lit is None:
        return host.strip("[]").lower()
    ip = ipaddress.ip_address(lit)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return lit


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (and ``localhost``)."""
    h = normalize(host)
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class Protected:
    """A set of protected (address, port) pairs, with a parent shared by the process's
    routers (admin, namerd) under each router's own (its servers)."""

    def __init__(self, parent: Optional["Protected"] = None) -> None:
        self.parent = parent
        #: port -> [(normalized address or "*" for a wildcard, what it is)]
        self._by_port: dict[int, list[tuple[str, str]]] = {}

    def add(self, host: str, port: int, what: str) -> None:
        """Protect ``host:port`` (an IP address, a wildcard, or a name already resolved
        by the caller: add each of its addresses)."""
        h = "*" if host in WILDCARDS else normalize(host)
        entries = self._by_port.setdefault(port, [])
        if (h, what) not in entries:
            entries.append((h, what))

    async def add_name(self, host: str, port: int, what: str, timeout: float = 5.0) -> None:
        """Protect ``host:port`` where ``host`` may be a DNS name (each address it resolves
        to now; a name that does not resolve is protected by its text only)."""
        self.add(host, port, what)
        if host in WILDCARDS or ip_literal(host) is not None or host == "":
            return  # an address already
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("cannot resolve %s (%s) to protect it from being routed to: %s", host, what, e)
            return
        for info in infos:
            self.add(str(info[4][0]), port, what)

    def refusal(self, peer: str, port: int, local: Optional[str]) -> Optional[str]:
        """What ``peer:port`` is, if a connection from ``local`` to it reaches a protected
        address; else None."""
        p = normalize(peer)
        for h, what in self._by_port.get(port, ()):
            if h == p:
                return what
            if h == "*" and (is_loopback(p) or (local is not None and normalize(local) == p)):
                return what
        return self.parent.refusal(peer, port, local) if self.parent is not None else None

    def refusal_for(self, transport: Any) -> Optional[str]:
        """The check of a new backend connection (its transport's peer and local address)."""
        if transport is None:
            return None
        peer = transport.get_extra_info("peername")
        if not peer or not isinstance(peer, tuple):
            return None
        sock = transport.get_extra_info("sockname")
        local = sock[0] if isinstance(sock, tuple) and sock else None
        return self.refusal(str(peer[0]), int(peer[1]), local)

    def __bool__(self) -> bool:
        return bool(self._by_port) or bool(self.parent)
