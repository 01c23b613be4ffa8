"""namerd's io.l5d.k8s storage end to end: namerd from YAML, dtabs as dtabs.l5d.io custom
resources in the Kubernetes API simulator, driven over namerd's HTTP API with curl."""
from __future__ import annotations

import base64
import json

import aiohttp

from namerd.config import loads_namerd
from namerd.server import Namerd
from namerd.storage.k8s import from_object, to_object
from namerouter.dtab import Dtab
from tests.namerd_support import WatchStream
from tests.sim.k8s_sim import K8sApiSim
from tests.support.backends import curl
from tests.support.ports import free_port

RES = "l5d.io/v1alpha1/dtabs"


async def _curl(*args: str) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one curl request."""
    code, out, err = await curl("-s", "-i", *args)
    assert code == 0, err
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_namerd_keeps_dtabs_as_custom_resources():
    async with K8sApiSim() as sim:
        port, admin = free_port(), free_port()
        namerd = Namerd.from_config(loads_namerd(f"""
admin: {{ip: 127.0.0.1, port: {admin}}}
storage:
  kind: io.l5d.k8s
  host: 127.0.0.1
  port: {sim.port}
  namespace: linkerd
interfaces:
- {{kind: io.l5d.httpController, ip: 127.0.0.1, port: {port}}}
"""))
        await namerd.start()
        api = f"http://127.0.0.1:{port}/api/1/dtabs"
        dtab_ct = ["-H", "Content-Type: application/dtab"]
        try:
            # Without the CRD the API has no such resource: 503 saying what to install.
            status, _, body = await _curl("-X", "POST", *dtab_ct, "--data", "/svc=>/#/io.l5d.fs", f"{api}/default")
            assert status == 503 and "dtabs.l5d.io" in body, body

            sim.register_crd("l5d.io", "v1alpha1", "dtabs", "DTab")
            status, _, _ = await _curl("-X", "POST", *dtab_ct, "--data", "/svc=>/#/io.l5d.fs", f"{api}/default")
            assert status == 204
            obj = sim.objects[(RES, "linkerd", "default")]
            assert obj["kind"] == "DTab" and obj["dentries"] == [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]
            status, _, _ = await _curl("-X", "POST", *dtab_ct, "--data", "/svc=>/x", f"{api}/default")
            assert status == 409

            # ETag = base64 of the resourceVersion; If-Match is the API server's optimistic concurrency.
            status, headers, body = await _curl("-H", "Accept: application/dtab", f"{api}/default")
            rv = obj["metadata"]["resourceVersion"]
            assert status == 200 and headers["etag"] == base64.b64encode(rv.encode()).decode()
            assert body.strip() == "/svc=>/#/io.l5d.fs"
            status, _, _ = await _curl("-X", "PUT", *dtab_ct, "-H", f"If-Match: {headers['etag']}",
                                       "--data", "/svc=>/#/io.l5d.k8s/prod/http", f"{api}/default")
            assert status == 204
            status, _, _ = await _curl("-X", "PUT", *dtab_ct, "-H", f"If-Match: {headers['etag']}",
                                       "--data", "/svc=>/stale", f"{api}/default")
            assert status == 412

            # A watch sees changes made by anyone (here kubectl, i.e. straight to the API).
            async with aiohttp.ClientSession() as s, WatchStream(s, f"{api}/default?watch=true") as w:
                assert await w.json() == [{"prefix": "/svc", "dst": "/#/io.l5d.k8s/prod/http"}]
                cur = sim.objects[(RES, "linkerd", "default")]
                sim._put(RES, "linkerd", "default", {"dentries": [{"prefix": "/svc", "dst": "/$/nil"}]}, None)
                assert await w.json() == [{"prefix": "/svc", "dst": "/$/nil"}]
                assert cur["metadata"]["resourceVersion"] != sim.objects[(RES, "linkerd", "default")]["metadata"][
                    "resourceVersion"]

            # PUT without If-Match upserts; names Kubernetes refuses are a 400 with its reason.
            status, _, _ = await _curl("-X", "PUT", *dtab_ct, "--data", "/a=>/b", f"{api}/staging")
            assert status == 204 and (RES, "linkerd", "staging") in sim.objects
            status, _, body = await _curl("-X", "POST", *dtab_ct, "--data", "/a=>/b", f"{api}/Prod_1")
            assert status == 400 and "RFC 1123" in body
            status, _, body = await _curl(api)
            assert status == 200 and json.loads(body) == ["default", "staging"]

            status, _, _ = await _curl("-X", "DELETE", f"{api}/staging")
            assert status == 204 and (RES, "linkerd", "staging") not in sim.objects
            status, _, _ = await _curl("-X", "DELETE", f"{api}/staging")
            assert status == 404

            # The API server goes away: writes are 503, the watch keeps the last dtab and re-syncs.
            async with aiohttp.ClientSession() as s, WatchStream(s, f"{api}/default?watch=true") as w:
                assert await w.json() == [{"prefix": "/svc", "dst": "/$/nil"}]
                await sim.stop()
                status, _, _ = await _curl("-X", "PUT", *dtab_ct, "--data", "/a=>/b", f"{api}/default")
                assert status == 503
                await w.nothing_for(0.3)
                await sim.start()
                sim._put(RES, "linkerd", "default", {"dentries": [{"prefix": "/svc", "dst": "/$/fail"}]}, None)
                assert await w.json(timeout=15) == [{"prefix": "/svc", "dst": "/$/fail"}]
        finally:
            await namerd.close()


def test_dtab_object_round_trip():
    d = Dtab.read("/svc => /#/io.l5d.fs | /$/nil; /x => 0.3 * /a & 0.7 * /b")
    obj = to_object("default", d, "12")
    obj["metadata"]["resourceVersion"] = "12"
    back = from_object(obj)
    assert back.dtab == d and back.version == b"12"
