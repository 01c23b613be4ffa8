"""io.l5d.k8s.daemonset and io.l5d.k8s.localnode over the k8s namer and simulator."""
from __future__ import annotations

import pytest

from namerouter.dtab.path import Path
from namerouter.dtab.tree import Leaf
from namerouter.k8s.client import K8sApi
from namerouter.naming.addr import ADDR_PENDING, AddrBound, Address
from namerouter.naming.bound import BoundName
from namerouter.naming.var import Var
from namerouter.namers.k8s import K8sNamer
from namerouter.transformers.k8s import (
    DaemonSetTransformer,
    DaemonSetTransformerConfig,
    LocalNodeTransformer,
    LocalNodeTransformerConfig,
    same_subnet24,
)
from tests.sim.k8s_sim import K8sApiSim, subset


def test_same_subnet():
    assert same_subnet24("10.244.1.7", "10.244.1.200")
    assert not same_subnet24("10.244.1.7", "10.244.2.7")
    assert not same_subnet24("web.local", "10.0.0.1") and not same_subnet24("::1", "::1")


def test_localnode_filters_by_pod_subnet_or_node_name():
    addrs = AddrBound([Address("10.244.1.5", 80, {"nodeName": "a"}), Address("10.244.2.5", 80, {"nodeName": "b"})])
    b = BoundName(Path.read("/#/io.l5d.k8s/prod/http/web"), Var(addrs))
    t = LocalNodeTransformer.from_config(LocalNodeTransformerConfig(), environ={"POD_IP": "10.244.1.99"})
    out = t.transform(Leaf(b)).value
    assert out.id == Path.read("/%/io.l5d.k8s.localnode/10.244.1.99/#/io.l5d.k8s/prod/http/web")
    c = out.addr.observe(lambda _: None)
    assert {a.host for a in out.addr.sample().addrs} == {"10.244.1.5"}
    c.close()
    t2 = LocalNodeTransformer.from_config(LocalNodeTransformerConfig(hostNetwork=True), environ={"NODE_NAME": "b"})
    out2 = t2.transform(Leaf(b)).value
    c = out2.addr.observe(lambda _: None)
    assert {a.host for a in out2.addr.sample().addrs} == {"10.244.2.5"}
    c.close()
    with pytest.raises(ValueError, match="POD_IP"):
        LocalNodeTransformer.from_config(LocalNodeTransformerConfig(), environ={})
    with pytest.raises(ValueError, match="NODE_NAME"):
        LocalNodeTransformer.from_config(LocalNodeTransformerConfig(hostNetwork=True), environ={})


@pytest.mark.parametrize("host_network", [False, True])
async def test_daemonset_maps_pods_to_the_router_on_their_node(host_network: bool):
    sim = K8sApiSim()
    await sim.start()
    # routers: one per node; with hostNetwork their IPs are node IPs (other subnet)
    r_ips = [("192.168.0.1", "node-a"), ("192.168.0.2", "node-b")] if host_network else \
        [("10.244.1.2", "node-a"), ("10.244.2.2", "node-b")]
    sim.set_endpoints("linkerd", "l5d", [subset(r_ips, {"incoming": 4141})])
    sim.set_endpoints("prod", "web", [subset([("10.244.1.10", "node-a"), ("10.244.1.11", "node-a")],
                                             {"http": 8080})])
    api = K8sApi(sim.url)
    namer = K8sNamer(api, max_backoff_s=0.2)
    ds = DaemonSetTransformer.for_namer(K8sNamer(K8sApi(sim.url), max_backoff_s=0.2), "linkerd", "incoming", "l5d",
                                        host_network)
    act = namer.lookup(Path.read("/prod/http/web"))
    c = act.observe(lambda _: None)
    try:
        tree = await act.wait_ok(2)
        out = ds.transform(tree).value
        assert out.id == Path.read("/%/io.l5d.k8s.daemonset/linkerd/incoming/l5d/#/io.l5d.k8s/prod/http/web")
        oc = out.addr.observe(lambda _: None)
        a = await out.addr.wait_for(lambda a: a is not ADDR_PENDING and isinstance(a, AddrBound), 2)
        assert {(x.host, x.port) for x in a.addrs} == {(r_ips[0][0], 4141)}
        # a web pod moves to node b: traffic now goes to node b's router
        sim.set_endpoints("prod", "web", [subset([("10.244.2.10", "node-b")], {"http": 8080})])
        await out.addr.wait_for(lambda a: {(x.host, x.port) for x in a.addrs} == {(r_ips[1][0], 4141)}, 0.5)
        oc.close()
    finally:
        c.close()
        await namer.close()
        await ds.namer.close()
        await sim.stop()


def test_daemonset_config_port_check():
    from namerouter.transformers.k8s import _check_port

    _check_port("incoming")
    _check_port(4141)
    with pytest.raises(ValueError):
        _check_port(True)
    cfg = DaemonSetTransformerConfig(namespace="linkerd", service="l5d", port=4141)
    t = DaemonSetTransformer.from_config(cfg)
    assert t.prefix == Path.read("/%/io.l5d.k8s.daemonset/linkerd/4141/l5d")
