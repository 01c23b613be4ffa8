"""The serverset member format (Twitter/Finagle/Aurora), both directions.

A serverset is a znode; each live instance is an ephemeral sequential child named
``member_<seq>`` whose data is JSON::

    {"serviceEndpoint": {"host": "10.0.4.17", "port": 31000},
     "additionalEndpoints": {"http": {"host": "10.0.4.17", "port": 31001}},
     "status": "ALIVE", "shard": 3}

:func:`member_json` writes it (the announcers), :func:`parse_member` reads it (the namer),
so both sides agree on one definition.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

MEMBER_PREFIX = "member_"

HostPort = Union[tuple[str, int], str]


class MalformedMember(ValueError):
    """A ``member_*`` znode whose data is not a usable serverset entry."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class Member:
    service: Endpoint
    additional: tuple[tuple[str, Endpoint], ...]
    status: str
    shard: Optional[int]

    def endpoint(self, name: Optional[str]) -> Optional[Endpoint]:
        if name is None:
            return self.service
        for n, ep in self.additional:
            if n == name:
                return ep
        return None


def _endpoint(doc: Any, where: str) -> Endpoint:
    if not isinstance(doc, dict):
        raise MalformedMember(f"{where}: expected an object with host and port")
    host, port = doc.get("host"), doc.get("port")
    if not isinstance(host, str) or not host:
        raise MalformedMember(f"{where}.host: expected a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise MalformedMember(f"{where}.port: expected an integer 1-65535, got {port!r}")
    return Endpoint(host, port)


def parse_member(data: bytes) -> Member:
    """Parse one member's JSON; raises MalformedMember naming the bad field."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedMember(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MalformedMember("expected a JSON object")
    service = _endpoint(doc.get("serviceEndpoint"), "serviceEndpoint")
    extra = doc.get("additionalEndpoints") or {}
    if not isinstance(extra, dict):
        raise MalformedMember("additionalEndpoints: expected an object")
    additional = tuple(sorted((str(k), _endpoint(v, f"additionalEndpoints.{k}")) for k, v in extra.items()))
    status = doc.get("status", "UNKNOWN")
    if not isinstance(status, str):
        raise MalformedMember(f"status: expected a string, got {status!r}")
    shard = doc.get("shard")
    if shard is not None and (isinstance(shard, bool) or not isinstance(shard, int)):
        raise MalformedMember(f"shard: expected an integer, got {shard!r}")
    return Member(service, additional, status, shard)


def _host_port(value: HostPort, what: str) -> tuple[str, int]:
    host: object
    raw_port: object
    if isinstance(value, str):
        host, sep, raw_port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{what}: expected HOST:PORT, got {value!r}")
    else:
        host, raw_port = value
    try:
        port = int(raw_port)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: port {raw_port!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{what}: port must be 1-65535, got {port}")
    if not host:
        raise ValueError(f"{what}: empty host")
    return str(host), port


def member_json(
    host: str,
    port: int,
    endpoints: Optional[Mapping[str, HostPort]] = None,
    shard: Optional[int] = None,
    status: str = "ALIVE",
) -> bytes:
    """The serverset member document (the format Finagle's and Linkerd's announcers write)."""
    host, port = _host_port((host, port), "serviceEndpoint")
    doc: dict[str, Any] = {
        "serviceEndpoint": {"host": host, "port": port},
        "additionalEndpoints": {},
        "status": status,
    }
    for name, ep in (endpoints or {}).items():
        if not name or "/" in name:
            raise ValueError(f"additional endpoint name {name!r} is not valid")
        h, p = _host_port(ep, f"additionalEndpoints.{name}")
        doc["additionalEndpoints"][name] = {"host": h, "port": p}
    if shard is not None:
        if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
            raise ValueError(f"shard must be a non-negative integer, got {shard!r}")
        doc["shard"] = shard
    return json.dumps(doc, separators=(",", ":")).encode()


