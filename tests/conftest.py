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


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (the admin UI tests)."""
    from tests.support.browser import Browser, browser_available

    if not browser_available():
        pytest.fail("chromium / chromedriver are not installed: run `make test`, which installs them")
    b = Browser()
    yield b
    b.quit()


@pytest.fixture(scope="session")
def influx_server():
    """One real InfluxDB 1.x for the session (the io.l5d.influxdb telemeter's tests)."""
    from tests.support.influxdb import InfluxServer, influxdb_available

    if not influxdb_available():
        pytest.fail("InfluxDB is not installed: run `make test`, which installs it")
    server = InfluxServer().start()
    yield server
    server.cleanup()


# --- Test lanes --------------------------------------------------------------------------
# `make test` runs everything. `make test-fast` (`-m "not slow and not integration"`) runs
# the unit tests only, in well under 30 s. A test is `integration` when it starts a real
# server or process (ZooKeeper, etcd, InfluxDB, Chromium, dnsmasq, namerd or router
# subprocesses, curl, java ...): by the session fixtures it uses, or by its module being
# listed here. `slow` marks modules that take several seconds even without such servers.
INTEGRATION_FIXTURES = frozenset(("zk_server", "etcd_server", "browser", "influx_server"))
INTEGRATION_MODULES = frozenset((
    "test_announce", "test_announce_cli", "test_announce_router", "test_consul_router",
    "test_container_image", "test_demo", "test_dnssrv_namer", "test_dtab_cli", "test_dtab_java",
    "test_example_videos", "test_example_zookeeper", "test_example_zookeeper_namerd",
    "test_linker_announce_yaml", "test_linkerd_examples", "test_linkerd_examples_tls",
    "test_namerd_cli", "test_namerd_destination", "test_namerd_etcd", "test_namerd_http_interpreter_real",
    "test_namerd_ifaces_router", "test_namerd_ifaces_tls", "test_namerd_mesh_grpcio",
    "test_namerd_storage", "test_namerd_thrift_iface", "test_namerd_zk", "test_run_announce", "test_run_cli", "test_run_seed",
    "test_serversets", "test_serversets_failures", "test_serversets_router", "test_support_servers",
    "test_telemetry_influxdb", "test_tls_config", "test_tls_control_plane", "test_ui_namerd_browser", "test_ui_router_browser",
    "test_proxy_tls", "test_proxy_tls_mesh", "test_linkerd_examples_tls_run",
    "test_zk_discovery_namers",
    "test_tracing_routers",
    "test_socket_options", "test_fail_fast_originator", "test_forwarded_headers", "test_access_log_rotation", "test_compression", "test_balancers_aperture_heap",
    "test_parity_behaviours",
    "test_streaming_disabled",
))
SLOW_MODULES = frozenset((
    "test_admin_dashboard", "test_dtab_properties", "test_k8s_namer", "test_namerd_api", "test_proxy_streaming", "test_namerd_http_interpreter", "test_resilience_failures",
    "test_resilience_retries", "test_traffic_split", "test_types",
    "test_metrics_bounded",
))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = os.path.splitext(os.path.basename(str(item.path)))[0]
        if module in INTEGRATION_MODULES or INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
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
