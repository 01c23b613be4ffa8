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
UVLOOP_MODULES = frozenset(("test_identifiers.py", "test_balancers.py", "test_traffic_split.py",
                            "test_tls_handshake.py"))


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


# --- tracing: collectors shared by the session, reset for each test that uses one ---------

@pytest.fixture(scope="session")
def _zipkin_collector_server():
    from tests.support.trace_collectors import ZipkinCollector

    server = ZipkinCollector().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _otlp_receiver_server():
    from tests.support.trace_collectors import OtlpReceiver

    server = OtlpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def zipkin_collector(_zipkin_collector_server):
    """A Zipkin v2 HTTP collector (tests/support/trace_collectors.py), emptied for this test."""
    _zipkin_collector_server.reset()
    yield _zipkin_collector_server
    _zipkin_collector_server.reset()


@pytest.fixture
def otlp_receiver(_otlp_receiver_server):
    """An OTLP/HTTP trace receiver (tests/support/trace_collectors.py), emptied for this test."""
    _otlp_receiver_server.reset()
    yield _otlp_receiver_server
    _otlp_receiver_server.reset()
