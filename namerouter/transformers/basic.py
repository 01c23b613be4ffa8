"""Linkerd's generic transformers: ``io.l5d.port``, ``io.l5d.localhost``,
``io.l5d.specificHost``, ``io.l5d.replace``, ``io.l5d.const``.

Configured under an interpreter's or a namer's ``transformers:`` list::

    interpreter:
      kind: default
      transformers:
      - kind: io.l5d.port
        port: 4141

Every transformed bound id is prefixed with ``/%/<prefix>`` (default prefix: the kind,
plus the port for io.l5d.port), e.g. ``/%/io.l5d.port/4141/#/io.l5d.fs/web``; each
config accepts Linkerd's optional ``prefix`` key to change it.
"""
from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Self

from ..dtab.dtab import Dtab
from ..dtab.path import Path
from ..dtab.tree import NameTree
from ..naming import dns
from ..naming.addr import Addr, AddrBound, Address
from ..naming.bound import BoundName
from ..naming.reactive import map_activity
from ..naming.transform import (
    AddrMappingTransformer,
    FilteringTransformer,
    NameTreeTransformer,
    replace_leaves,
    transformer_prefix,
)
from ..naming.var import Activity


# io.l5d.port ---------------------------------------------------------------------------

@dataclass
class PortTransformerConfig:
    port: int = field(metadata={"min": 1, "max": 65535, "doc": "send every address to this port"})
    prefix: Optional[str] = None


class PortTransformer(AddrMappingTransformer):
    """Rewrites the port of every address (linker-to-linker: to the peer's incoming router)."""

    kind = "io.l5d.port"
    config_class = PortTransformerConfig

    def __init__(self, port: int, prefix: Optional[Path] = None) -> None:
        super().__init__(prefix if prefix is not None else transformer_prefix(f"/io.l5d.port/{port}", None))
        self.port = int(port)

    @classmethod
    def from_config(cls, config: PortTransformerConfig, runtime: Any = None) -> "PortTransformer":
        return cls(config.port, transformer_prefix(f"/io.l5d.port/{config.port}", config.prefix))

    def map_addr(self, addr: Addr) -> Addr:
        if isinstance(addr, AddrBound):
            return AddrBound([a.with_port(self.port) for a in addr.addrs], addr.meta)
        return addr


# io.l5d.localhost / io.l5d.specificHost -------------------------------------------------

_SIOCGIFADDR = 0x8915


def local_ips() -> set[str]:
    """This host's IP addresses: every interface's IPv4 and IPv6 address, plus what the
    host name resolves to (Linkerd walks the up interfaces, loopback included)."""
    ips: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # down or without IPv4
            ips.add(socket.inet_ntoa(res[20:24]))
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                h = line.split()[0]
                ips.add(str(ipaddress.IPv6Address(bytes.fromhex(h))))
    except OSError:
        pass
    try:
        ips.update(dns.resolve_blocking(socket.gethostname()))
    except (OSError, dns.UnknownHost):
        pass
    return ips


@dataclass
class LocalhostTransformerConfig:
    prefix: Optional[str] = None


class _HostFilter(FilteringTransformer):
    def __init__(self, prefix: Path, ips: Iterable[str]) -> None:
        super().__init__(prefix)
        self.ips = frozenset(dns.ip_literal(i) or i for i in ips)

    def keep(self, address: Address) -> bool:
        return (dns.ip_literal(address.host) or address.host) in self.ips


class LocalhostTransformer(_HostFilter):
    """Keeps only addresses that are this host's (an incoming router serving local apps)."""

    kind = "io.l5d.localhost"
    config_class = LocalhostTransformerConfig

    def __init__(self, prefix: Optional[Path] = None, ips: Optional[Iterable[str]] = None) -> None:
        super().__init__(prefix if prefix is not None else transformer_prefix("/io.l5d.localhost", None),
                         local_ips() if ips is None else ips)

    @classmethod
    def from_config(cls, config: LocalhostTransformerConfig, runtime: Any = None) -> "LocalhostTransformer":
        return cls(transformer_prefix("/io.l5d.localhost", config.prefix))


