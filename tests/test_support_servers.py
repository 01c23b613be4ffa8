"""The test servers themselves start, answer and stop (guards every other ZK/etcd test)."""
import json
import urllib.request

from kazoo.client import KazooClient


def test_zookeeper_fixture_serves_kazoo(zk_server):
    zk = KazooClient(hosts=zk_server.hosts, timeout=5)
    zk.start(timeout=10)
    try:
        zk.ensure_path("/support-check")
        node = zk.create("/support-check/member_", b"{}", ephemeral=True, sequence=True)
        assert node.startswith("/support-check/member_")
        assert zk.get_children("/support-check")
    finally:
        zk.stop()
        zk.close()


def test_etcd_fixture_serves_json_gateway(etcd_server):
    req = urllib.request.Request(
        etcd_server.url + "/v3/kv/put",
        data=json.dumps({"key": "c3VwcG9ydA==", "value": "b2s="}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert "header" in json.loads(r.read())
