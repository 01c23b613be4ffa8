"""Shared fixtures: real servers are started once per session on free loopback ports.

Event loops: the data plane runs on uvloop in production (``namerouter run``), so its
tests run there too. pytest-asyncio's ``pytest_asyncio_loop_factories`` hook (below)
picks the loop per test module; everything else keeps the default asyncio loop.
"""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Callable

import pytest
import uvloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.etcd import EtcdServer, etcd_available  # noqa: E402
from tests.support.zookeeper import ZooKeeperServer, zookeeper_available  # noqa: E402

#: Test modules that exercise the data plane (namerouter/proxy/): they run on uvloop.
UVLOOP_MODULE_PREFIXES = ("test_proxy_", "test_policy_", "test_resilience_")
UVLOOP_MODULES = frozenset(("test_identifiers.py", "test_balancers.py", "test_traffic_split.py"))


def pytest_report_header(config: pytest.Config) -> str:
    """Which data plane the tests run: the modules `make native` compiled, or the sources."""
    from namerouter.proxy import native

    st = native.install()
    return f"namerouter data plane: {'compiled (mypyc)' if st['compiled'] else 'pure Python'} — {st['why']}"


def runs_on_uvloop(module_file: str) -> bool:
    name = os.path.basename(module_file)
    return name in UVLOOP_MODULES or name.startswith(UVLOOP_MODULE_PREFIXES)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """One loop factory per test (pytest-asyncio >= 1.4; replaces overriding the deprecated
    ``event_loop_policy`` fixture). A single factory per item keeps test ids unchanged."""
    if runs_on_uvloop(str(item.path)):
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


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
