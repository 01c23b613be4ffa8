"""Identifiers: request -> logical name, unit-level and through the running router."""
from __future__ import annotations

import pytest

from namerouter.dtab.path import Path
from namerouter.proxy.config import IdentifierConfig
from namerouter.proxy.errors import Unidentified
from namerouter.proxy.identifiers import build_identifier
from namerouter.proxy.h1.heads import parse_request
from namerouter.proxy.message import RequestHead
from tests.support.backends import Backend, RouterHarness, get, request


def head(uri: bytes = b"/", host: bytes | None = b"web", method: bytes = b"GET", version: str = "1.1",
         headers: dict[bytes, bytes] | None = None) -> RequestHead:
    """The head as the HTTP/1.1 codec reads it from these bytes."""
    lines = [b"%b %b HTTP/%b" % (method, uri, version.encode())]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [k + b": " + v for k, v in (headers or {}).items()]
    return parse_request(b"\r\n".join(lines) + b"\r\n\r\n")


def ident(*configs: IdentifierConfig, prefix: str = "/svc"):
    return build_identifier(list(configs) or [IdentifierConfig()], prefix)


def test_header_token_is_one_label_and_keeps_the_port():
    i = ident()
    assert i.identify(head(host=b"web:8080")) == (Path.read("/svc/web:8080"), None)
    assert i.identify(head(host=b"web")) == (Path.read("/svc/web"), None)
    with pytest.raises(Unidentified, match="Host header is absent"):
        i.identify(head(host=None))
    j = ident(IdentifierConfig(kind="io.l5d.header.token", header="X-Svc"), prefix="/http")
    assert j.identify(head(headers={b"X-Svc": b"books"}))[0] == Path.read("/http/books")


def test_path_identifier_segments_and_consume():
    i = ident(IdentifierConfig(kind="io.l5d.path", segments=2))
    assert i.identify(head(b"/a/b/c?x=1")) == (Path.read("/svc/a/b"), None)
    with pytest.raises(Unidentified, match="fewer than 2"):
        i.identify(head(b"/a"))
    c = ident(IdentifierConfig(kind="io.l5d.path", segments=1, consume=True))
    assert c.identify(head(b"/books/1/2?q=3")) == (Path.read("/svc/books"), b"/1/2?q=3")
    assert c.identify(head(b"/books")) == (Path.read("/svc/books"), b"/")
    assert c.identify(head(b"/books?q")) == (Path.read("/svc/books"), b"/?q")


def test_method_and_host():
    i = ident(IdentifierConfig(kind="io.l5d.methodAndHost"))
    assert i.identify(head(b"/x/y", host=b"Web.Example", method=b"POST"))[0] == Path.read("/svc/1.1/POST/web.example")
    assert i.identify(head(b"/x", host=None, version="1.0"))[0] == Path.read("/svc/1.0/GET")
    u = ident(IdentifierConfig(kind="io.l5d.methodAndHost", httpUriInDst=True))
    assert u.identify(head(b"/x/y?z", host=b"web"))[0] == Path.read("/svc/1.1/GET/web/x/y")


def test_header_path_and_static():
    i = ident(IdentifierConfig(kind="io.l5d.header"))
    assert i.identify(head(headers={b"l5d-name": b"/books/v2"}))[0] == Path.read("/svc/books/v2")
    with pytest.raises(Unidentified, match="l5d-name"):
        i.identify(head())
    with pytest.raises(Unidentified, match="not a path"):
        i.identify(head(headers={b"l5d-name": b"not a path"}))
    s = ident(IdentifierConfig(kind="io.l5d.static", path="/fixed/one"))
    assert s.identify(head())[0] == Path.read("/svc/fixed/one")


def test_identifier_list_first_success_wins_and_reasons_are_combined():
    i = ident(IdentifierConfig(kind="io.l5d.header", header="X-Name"), IdentifierConfig(kind="io.l5d.header.token"))
    assert i.identify(head(headers={b"X-Name": b"/a"}))[0] == Path.read("/svc/a")
    assert i.identify(head())[0] == Path.read("/svc/web")
    with pytest.raises(Unidentified) as e:
        i.identify(head(host=None))
    assert "io.l5d.header: X-Name header" in str(e.value) and "io.l5d.header.token: Host" in str(e.value)


def test_bad_identifier_config_names_the_key():
    with pytest.raises(ValueError, match=r"identifier.path: required"):
        ident(IdentifierConfig(kind="io.l5d.static"))
    with pytest.raises(ValueError, match="known: io.l5d.header.token"):
        ident(IdentifierConfig(kind="io.l5d.nope"))


async def test_path_identifier_with_consume_through_the_router():
    async with Backend("books") as b, RouterHarness(
        f"/svc/books => /$/inet/127.1/{b.port}",
        identifier=[IdentifierConfig(kind="io.l5d.path", segments=1, consume=True), IdentifierConfig()],
    ) as h:
        r = await request(h.port, get("/books/echo?x=1", host="whatever"))
        assert r.json()["uri"] == "/echo?x=1"
        assert b.last.header("l5d-dst-service") == "/svc/books"
        # falls back to the Host header when the path names nothing routable
        r = await request(h.port, get("/", host="books"))
        assert r.status == 200 and b.last.header("l5d-dst-service") == "/svc/books"


async def test_custom_dst_prefix_and_method_and_host_through_the_router():
    async with Backend("web") as b, RouterHarness(
        f"/http/1.1/GET/web => /$/inet/127.1/{b.port}",
        dstPrefix="/http", identifier=IdentifierConfig(kind="io.l5d.methodAndHost"),
    ) as h:
        assert (await request(h.port, get("/pong", host="web"))).body == b"pong"
        r = await request(h.port, get("/pong", host="web", method="DELETE"))
        assert r.status == 502 and "/http/1.1/DELETE/web" in r.body.decode()
