"""The JSON behind namerd's dtab editor (namerd/ui.py): versions, If-Match saves that
never overwrite a concurrent change, creation, the dry run over the names a real router
has bound through namerd, input errors and bounds, and ``admin.security``."""
from __future__ import annotations

import json

from namerd.api import version_string
from namerouter.dtab import Dtab
from tests.support.backends import Backend
from tests.support.namerd_ui import http, namerd_with_router, route

DTAB = "application/dtab"


async def test_get_save_with_if_match_and_concurrent_change(tmp_path):
    async with Backend("web") as web, namerd_with_router(tmp_path, {"web": web.port},
                                                           "/svc=>/#/io.l5d.fs") as (nd, base, _):
        status, doc, _ = await http("GET", base + "/admin/dtab/default")
        assert status == 200 and doc == {"namespace": "default", "exists": True,
                                         "dtab": "/svc => /#/io.l5d.fs;\n", "version": "AAAAAAAAAAE="}
        status, doc, _ = await http("GET", base + "/admin/dtab/nope")
        assert status == 404 and doc["exists"] is False

        new = "/svc => /#/io.l5d.fs;\n/svc/api => /svc/web;\n"
        status, doc, _ = await http("PUT", base + "/admin/dtab/default", new,
                                    {"Content-Type": DTAB, "If-Match": "AAAAAAAAAAE="})
        assert status == 200, doc
        v2 = doc["version"]
        stored = await nd.store.get("default")
        assert stored.dtab == Dtab.read(new) and version_string(stored.version) == v2 != "AAAAAAAAAAE="

        # someone else writes; a save from the old version is refused and reports theirs
        await nd.store.update("default", Dtab.read("/svc=>/$/inet/127.0.0.1/1"), stored.version)
        status, doc, _ = await http("PUT", base + "/admin/dtab/default", "/svc => /#/io.l5d.fs",
                                    {"Content-Type": DTAB, "If-Match": v2})
        assert status == 412 and "changed by someone else" in doc["error"]
        assert doc["current"]["dtab"] == "/svc => /$/inet/127.0.0.1/1;\n"
        assert (await nd.store.get("default")).dtab == Dtab.read("/svc=>/$/inet/127.0.0.1/1")  # not overwritten

        # no If-Match, a made-up one, a bad dtab, a form content type, too big
        status, doc, _ = await http("PUT", base + "/admin/dtab/default", "/a=>/b", {"Content-Type": DTAB})
        assert status == 428
        status, doc, _ = await http("PUT", base + "/admin/dtab/default", "/a=>/b",
                                    {"Content-Type": DTAB, "If-Match": "not base64!"})
        assert status == 412 and doc["current"] is not None
        cur = doc["current"]["version"]
        status, doc, _ = await http("PUT", base + "/admin/dtab/default", "/a => /b;\n/c => > /d",
                                    {"Content-Type": DTAB, "If-Match": cur})
        assert status == 400 and (doc["line"], doc["column"]) == (2, 7) and doc["valid"] is False
        status, text, _ = await http("PUT", base + "/admin/dtab/default", "/a=>/b",
                                     {"Content-Type": "text/plain", "If-Match": cur})
        assert status == 415  # a cross-site form cannot send application/dtab
        status, _, _ = await http("PUT", base + "/admin/dtab/default", "/a=>/b;" * 50_000,
                                  {"Content-Type": DTAB, "If-Match": cur})
        assert status == 413
        assert (await nd.store.get("default")).dtab == Dtab.read("/svc=>/$/inet/127.0.0.1/1")

        # create: 201, then 409 with the current dtab
        status, doc, _ = await http("POST", base + "/admin/dtab/staging", "/svc=>/#/io.l5d.fs",
                                    {"Content-Type": DTAB})
        assert status == 201 and doc["version"]
        status, doc, _ = await http("POST", base + "/admin/dtab/staging", "/x=>/y", {"Content-Type": DTAB})
        assert status == 409 and doc["current"]["dtab"] == "/svc => /#/io.l5d.fs;\n"
        status, _, _ = await http("GET", base + "/admin/dtab/bad%2Fname")
        assert status == 404  # not a namespace name: no route


async def test_dry_run_over_names_a_router_bound_through_namerd(tmp_path):
    async with Backend("web") as web, Backend("api") as api, namerd_with_router(
            tmp_path, {"web": web.port, "api": api.port}, "/svc=>/#/io.l5d.fs") as (nd, base, rport):
        for host in ("web", "api"):
            assert (await route(rport, host))[0] == 200
        body = json.dumps({"dtab": "/svc => /#/io.l5d.fs;\n/svc/api => /#/io.l5d.fs/web;",
                           "names": ["/svc/other", " "]})
        status, doc, _ = await http("POST", base + "/admin/dtab/default/dry-run", body,
                                    {"Content-Type": "application/json"})
        assert status == 200, doc
        rows = {r["name"]: r for r in doc["names"]}
        assert rows["/svc/api"]["before"] == "/#/io.l5d.fs/api"
        # both entries match; the later one is tried first (the CLI's summary of an Alt)
        assert rows["/svc/api"]["after"] == "(/#/io.l5d.fs/web | /#/io.l5d.fs/api)"
        assert rows["/svc/api"]["changed"] is True
        assert rows["/svc/web"]["changed"] is False
        assert rows["/svc/other"]["before"] == rows["/svc/other"]["after"] == "~"  # no such file: unbound
        assert doc["changed"] == 1 and doc["truncated"] is False
        # nothing was written
        assert (await nd.store.get("default")).dtab == Dtab.read("/svc=>/#/io.l5d.fs")

        status, doc, _ = await http("POST", base + "/admin/dtab/default/dry-run",
                                    json.dumps({"dtab": "/svc =>"}), {"Content-Type": "application/json"})
        assert status == 400 and doc["valid"] is False and doc["line"] == 1
        status, doc, _ = await http("POST", base + "/admin/dtab/default/dry-run",
                                    json.dumps({"dtab": "", "names": ["not a path"]}),
                                    {"Content-Type": "application/json"})
        assert status == 400 and "invalid name" in doc["error"]
        status, _, _ = await http("POST", base + "/admin/dtab/default/dry-run", "{}", {"Content-Type": "text/plain"})
        assert status == 415


async def test_pages_and_admin_security(tmp_path):
    async with namerd_with_router(tmp_path, {}, "/svc=>/#/io.l5d.fs",
                                  admin_extra="  security: {controlEnabled: false}") as (nd, base, _):
        for path in ("/", "/namespaces/default", "/delegator?namespace=default", "/ui/dtab_editor.js",
                     "/ui/delegator.js", "/admin/dtab/default"):
            status, _, headers = await http("GET", base + path)
            assert status == 200, path
        status, body, headers = await http("GET", base + "/delegator")
        assert 'data-mode="namerd"' in body and "script-src 'self'" in headers["Content-Security-Policy"]
        # controlEnabled: false refuses writes (404, as Linkerd) but not the dry run or reads
        status, _, _ = await http("PUT", base + "/admin/dtab/default", "/a=>/b",
                                  {"Content-Type": DTAB, "If-Match": "AAAAAAAAAAE="})
        assert status == 404
        status, _, _ = await http("POST", base + "/admin/dtab/default/dry-run", json.dumps({"dtab": "/a=>/b"}),
                                  {"Content-Type": "application/json"})
        assert status == 200
        assert (await nd.store.get("default")).dtab == Dtab.read("/svc=>/#/io.l5d.fs")
