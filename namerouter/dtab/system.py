"""System namers (``/$/…``): their pure rewrite rules, written once.

Finagle's ``Namer.global`` and Linkerd's ``io.buoyant.*`` system namers, reduced to what
they decide from the path alone (no DNS, no sockets). Both offline binding
(:mod:`.offline`) and the live interpreter (``namerouter.naming``) call :func:`lookup`;
the live side turns a :class:`SystemBound` into a real address set.

``lookup(path)`` returns a NameTree whose leaves are either

* a :class:`~namerouter.dtab.path.Path` — a rewritten name that must be bound again
  through the dtab (the ``RewritingNamer`` family: hostportPfx, domainToPath, …), or
* a :class:`SystemBound` — terminal: an ``inet`` address (host may still need resolving)
  or a fixed-status service (``io.buoyant.http.status``);

``FAIL`` for ``/$/fail…``, ``EMPTY`` for ``/$/nil…``, ``NEG`` for every path that is not
``/$/<kind>/…`` and for a system namer that does not accept the rest of the path. A
``/$/<kind>`` whose kind is unknown raises :class:`~.errors.UnknownNamer` (Finagle would
fail to load the class ``<kind>``).

Like Finagle (``Path.Utf8``), labels are decoded as UTF-8 for matching; labels copied
from the input keep their bytes.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import BindingError, UnknownNamer
from .path import Path
from .tree import EMPTY, FAIL, NEG, Leaf, NameTree

SYSTEM_LABEL = b"$"


@dataclass(frozen=True)
class SystemBound:
    """A terminal leaf produced by a system namer.

    ``id`` is the bound id Finagle/Linkerd would give (``/$/inet/<host>/<port>``,
    ``/$/io.buoyant.rinet/<port>/<host>``, ``/$/io.buoyant.http.status/<code>``) and
    ``residual`` the rest of the path. ``kind`` is ``"inet"`` (``host``/``port`` set;
    ``host == ""`` means localhost, as in ``/$/inet/<port>``) or ``"status"``
    (``status`` set). ``show()`` prints the full path ``id ++ residual`` so offline
    bind output keeps the residual visible.
    """

    id: Path
    residual: Path = field(default_factory=Path)
    kind: str = "inet"
    host: Optional[str] = None
    port: Optional[int] = None
    status: Optional[int] = None

    @property
    def full_path(self) -> Path:
        return self.id + self.residual

    def show(self) -> str:
        return self.full_path.show()

    def __str__(self) -> str:
        return self.show()


# Java helpers ------------------------------------------------------------------------

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def java_parse_int(s: str) -> Optional[int]:
    """``java.lang.Integer.parseInt`` (what Scala's ``s.toInt`` calls), or None.

    Accepts one leading ``+``/``-`` and Unicode decimal digits; 32-bit range.
    """
    if not s:
        return None
    neg = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    if not body:
        return None
    value = 0
    for c in body:
        d = unicodedata.decimal(c, None)
        if d is None:
            return None
        value = value * 10 + d
    value = -value if neg else value
    if value < _INT_MIN or value > _INT_MAX:
        return None
    return value


def java_split(s: str, sep: str) -> list[str]:
    """``String.split`` with a literal one-char separator: trailing empty strings dropped."""
    parts = s.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    if not parts and s == "":
        return [""]
    return parts


def _u(label: bytes) -> str:
    return label.decode("utf-8", "replace")


def _utf8_path(labels: list[str]) -> Optional[Path]:
    """``Path.Utf8(labels…)``; None when a label would be empty (our Path forbids it)."""
    if any(l == "" for l in labels):
        return None
    return Path(l.encode("utf-8") for l in labels)


# Linkerd's io.buoyant rewriting namers (namer/core/src/main/scala/io/buoyant/*.scala) ---

_HOST = re.compile(r"[A-Za-z0-9.:_-]+")
_METHOD = re.compile(r"[A-Z]+")
_DNS_LABEL = re.compile(r"[a-z0-9][-a-z0-9]*[a-z0-9]?")


def _host_colon_port(s: str) -> Optional[tuple[str, str]]:
    parts = java_split(s, ":")
    if len(parts) == 2 and _DNS_LABEL.fullmatch(parts[1]) and len(parts[1]) <= 63:
        return parts[0], parts[1]
    return None


def _drop_port(hostname: str) -> str:
    idx = hostname.find(":")
    return hostname[:idx] if idx > 0 else hostname


def _subdomain(domain: str, hostname: str) -> Optional[str]:
    sfx = "." + domain
    host = _drop_port(hostname)
    if host.endswith(sfx):
        sub = host[: len(host) - len(sfx)]
        return sub or None
    return None


def _rw_any_method(p: Path) -> Optional[Path]:
    if _METHOD.fullmatch(_u(p[0])):
        return p.drop(1)
    return None


def _rw_any_method_pfx(p: Path) -> Optional[Path]:
    if len(p) >= 2 and _METHOD.fullmatch(_u(p[1])):
        return _utf8_path([_u(p[0])]) + p.drop(2)  # type: ignore[operator]
    return None


def _rw_any_host(p: Path) -> Optional[Path]:
    if _HOST.fullmatch(_u(p[0])):
        return p.drop(1)
    return None


def _rw_any_host_pfx(p: Path) -> Optional[Path]:
    if len(p) >= 2 and _HOST.fullmatch(_u(p[1])):
        return _utf8_path([_u(p[0])]) + p.drop(2)  # type: ignore[operator]
    return None


def _rw_subdomain_of(p: Path) -> Optional[Path]:
    if len(p) >= 2:
        domain, host = _u(p[0]), _u(p[1])
        if _HOST.fullmatch(domain) and _HOST.fullmatch(host):
            sub = _subdomain(domain, host)
            if sub is not None:
                return _utf8_path([sub]) + p.drop(2)  # type: ignore[operator]
    return None


def _rw_subdomain_of_pfx(p: Path) -> Optional[Path]:
    if len(p) >= 3:
        domain, pfx, host = _u(p[0]), _u(p[1]), _u(p[2])
        if _HOST.fullmatch(domain) and _HOST.fullmatch(host):
            sub = _subdomain(domain, host)
            if sub is not None:
                return _utf8_path([pfx, sub]) + p.drop(3)  # type: ignore[operator]
    return None


def _rw_domain_to_path(p: Path) -> Optional[Path]:
    host = _u(p[0])
    if _HOST.fullmatch(host):
        rev = _utf8_path(list(reversed(java_split(host, "."))))
        return None if rev is None else rev + p.drop(1)
    return None


def _rw_domain_to_path_pfx(p: Path) -> Optional[Path]:
    if len(p) >= 2:
        host = _u(p[1])
        if _HOST.fullmatch(host):
            rev = _utf8_path([_u(p[0])] + list(reversed(java_split(host, "."))))
            return None if rev is None else rev + p.drop(2)
    return None


def _rw_hostport_pfx(p: Path) -> Optional[Path]:
    if len(p) >= 2:
        hp = _host_colon_port(_u(p[1]))
        if hp is not None:
            rw = _utf8_path([_u(p[0]), hp[0], hp[1]])
            return None if rw is None else rw + p.drop(2)
    return None


def _rw_porthost_pfx(p: Path) -> Optional[Path]:
    if len(p) >= 2:
        hp = _host_colon_port(_u(p[1]))
        if hp is not None:
            rw = _utf8_path([_u(p[0]), hp[1], hp[0]])
            return None if rw is None else rw + p.drop(2)
    return None


#: ``/$/<class name>`` -> rewrite of the rest (Linkerd's RewritingNamer: an empty rest is NEG).
REWRITING_NAMERS: dict[str, Callable[[Path], Optional[Path]]] = {
    "io.buoyant.hostportPfx": _rw_hostport_pfx,
    "io.buoyant.porthostPfx": _rw_porthost_pfx,
    "io.buoyant.http.anyMethod": _rw_any_method,
    "io.buoyant.http.anyMethodPfx": _rw_any_method_pfx,
    "io.buoyant.http.anyHost": _rw_any_host,
    "io.buoyant.http.anyHostPfx": _rw_any_host_pfx,
    "io.buoyant.http.subdomainOf": _rw_subdomain_of,
    "io.buoyant.http.subdomainOfPfx": _rw_subdomain_of_pfx,
    "io.buoyant.http.domainToPath": _rw_domain_to_path,
    "io.buoyant.http.domainToPathPfx": _rw_domain_to_path_pfx,
}

RINET = "io.buoyant.rinet"
STATUS = "io.buoyant.http.status"
GLOBAL = "com.twitter.finagle.namer.global"

#: Every ``/$/<kind>`` this module knows (inet, fixedinet, fail, nil and the classes).
KNOWN_KINDS = frozenset({"inet", "fixedinet", "fail", "nil", RINET, STATUS, GLOBAL, *REWRITING_NAMERS})


def _rinet(path: Path, rest: Path) -> NameTree[Any]:
    # /$/io.buoyant.rinet/<port>/<host>[/residual]  ==  /$/inet/<host>/<port>[/residual]
    if len(rest) < 2:
        return NEG
    port_s, host = _u(rest[0]), _u(rest[1])
    port = java_parse_int(port_s)
    if port is None:
        # Finagle's InetResolver rejects "inet!host:port" with a non-integer port.
        raise BindingError(f'For input string: "{port_s}"')
    ident = Path([b"$", RINET.encode()]) + rest.take(2)
    return Leaf(SystemBound(ident, rest.drop(2), "inet", host, port))


def _status(path: Path, rest: Path) -> NameTree[Any]:
    # /$/io.buoyant.http.status/<code>[/residual]: a service that always answers <code>.
    if not rest:
        return NEG
    code = java_parse_int(_u(rest[0]))
    if code is None or not 100 <= code < 600:
        return NEG
    return Leaf(SystemBound(path.take(3), rest.drop(1), "status", status=code))


def lookup(path: Path) -> NameTree[Any]:
    """One lookup by the system namers (Finagle's ``Namer.global`` + Linkerd's classes).

    See the module docstring for the shape of the answer. Raises
    :class:`~.errors.UnknownNamer` for ``/$/<kind>`` with an unknown kind.
    """
    labels = path.labels
    if len(labels) < 2 or labels[0] != SYSTEM_LABEL:
        return NEG
    kind = _u(labels[1])
    if kind in ("inet", "fixedinet"):
        # /$/inet/<host>/<port>/<rest…> first, then /$/inet/<port>/<rest…> (localhost).
        if len(labels) >= 4:
            port = java_parse_int(_u(labels[3]))
            if port is not None:
                residual = _utf8_path([_u(l) for l in labels[4:]]) or Path()
                return Leaf(SystemBound(path.take(4), residual, "inet", _u(labels[2]), port))
        if len(labels) >= 3:
            port = java_parse_int(_u(labels[2]))
            if port is not None:
                residual = _utf8_path([_u(l) for l in labels[3:]]) or Path()
                return Leaf(SystemBound(path.take(3), residual, "inet", "", port))
        # No integer port: Finagle tries to load a Namer class named "inet" and fails.
        raise UnknownNamer(kind, path.show())
    if kind == "fail":
        return FAIL
    if kind == "nil":
        return EMPTY
    rest = path.drop(2)
    rewrite = REWRITING_NAMERS.get(kind)
    if rewrite is not None:
        if not rest:
            return NEG
        out = rewrite(rest)
        return NEG if out is None else Leaf(out)
    if kind == RINET:
        return _rinet(path, rest)
    if kind == STATUS:
        return _status(path, rest)
    if kind == GLOBAL:
        return lookup(rest)
    raise UnknownNamer(kind, path.show())


__all__ = ["SystemBound", "lookup", "java_parse_int", "KNOWN_KINDS", "REWRITING_NAMERS"]
