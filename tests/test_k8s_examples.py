"""examples/kubernetes: every manifest parses, the embedded namerouter/namerd configs pass
the real config validators, and the names the configs rely on exist in the manifests."""
from __future__ import annotations

import glob
import os

import yaml

from namerd.config import loads_namerd
from namerouter.config.schema import loads_linker
from namerouter.config.validate import kind_of
from namerouter.dtab import Dtab, Path

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "kubernetes")


def manifests() -> list[dict]:
    docs = []
    files = sorted(glob.glob(os.path.join(ROOT, "*.yaml")))
    assert len(files) >= 5
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for d in yaml.safe_load_all(fh):
                if d is not None:
                    assert {"apiVersion", "kind", "metadata"} <= set(d), f"{f}: {d}"
                    docs.append(d)
    return docs


def by_kind(docs, kind):
    return {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs if d["kind"] == kind}


def test_manifests_are_consistent_and_configs_validate():
    docs = manifests()
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    assert namespaces == {"linkerd", "video"}
    cms, services = by_kind(docs, "ConfigMap"), by_kind(docs, "Service")
    workloads = list(by_kind(docs, "Deployment").values()) + list(by_kind(docs, "DaemonSet").values())

    for w in workloads:
        ns = w["metadata"]["namespace"]
        assert ns in namespaces
        spec = w["spec"]["template"]["spec"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for v in spec.get("volumes", []):  # every mounted ConfigMap exists
            if "configMap" in v:
                assert (ns, v["configMap"]["name"]) in cms
        sa = spec.get("serviceAccountName")
        if sa:
            assert any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa for d in docs)

    for (ns, name), svc in services.items():  # every Service selects a workload, named ports exist
        sel = svc["spec"]["selector"]
        targets = [w for w in workloads if w["metadata"]["namespace"] == ns
                   and sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, f"service {ns}/{name} selects nothing"
        cports = {p.get("name"): p["containerPort"] for c in targets[0]["spec"]["template"]["spec"]["containers"]
                  for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            assert (t in cports) if isinstance(t, str) else (t in cports.values()), (name, p)

    # the video apps: Services with a port named http (what /#/io.l5d.k8s/video/http/<svc> needs)
    for app in ("videos-web", "playlists-api", "videos-api"):
        assert "http" in {p["name"] for p in services[("video", app)]["spec"]["ports"]}

    # RBAC: the namer needs get/list/watch on endpoints and services
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    rule = role["rules"][0]
    assert {"endpoints", "services"} <= set(rule["resources"]) and {"get", "list", "watch"} <= set(rule["verbs"])

    # namerouter config: validated by the real loader
    router_cfg = loads_linker(cms[("linkerd", "namerouter-config")]["data"]["config.yaml"], "namerouter-config")
    cfg = router_cfg.config
    assert [kind_of(n) for n in cfg.namers] == ["io.l5d.k8s"]
    out, inc = cfg.routers
    interp = cfg.interpreters[0]  # the validated io.l5d.namerd.http config of router 0
    assert kind_of(interp) == "io.l5d.namerd.http" and kind_of(cfg.interpreters[1]) == "default"
    assert kind_of(cfg.interpreters[1].transformers[0]) == "io.l5d.k8s.localnode"
    ds = interp.transformers[0]
    assert kind_of(ds) == "io.l5d.k8s.daemonset"
    svc = services[(ds.namespace, ds.service)]
    assert ds.port in {p["name"] for p in svc["spec"]["ports"]}
    assert interp.dst == "/$/inet/namerd.linkerd.svc.cluster.local/4180"
    assert ("linkerd", "namerd") in services
    assert 4180 in {p["port"] for p in services[("linkerd", "namerd")]["spec"]["ports"]}
    daemonset = by_kind(docs, "DaemonSet")[("linkerd", "namerouter")]
    env = {e["name"] for c in daemonset["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert {"POD_IP", "NODE_NAME"} <= env  # io.l5d.k8s.localnode

    # namerd config: validated by the real loader; its dtab names the video namespace
    namerd_cfg = loads_namerd(cms[("linkerd", "namerd-config")]["data"]["config.yaml"], "namerd-config").config
    dtab = Dtab.read(namerd_cfg.storage.namespaces["default"])
    assert any(str(d.dst) == "/#/io.l5d.k8s/video/http" for d in dtab)
    incoming_dtab = Dtab.read(inc.dtab)
    assert incoming_dtab == dtab  # both sides bind names the same way
    assert Path.read("/#/io.l5d.k8s/video/http")


def test_video_app_manifests_run_the_example_apps_that_exist():
    """The manifests run examples/videos' scripts (copied into the image), listening on all
    interfaces on the port their Service targets, and calling each other by service name."""
    import os

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "examples/kubernetes/04-video-apps.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    with open(os.path.join(root, "examples/kubernetes/Dockerfile")) as f:
        assert "COPY examples/videos ./examples/videos" in f.read()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"videos-web", "playlists-api", "videos-api"}
    for name, d in deployments.items():
        [c] = d["spec"]["template"]["spec"]["containers"]
        script = c["command"][-1]
        assert script.startswith("/src/examples/videos/")
        assert os.path.exists(os.path.join(root, script[len("/src/"):])), script
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HOST"] == "0.0.0.0" and int(env["PORT"]) == c["ports"][0]["containerPort"]
        assert env["http_proxy"] == "http://$(HOST_IP):4140"
    env = lambda n: {e["name"]: e.get("value") for e in deployments[n]["spec"]["template"]["spec"]["containers"][0]["env"]}  # noqa: E731
    assert env("videos-web")["PLAYLISTS_API_URL"] == "http://playlists-api"
    assert env("playlists-api")["VIDEOS_API_URL"] == "http://videos-api"
    assert env("videos-api")["FLAKY"] == "true"
