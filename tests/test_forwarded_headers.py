"""Server keys ``timestampHeader`` and ``addForwardedHeader`` (RFC 7239 ``Forwarded`` with
Linkerd's ``by``/``for`` labelers), through real HTTP/1.1 and HTTP/2 routers to real
backends that report what they received (requests sent with curl)."""
from __future__ import annotations

import json
import re
import time

import pytest

from namerouter.config.schema import loads_linker
from namerouter.proxy import ServerConfig
from namerouter.proxy.forwarded import AddForwardedHeaderConfig, LabelerConfig
from namerouter.proxy.h2.config import H2ServerConfig
from tests.support.backends import Backend, RouterHarness, curl
from tests.support.h2 import H2Backend, H2Harness, curl_h2, header
from tests.support.ports import free_port

RANDOM = re.compile(r"_[A-Za-z0-9]{6}")


def fwd(by: str, for_: str, label: str | None = None) -> AddForwardedHeaderConfig:
    return AddForwardedHeaderConfig(by=LabelerConfig(by, label if by == "static" else None),
                                    for_=LabelerConfig(for_, label if for_ == "static" else None))


def server(**keys) -> list[ServerConfig]:
    return [ServerConfig(port=free_port(), **keys)]


async def echo(port: int, *args: str) -> dict:
    rc, out, err = await curl(*args, "-H", "Host: web", f"http://127.0.0.1:{port}/echo")
    assert rc == 0, err
    return json.loads(out)


def values(req: dict, name: str) -> list[str]:
    return [v for n, v in req["headers"] if n.lower() == name.lower()]


async def test_timestamp_header_carries_the_time_of_receipt_in_ms():
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}",
                                                  servers=server(timestampHeader="X-Request-Start")) as h:
        before = int(time.time() * 1000)
        req = await echo(h.port)
        after = int(time.time() * 1000)
        (stamp,) = values(req, "x-request-start")
        assert before <= int(stamp) <= after


async def test_without_the_keys_nothing_is_added():
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}") as h:
        req = await echo(h.port)
        assert not values(req, "forwarded") and not values(req, "x-request-start")


async def test_forwarded_ip_port_and_ip_appended_after_the_clients_own():
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}",
                                                  servers=server(addForwardedHeader=fwd("ip:port", "ip"))) as h:
        req = await echo(h.port, "-H", "Forwarded: for=192.0.2.60")
        got = values(req, "forwarded")
        assert got[0] == "for=192.0.2.60"
        assert got[1] == f'by="127.0.0.1:{h.port}";for=127.0.0.1;host=web'


async def test_forwarded_proto_from_an_absolute_target_and_static_labels():
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", label="edge",
                                                  servers=server(addForwardedHeader=fwd("router", "static",
                                                                                        "lb1"))) as h:
        rc, out, err = await curl("-x", f"http://127.0.0.1:{h.port}", "http://web/echo")
        assert rc == 0, err
        (got,) = values(json.loads(out), "forwarded")
        assert got == "by=_edge;for=_lb1;host=web;proto=http"


async def test_random_labels_per_request_and_per_connection():
    cfg = AddForwardedHeaderConfig(by=LabelerConfig("connectionRandom"), for_=None)  # for: requestRandom
    async with Backend("web") as b, RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}",
                                                  servers=server(addForwardedHeader=cfg)) as h:
        url = f"http://127.0.0.1:{h.port}/echo"
        # two requests on one connection (curl reuses it), then one on another
        rc, out, err = await curl("-H", "Host: web", url, "--next", "-H", "Host: web", url)
        assert rc == 0, err
        first, second = (json.loads("{" + part) if not part.startswith("{") else json.loads(part)
                         for part in _split_json(out))
        third = await echo(h.port)
        labels = [dict(kv.split("=", 1) for kv in values(r, "forwarded")[0].split(";")) for r in
                  (first, second, third)]
        for lab in labels:
            assert RANDOM.fullmatch(lab["by"]) and RANDOM.fullmatch(lab["for"]), lab
        assert labels[0]["by"] == labels[1]["by"] != labels[2]["by"]
        assert len({lab["for"] for lab in labels}) == 3


def _split_json(out: str) -> list[str]:
    depth, start, parts = 0, 0, []
    for i, c in enumerate(out):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                parts.append(out[start:i + 1])
    return parts


async def test_h2_router_adds_lower_case_forwarded_and_timestamp():
    servers = [H2ServerConfig(port=free_port(), addForwardedHeader=fwd("ip:port", "ip:port"),
                              timestampHeader="X-Request-Start")]
    async with H2Backend("b1") as b, H2Harness(f"/svc/web => /$/inet/127.1/{b.port}", servers=servers) as h:
        rc, out, err = await curl_h2("-H", "Host: web", f"http://127.0.0.1:{h.port}/echo")
        assert rc == 0, err
        req = b.last
        fw = header(req, "forwarded")
        assert fw is not None and re.fullmatch(
            rf'by="127\.0\.0\.1:{h.port}";for="127\.0\.0\.1:\d+";authority=web;proto=http', fw), fw
        assert abs(int(header(req, "x-request-start")) - time.time() * 1000) < 60_000


def test_config_errors_name_the_key():
    base = "routers:\n- protocol: http\n  servers:\n  - port: 4140\n"
    with pytest.raises(Exception, match="static labeler needs a label"):
        loads_linker(base + "    addForwardedHeader: {by: {kind: static}}\n")
    with pytest.raises(Exception, match="unknown kind|choices|expected one of"):
        loads_linker(base + "    addForwardedHeader: {for: {kind: nope}}\n")
    with pytest.raises(Exception, match="not an HTTP header name"):
        loads_linker(base + "    timestampHeader: 'x request'\n")
    cfg = loads_linker(base + "    addForwardedHeader:\n      by: {kind: static, label: linkerd}\n      for: {kind: ip}\n"
                       "    timestampHeader: X-Request-Start\n")
    s = cfg.config.routers[0].servers[0]
    assert s.addForwardedHeader.for_.kind == "ip" and s.addForwardedHeader.by.label == "linkerd"