@dataclass
class SpecificHostTransformerConfig:
    host: str = field(metadata={"doc": "keep only addresses of this host (IP or name)"})
    prefix: Optional[str] = None


class SpecificHostTransformer(_HostFilter):
    """Keeps only the addresses of one host (given as an IP or a name, resolved once)."""

    kind = "io.l5d.specificHost"
    config_class = SpecificHostTransformerConfig

    def __init__(self, host: str, prefix: Optional[Path] = None) -> None:
        try:
            ips = dns.resolve_blocking(host)
        except (OSError, dns.UnknownHost) as e:
            raise ValueError(f"io.l5d.specificHost: cannot resolve host {host!r}: {e}") from e
        super().__init__(prefix if prefix is not None else transformer_prefix("/io.l5d.specificHost", None), ips)
        self.host = host

    @classmethod
    def from_config(cls, config: SpecificHostTransformerConfig, runtime: Any = None) -> "SpecificHostTransformer":
        return cls(config.host, transformer_prefix("/io.l5d.specificHost", config.prefix))


# io.l5d.replace / io.l5d.const -----------------------------------------------------------

@dataclass
class ReplaceTransformerConfig:
    path: str = field(metadata={"doc": "bind this path and use it in place of every bound name"})
    prefix: Optional[str] = None


@dataclass
class ConstTransformerConfig:
    path: str = field(metadata={"doc": "bind this path and use it in place of the whole tree"})
    prefix: Optional[str] = None


class _PathBinding(NameTreeTransformer):
    """Binds a fixed path once (empty dtab: system namers and the configured namers, a
    superset of Linkerd, which only has the system namers there) and keeps it live."""

    delegating = False

    def __init__(self, prefix: Path, path: Path, namers: Iterable[Any] = ()) -> None:
        super().__init__(prefix)
        self.path = path
        from ..naming.interpreter import DefaultInterpreter

        interp = DefaultInterpreter(list(namers))
        bound = interp._bind_uncached(Dtab(), path, interp.budget)
        new_id = prefix + path
        self.bound: Activity[NameTree[BoundName]] = map_activity(
            bound, lambda t: t.map(lambda b: BoundName(new_id, b.addr, b.residual)))
        # Hold it observed: the replacement is shared by every tree this transformer sees.
        self._hold = self.bound.observe(lambda _: None)

    @classmethod
    def _build(cls, config: Any, runtime: Any, default_prefix: str) -> Self:
        try:
            path = Path.read(config.path)
        except Exception as e:
            raise ValueError(f"{cls.kind}: invalid path {config.path!r}: {e}") from e
        return cls(transformer_prefix(default_prefix, config.prefix), path, getattr(runtime, "namers", ()) or ())


class ReplaceTransformer(_PathBinding):
    """Every bound leaf becomes the binding of ``path``; ``~``, ``!``, ``$`` stay as they are."""

    kind = "io.l5d.replace"
    config_class = ReplaceTransformerConfig

    @classmethod
    def from_config(cls, config: ReplaceTransformerConfig, runtime: Any = None) -> "ReplaceTransformer":
        return cls._build(config, runtime, "/io.l5d.replace")

    def transform(self, tree: NameTree[BoundName]) -> Activity[NameTree[BoundName]]:
        return map_activity(self.bound, lambda repl: replace_leaves(tree, repl))


class ConstTransformer(_PathBinding):
    """The whole tree becomes the binding of ``path``, whatever it was (Neg included)."""

    kind = "io.l5d.const"
    config_class = ConstTransformerConfig

    @classmethod
    def from_config(cls, config: ConstTransformerConfig, runtime: Any = None) -> "ConstTransformer":
        return cls._build(config, runtime, "/io.l5d.const")

    def transform(self, tree: NameTree[BoundName]) -> Activity[NameTree[BoundName]]:
        return self.bound
