"""Shared fixtures: real servers are started once per session on free loopback ports."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.etcd import EtcdServer, etcd_available  # noqa: E402
from tests.support.zookeeper import ZooKeeperServer, zookeeper_available  # noqa: E402


@pytest.fixture(scope="session")
def zk_server():
    """One real ZooKeeper for the whole session. Tests use distinct znode paths."""
    if not zookeeper_available():
        pytest.fail("ZooKeeper is not installed: run `make test`, which installs it")
    server = ZooKeeperServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def etcd_server():
    """One real etcd for the whole session. Tests use distinct key prefixes."""
    if not etcd_available():
        pytest.fail("etcd is not installed: run `make test`, which installs it")
    server = EtcdServer().start()
    yield server
    server.cleanup()
