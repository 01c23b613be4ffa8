"""Header fields a server adds to every request it forwards: Linkerd's server keys
``timestampHeader`` and ``addForwardedHeader``.

- ``timestampHeader: X-Request-Start``: the time the router received the request, in
  milliseconds since the epoch (Linkerd's TimestampHeaderFilter; New Relic's queue time).
- ``addForwardedHeader: {by: {kind: …}, for: {kind: …}}``: an RFC 7239 ``Forwarded``
  field appended to those the request came with, as Linkerd writes it:
  ``by=<label>;for=<label>`` then ``;host=<Host>`` and ``;proto=<scheme>`` (HTTP/1.1,
  the scheme of an absolute-form target) or ``;authority=<:authority>;proto=<:scheme>``
  (HTTP/2, field name ``forwarded``). ``by`` labels the server's address of the
  connection, ``for`` the client's. Labelers (Linkerd's kinds): ``ip`` (``192.0.2.43``,
  ``"[2001:db8::17]"``), ``ip:port`` (``"192.0.2.43:80"``), ``connectionRandom``
  (``_`` + 6 letters/digits, one per connection), ``requestRandom`` (the default: new for
  each request), ``router`` (``_<router label>``), ``static`` (``_<label>``). An
  unspecified address (``0.0.0.0``) is ``unknown``.

Nothing here runs unless a server sets one of the keys (``AddedHeaders.of`` is None).
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

LABELER_KINDS = ("ip", "ip:port", "connectionRandom", "requestRandom", "router", "static")
_ALPHANUM = string.ascii_letters + string.digits
#: per-process key of the per-connection labels (they must not be guessable)
_SECRET = os.urandom(16)


@dataclass
class LabelerConfig:
    """One ``by``/``for`` labeler; ``label`` only for ``static``."""

    kind: str = field(default="requestRandom", metadata={"choices": LABELER_KINDS})
    label: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind == "static" and not self.label:
            raise ValueError("the static labeler needs a label")
        if self.kind != "static" and self.label is not None:
            raise ValueError(f"label is only for the static labeler, not {self.kind!r}")
        if self.label is not None and not all(c in _ALPHANUM + "._-" for c in self.label):
            # RFC 7239 obfuscated identifiers: ALPHA / DIGIT / "." / "_" / "-"
            raise ValueError(f"label {self.label!r}: only letters, digits, '.', '_' and '-' are allowed")


@dataclass
class AddForwardedHeaderConfig:
    by: Optional[LabelerConfig] = None
    for_: Optional[LabelerConfig] = field(default=None, metadata={"key": "for"})


_TOKEN = frozenset("!#$%&'*+-.^_`|~" + _ALPHANUM)


def check_header_name(name: Optional[str]) -> None:
    """``timestampHeader`` must be an HTTP field name (RFC 7230 token)."""
    if name is not None and (not name or not all(c in _TOKEN for c in name)):
        raise ValueError(f"{name!r} is not an HTTP header name")


def _random_label() -> str:
    return "_" + "".join(secrets.choice(_ALPHANUM) for _ in range(6))


def _ip_label(addr: Any, with_port: bool) -> str:
    """``ip`` / ``ip:port`` labels as Linkerd's ClearIp / ClearIpPort write them."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return "unknown"
    try:
        ip = ipaddress.ip_address(str(addr[0]).split("%")[0])
    except ValueError:
        return "unknown"
    if ip.is_unspecified:
        return "unknown"
    text = f"[{ip}]" if ip.version == 6 else str(ip)
    if with_port:
        return f'"{text}:{int(addr[1])}"'
    return f'"{text}"' if ip.version == 6 else text


def _connection_label(conn: Any) -> str:
    """One random-looking label per connection, without state on the connection: a keyed
    hash of what tells connections apart (peer address and port, opening time, identity)."""
    digest = hashlib.blake2b(repr((conn.remote, conn.born, id(conn))).encode(), key=_SECRET, digest_size=6).digest()
    return "_" + "".join(_ALPHANUM[b % len(_ALPHANUM)] for b in digest)


Labeler = Callable[[Any, Any], str]  # (connection, its address on that side) -> label


def _labeler(cfg: Optional[LabelerConfig], router_label: str) -> Labeler:
    kind = cfg.kind if cfg is not None else "requestRandom"
    if kind == "ip":
        return lambda conn, addr: _ip_label(addr, False)
    if kind == "ip:port":
        return lambda conn, addr: _ip_label(addr, True)
    if kind == "connectionRandom":
        return lambda conn, addr: _connection_label(conn)
    if kind == "router" or kind == "static":
        text = router_label if kind == "router" else str(cfg.label if cfg is not None else "")
        static = text if text.startswith("_") else "_" + text
        return lambda conn, addr: static
    return lambda conn, addr: _random_label()


class AddedHeaders:
    """The fields one server adds (see the module docstring)."""

    __slots__ = ("timestamp", "by", "for_", "h2")

    def __init__(self, timestamp_header: Optional[str], forwarded: Optional[AddForwardedHeaderConfig],
                 router_label: str, h2: bool) -> None:
        self.h2 = h2
        name = timestamp_header.encode("latin-1") if timestamp_header else None
        self.timestamp: Optional[bytes] = name.lower() if name is not None and h2 else name
        self.by: Optional[Labeler] = None
        self.for_: Optional[Labeler] = None
        if forwarded is not None:
            self.by = _labeler(forwarded.by, router_label)
            self.for_ = _labeler(forwarded.for_, router_label)

    @classmethod
    def of(cls, server_config: Any, router_label: str, h2: bool) -> Optional["AddedHeaders"]:
        ts = getattr(server_config, "timestampHeader", None)
        fwd = getattr(server_config, "addForwardedHeader", None)
        return cls(ts, fwd, router_label, h2) if ts or fwd is not None else None

    def fields(self, head: Any, conn: Any) -> list[tuple[bytes, bytes]]:
        """The fields to add to ``head`` (a request just received on ``conn``)."""
        added: list[tuple[bytes, bytes]] = []
        if self.timestamp is not None:
            added.append((self.timestamp, str(int(time.time() * 1000)).encode()))
        if self.by is not None and self.for_ is not None:
            transport = conn.transport
            local = transport.get_extra_info("sockname") if transport is not None else None
            value = f"by={self.by(conn, local)};for={self.for_(conn, conn.remote)}".encode()
            if self.h2:
                if head.host:
                    value += b";authority=" + head.host
                scheme = getattr(head, "scheme", None)
                if scheme:
                    value += b";proto=" + scheme
                added.append((b"forwarded", value))
            else:
                if head.host is not None:
                    value += b";host=" + head.host
                uri: bytes = getattr(head, "target", None) or head.uri  # as received
                scheme, sep, _ = uri.partition(b"://")
                if sep and scheme.isalpha():
                    value += b";proto=" + scheme
                added.append((b"Forwarded", value))
        return added
