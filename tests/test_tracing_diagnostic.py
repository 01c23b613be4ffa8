"""Diagnostic TRACE: Linkerd's decision table for Max-Forwards / l5d-add-context, and the
router-context block built from a real interpreter's delegation (the expected text is
Linkerd's HttpEndToEndTest "prints out human readable dtab resolution path")."""
from __future__ import annotations

import pytest

from namerouter.dtab import Dtab, Path
from namerouter.naming.interpreter import DefaultInterpreter
from namerouter.tracing.diagnostic import (
    ANSWER, BAD_MAX_FORWARDS, BAD_REQUEST, CHUNKED_PLACEHOLDER, FORWARD, PASS, append_context, chunked_placeholder,
    plan, resolution_steps, router_context,
)


@pytest.mark.parametrize("method,mf,ctx,action,out_mf,add", [
    (b"GET", b"5", b"true", PASS, None, False),
    (b"TRACE", None, None, PASS, None, False),
    (b"TRACE", b"31qe", b"true", BAD_REQUEST, None, False),
    (b"TRACE", b"99999999999", None, BAD_REQUEST, None, False),
    (b"TRACE", b"0", None, ANSWER, None, False),
    (b"TRACE", b"0", b"true", ANSWER, None, True),
    (b"TRACE", b"5", b"true", FORWARD, 4, True),
    (b"TRACE", b"1", b"TRUE", FORWARD, 0, True),
    (b"TRACE", b"1", b"1", FORWARD, 0, True),
    (b"TRACE", b"3", None, FORWARD, 2, False),
    (b"TRACE", b"3", b"no", FORWARD, 2, False),
    (b"TRACE", None, b"true", FORWARD, None, True),
    (b"TRACE", b"-1", b"true", PASS, None, False),
])
def test_decision_table(method, mf, ctx, action, out_mf, add):
    p = plan(method, mf, ctx)
    assert (p.action, p.max_forwards, p.add_context) == (action, out_mf, add)
    assert BAD_MAX_FORWARDS == "Invalid value for Max-Forwards header"


async def test_context_block_with_a_real_delegation():
    port = 8080
    dtab = Dtab.read(f"/srv => /$/inet/127.1/{port}; /svc => /srv;")
    interp = DefaultInterpreter([])
    try:
        text = await router_context(interp, dtab, Path.read("/svc/dog"), f"/$/inet/127.1/{port}",
                                    [f"127.0.0.1:{port}"], f"127.0.0.1:{port}", "outgoing", 3)
    finally:
        close = getattr(interp, "close", None)
        if close is not None:
            r = close()
            if hasattr(r, "__await__"):
                await r
    assert text == (
        "--- Router: outgoing ---\n"
        "request duration: 3 ms\n"
        "service name: /svc/dog\n"
        f"client name: /$/inet/127.1/{port}\n"
        f"addresses: [127.0.0.1:{port}]\n"
        f"selected address: 127.0.0.1:{port}\n"
        "dtab resolution:\n"
        "  /svc/dog\n"
        "  /srv/dog (/svc=>/srv)\n"
        f"  /$/inet/127.1/{port}/dog (/srv=>/$/inet/127.1/{port})\n")


def test_resolution_through_alt_union_and_transformation():
    leaf = {"type": "leaf", "path": "/#/io.l5d.fs/web", "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
            "bound": {"addr": {"type": "neg"}, "id": "/%/io.l5d.port/4141/#/io.l5d.fs/web", "path": "/"}}
    tree = {"type": "alt", "path": "/svc/web", "alt": [
        {"type": "neg", "path": "~"},
        {"type": "union", "path": "/svc/web", "dentry": {"prefix": "/svc", "dst": "3 * /a & 1 * /b"}, "union": [
            {"weight": 3.0, "tree": {"type": "fail", "path": "!"}},
            {"weight": 1.0, "tree": {"type": "transformation", "path": "/#/io.l5d.fs/web", "name": "io.l5d.port",
                                     "bound": {}, "tree": leaf}},
        ]},
    ]}
    steps = resolution_steps(tree, "/%/io.l5d.port/4141/#/io.l5d.fs/web")
    assert steps == [("/svc/web", ""), ("/svc/web", "/svc=>3 * /a & 1 * /b"),
                     ("/#/io.l5d.fs/web", "/svc=>/#/io.l5d.fs"), ("/#/io.l5d.fs/web", "io.l5d.port")]
    assert resolution_steps(tree, "/#/other") is None


async def test_an_interpreter_that_cannot_delegate_still_gives_the_rest():
    class NoDelegation:
        async def delegate(self, dtab, path):
            raise RuntimeError("cannot show delegations")

    text = await router_context(NoDelegation(), Dtab.read(""), Path.read("/svc/x"), "/#/x", None, "", "r", 0)
    assert "client name: /#/x\naddresses: []\nselected address: \ndtab resolution:\n" in text


def test_bodies():
    assert append_context(b"response from downstream\n", "--- Router: r ---\n") == \
        b"response from downstream\n\n--- Router: r ---\n"
    body = chunked_placeholder(["Transfer-Encoding: chunked"], 200, "OK")
    assert body == b"Transfer-Encoding: chunked\nHTTP 200 - OK\n" + CHUNKED_PLACEHOLDER.encode()
