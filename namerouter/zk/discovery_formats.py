"""Two more things instances write into ZooKeeper, and how we read them.

**Curator service discovery** (Apache Curator's ``curator-x-discovery``, what
``io.l5d.curator`` reads): under ``<basePath>/<service name>`` one child per instance,
named by the instance id, whose data is the JSON Curator's ``JsonInstanceSerializer``
writes::

    {"name": "users", "id": "2c8a…", "address": "10.0.0.7", "port": 8080,
     "sslPort": null, "payload": null, "registrationTimeUTC": 1700000000000,
     "serviceType": "DYNAMIC", "uriSpec": null}

The address used is ``address`` with ``sslPort`` when it is set, else ``port`` (as
Linkerd). ``payload`` is ignored, whatever class it names (Linkerd needs that class on
its classpath and fails otherwise).

**Leader groups** (Twitter commons ``Group``/``CandidateImpl``, what
``io.l5d.zkLeader`` reads): candidates are ephemeral sequential children
``member_<seq>`` of the group znode; the leader is the lowest member (the oldest
candidate), and its data names the leader's address(es) as text, ``host:port``
entries separated by commas or spaces (Finagle's ``InetSocketAddressUtil.parseHosts``).
Our extension: leader data that is a serverset member document (what Aurora-style
singleton services write) is read too, its ``serviceEndpoint`` being the address.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from .serverset_format import Endpoint, MalformedMember, parse_member


@dataclass(frozen=True)
class CuratorInstance:
    id: str
    endpoint: Endpoint
    ssl: bool


def _port(value: object, what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise MalformedMember(f"{what}: expected an integer 1-65535 or null, got {value!r}")
    return value


def parse_curator_instance(data: bytes) -> CuratorInstance:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedMember(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MalformedMember("expected a JSON object (a Curator ServiceInstance)")
    address = doc.get("address")
    if not isinstance(address, str) or not address:
        raise MalformedMember(f"address: expected a non-empty string, got {address!r}")
    port, ssl_port = _port(doc.get("port"), "port"), _port(doc.get("sslPort"), "sslPort")
    if port is None and ssl_port is None:
        raise MalformedMember("neither port nor sslPort is set")
    chosen = ssl_port if ssl_port is not None else port
    assert chosen is not None
    return CuratorInstance(str(doc.get("id") or ""), Endpoint(address, chosen), ssl_port is not None)


_HOSTS_SPLIT = re.compile(r"[\s,]+")


def parse_leader_data(data: bytes) -> tuple[Endpoint, ...]:
    """The leader's endpoints from a group member's data (see the module docstring)."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedMember("leader data is not UTF-8 text") from None
    if text.startswith("{"):
        return (parse_member(data).service,)
    out = []
    for item in [h for h in _HOSTS_SPLIT.split(text) if h]:
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise MalformedMember(f"leader data {item!r}: expected host:port")
        out.append(Endpoint(host, int(port)))
    if not out:
        raise MalformedMember("leader data is empty: expected host:port")
    return tuple(out)
