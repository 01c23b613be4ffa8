"""Unit tests of the policy building blocks: retry budget arithmetic (Finagle's token
bucket), backoffs, classifiers, static-config prefix matching/merging, failure accrual
state machine, deadline header, and config validation of the service/client blocks."""
from __future__ import annotations

import random

import pytest

from namerouter.config.loader import ConfigError
from namerouter.config.schema import loads_linker
from namerouter.dtab.path import Path
from namerouter.metrics import MetricsRegistry
from namerouter.proxy.balancer_config import LoadBalancerConfig
from namerouter.proxy.balancers import Node
from namerouter.proxy.policy.classifiers import FAILURE, RETRYABLE, SUCCESS, make_classifier
from namerouter.proxy.policy.failure_accrual import AccrualPolicy, AccrualStats
from namerouter.proxy.policy.retries import BackoffPolicy, RetryBudget, decorrelated_jitter
from namerouter.proxy.policy.static_config import StaticConfigs
from namerouter.proxy.policy.timeouts import combine, deadline_header, parse_deadline


def validated(field: str, block: object) -> object:
    """A router's ``service``/``client`` block (or a sub-block of ``client``) as the config
    loader hands it to the data plane: validated into its dataclasses."""
    from namerouter.config.validate import validate
    from namerouter.proxy import RouterConfig

    if field in ("service", "client"):
        return getattr(validate(RouterConfig, {field: block}).config, field)
    client = validate(RouterConfig, {"client": {"kind": "io.l5d.global", field: block}}).config.client
    return getattr(client, field)


def validated_backoff(block: dict) -> object:
    return validated("failureAccrual", {"kind": "io.l5d.consecutiveFailures", "failures": 1,
                                        "backoff": block}).backoff


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- retry budget -------------------------------------------------------------------------

def test_budget_reserve_allows_min_retries_per_sec_times_ttl():
    clock = Clock()
    b = RetryBudget(ttl_secs=10, min_retries_per_sec=10, percent_can_retry=0.2, clock=clock)
    allowed = 0
    while b.try_withdraw():
        allowed += 1
    assert allowed == 100  # 10/s over a 10 s window, no deposits needed
    assert b.balance == 0


def test_budget_deposits_pay_percent_can_retry():
    clock = Clock()
    b = RetryBudget(ttl_secs=10, min_retries_per_sec=0, percent_can_retry=0.2, clock=clock)
    assert not b.try_withdraw()
    for _ in range(100):
        b.deposit()
    allowed = 0
    while b.try_withdraw():
        allowed += 1
    assert allowed == 20


def test_budget_zero_percent_never_pays_from_deposits():
    clock = Clock()
    b = RetryBudget(ttl_secs=10, min_retries_per_sec=0, percent_can_retry=0.0, clock=clock)
    for _ in range(10_000):
        b.deposit()
    assert not b.try_withdraw()


def test_budget_withdrawals_and_deposits_expire_after_ttl():
    clock = Clock()
    b = RetryBudget(ttl_secs=10, min_retries_per_sec=1, percent_can_retry=0.2, clock=clock)
    while b.try_withdraw():
        pass
    assert not b.try_withdraw()
    clock.t += 5.0  # half the window: the withdrawals are still counted
    assert not b.try_withdraw()
    clock.t += 5.5  # all expired: the reserve is back
    assert b.balance == 10


def test_budget_sustained_rate_matches_arithmetic():
    """Simulated 200 req/s for 30 s, every request wants a retry: the budget allows
    one reserve per ttl window plus 20 % of requests."""
    clock = Clock()
    b = RetryBudget(ttl_secs=10, min_retries_per_sec=10, percent_can_retry=0.2, clock=clock)
    retries = 0
    n = 0
    for i in range(6000):
        clock.t = 1000.0 + i / 200.0
        b.deposit()
        n += 1
        if b.try_withdraw():
            retries += 1
    assert b.allowance(n, 30.0) == 300 + 1200
    assert b.max_retries(n, 30.0) == 400 + 1200
    assert 0.95 * b.allowance(n, 30.0) <= retries <= b.max_retries(n, 30.0)


def test_budget_rejects_bad_values():
    with pytest.raises(ValueError, match="ttlSecs"):
        RetryBudget(ttl_secs=0)
    with pytest.raises(ValueError, match="percentCanRetry"):
        RetryBudget(percent_can_retry=1001)
    with pytest.raises(ValueError, match="minRetriesPerSec"):
        RetryBudget(min_retries_per_sec=-1)


# --- backoffs -----------------------------------------------------------------------------

def test_constant_backoff():
    s = BackoffPolicy.from_config(validated_backoff({"kind": "constant", "ms": 25})).stream()
    assert [next(s) for _ in range(3)] == [0.025, 0.025, 0.025]
    assert BackoffPolicy.from_config(None).zero


def test_decorrelated_jitter_stays_within_bounds_and_grows():
    rng = random.Random(7)
    s = decorrelated_jitter(0.01, 1.0, rng)
    vals = [next(s) for _ in range(200)]
    assert vals[0] == 0.01
    assert all(0.01 <= v <= 1.0 for v in vals)
    assert max(vals) > 0.5  # it does reach towards the cap
    for prev, cur in zip(vals, vals[1:]):
        assert cur <= max(0.01, prev * 3) + 1e-9


def test_backoff_config_errors():
    with pytest.raises(ConfigError, match=r"backoff.maxMs: required key is missing"):
        validated_backoff({"kind": "jittered", "minMs": 1})
    with pytest.raises(ConfigError, match="unknown kind 'exponential'"):
        validated_backoff({"kind": "exponential"})


# --- classifiers --------------------------------------------------------------------------

@pytest.mark.parametrize("kind,method,status,expected", [
    ("io.l5d.http.nonRetryable5XX", b"GET", 500, FAILURE),
    ("io.l5d.http.nonRetryable5XX", b"GET", 404, SUCCESS),
    ("io.l5d.http.nonRetryable5XX", b"GET", None, FAILURE),
    ("io.l5d.http.retryableRead5XX", b"GET", 503, RETRYABLE),
    ("io.l5d.http.retryableRead5XX", b"HEAD", None, RETRYABLE),
    ("io.l5d.http.retryableRead5XX", b"OPTIONS", 500, RETRYABLE),
    ("io.l5d.http.retryableRead5XX", b"TRACE", 500, RETRYABLE),
    ("io.l5d.http.retryableRead5XX", b"POST", 500, FAILURE),
    ("io.l5d.http.retryableRead5XX", b"PUT", 500, FAILURE),
    ("io.l5d.http.retryableRead5XX", b"GET", 200, SUCCESS),
    ("io.l5d.http.retryableIdempotent5XX", b"PUT", 500, RETRYABLE),
    ("io.l5d.http.retryableIdempotent5XX", b"DELETE", 502, RETRYABLE),
    ("io.l5d.http.retryableIdempotent5XX", b"POST", 500, FAILURE),
    ("io.l5d.http.retryableAll5XX", b"POST", 500, RETRYABLE),
    ("io.l5d.http.retryableAll5XX", b"PATCH", None, RETRYABLE),
    ("io.l5d.http.allSuccessful", b"GET", 500, SUCCESS),
    ("io.l5d.h2.retryableRead5XX", b"GET", 500, RETRYABLE),
])
def test_classifiers(kind, method, status, expected):
    assert make_classifier(kind).classify(method, status) == expected


def test_unknown_classifier_is_named():
    with pytest.raises(ValueError, match="io.l5d.http.retryableRead5xx"):
        make_classifier("io.l5d.http.retryableRead5xx")


# --- static configs -----------------------------------------------------------------------

def test_service_static_every_matching_prefix_applies_later_overrides():
    block = {"kind": "io.l5d.static", "configs": [
        {"prefix": "/svc", "totalTimeoutMs": 3000, "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}},
        {"prefix": "/svc/billing", "totalTimeoutMs": 800},
        {"prefix": "/svc/web", "responseClassifier": {"kind": "io.l5d.http.nonRetryable5XX"}},
    ]}
    sc = StaticConfigs(validated("service", block))
    keys, _ = sc.for_path(Path.of("svc", "billing"))
    assert keys["totalTimeoutMs"] == 800
    assert keys["responseClassifier"].kind == "io.l5d.http.retryableRead5XX"
    keys, _ = sc.for_path(Path.of("svc", "web", "x"))
    assert keys["totalTimeoutMs"] == 3000
    assert keys["responseClassifier"].kind == "io.l5d.http.nonRetryable5XX"
    keys, _ = sc.for_path(Path.of("other"))
    assert keys == {}
    # a prefix matches whole segments only
    keys, _ = sc.for_path(Path.of("svc", "billingx"))
    assert keys["totalTimeoutMs"] == 3000


def test_client_static_wildcards_and_captures():
    block = {"kind": "io.l5d.static", "configs": [
        {"prefix": "/", "requestAttemptTimeoutMs": 1000},
        {"prefix": "/#/io.l5d.k8s/*/*/{service}", "loadBalancer": {"kind": "ewma"}},
        {"prefix": "/$/inet/{host}/{port}", "requestAttemptTimeoutMs": 50},
    ]}
    sc = StaticConfigs(validated("client", block))
    keys, caps = sc.for_path(Path.of("#", "io.l5d.k8s", "prod", "http", "web"))
    assert keys == {"requestAttemptTimeoutMs": 1000, "loadBalancer": LoadBalancerConfig(kind="ewma")}
    assert caps == {"service": "web"}
    keys, caps = sc.for_path(Path.of("$", "inet", "127.1", "8080"))
    assert keys["requestAttemptTimeoutMs"] == 50 and caps == {"host": "127.1", "port": "8080"}
    keys, caps = sc.for_path(Path.of("#", "io.l5d.k8s", "prod"))
    assert keys == {"requestAttemptTimeoutMs": 1000} and caps == {}
    assert sc.any_sets("requestAttemptTimeoutMs") and not sc.any_sets("requeueBudget")


def test_global_block_applies_everywhere():
    sc = StaticConfigs(validated("service", {"kind": "io.l5d.global", "totalTimeoutMs": 10}))
    assert sc.for_path(Path.of("a"))[0] == {"totalTimeoutMs": 10}


# --- failure accrual ----------------------------------------------------------------------

def _accrual(cfg, clock):
    reg = MetricsRegistry()
    stats = AccrualStats(reg, "rt/r/client/x/")
    return AccrualPolicy(None if cfg is None else validated("failureAccrual", cfg), stats, clock), reg


def test_consecutive_failures_marks_dead_probes_and_revives():
    clock = Clock()
    pol, reg = _accrual({"kind": "io.l5d.consecutiveFailures", "failures": 3,
                         "backoff": {"kind": "constant", "ms": 2000}}, clock)
    node = Node()
    acc = pol.new(node)

    def available() -> bool:  # Node.available on the test clock
        return node.down_until <= clock.t

    acc.record(500)
    acc.record(500)
    acc.record(200)  # a success resets the count
    acc.record(500)
    acc.record(500)
    assert available()
    acc.record(503)
    assert not available() and acc.dead
    assert reg.get("rt/r/client/x/failure_accrual/removals").value == 1
    assert reg.get("rt/r/client/x/failure_accrual/removed").value == 1
    acc.record(200)  # in flight before removal: ignored
    assert acc.dead
    clock.t += 2.1
    assert available()  # eligible for a probe
    acc.failure()  # the probe fails: dead again for the next interval
    assert not available() and acc.dead
    assert reg.get("rt/r/client/x/failure_accrual/probes").value == 1
    clock.t += 2.1
    acc.record(200)  # the probe succeeds
    assert not acc.dead and available()
    assert reg.get("rt/r/client/x/failure_accrual/revivals").value == 1
    assert reg.get("rt/r/client/x/failure_accrual/probes").value == 2
    assert reg.get("rt/r/client/x/failure_accrual/removed_for_ms").value == 4200
    assert reg.get("rt/r/client/x/failure_accrual/removed").value == 0


def test_default_accrual_is_five_failures_with_jittered_backoff():
    clock = Clock()
    pol, _ = _accrual(None, clock)
    assert pol.kind == "io.l5d.consecutiveFailures" and pol.failures == 5
    assert (pol.backoff.kind, pol.backoff.a, pol.backoff.b) == ("jittered", 5.0, 300.0)
    node = Node()
    acc = pol.new(node)
    for _ in range(5):
        acc.failure()
    assert node.down_until - clock.t == pytest.approx(5.0)


def test_success_rate_accrual():
    clock = Clock()
    pol, _ = _accrual({"kind": "io.l5d.successRate", "successRate": 0.9, "requests": 20}, clock)
    node = Node()
    acc = pol.new(node)
    for i in range(100):
        acc.record(500 if i % 20 == 0 else 200)  # 95 %
    assert not acc.dead
    for _ in range(5):
        acc.record(500)
    assert acc.dead


def test_success_rate_windowed_accrual():
    clock = Clock()
    pol, _ = _accrual({"kind": "io.l5d.successRateWindowed", "successRate": 0.8, "window": 10}, clock)
    node = Node()
    acc = pol.new(node)
    for _ in range(50):
        clock.t += 0.1
        acc.record(200)
    assert not acc.dead
    for _ in range(40):
        clock.t += 0.1
        acc.record(500)
        if acc.dead:
            break
    assert acc.dead


def test_none_accrual():
    pol, _ = _accrual({"kind": "none"}, Clock())
    assert pol.new(Node()) is None


# --- deadline header ------------------------------------------------------------------------

def test_deadline_header_combines_to_the_strictest():
    assert parse_deadline(b"10 20") == (10, 20)
    assert parse_deadline(b"garbage") is None
    assert combine([(10, 50), (20, 40)]) == (20, 40)
    line = deadline_header(None, [b"10 5000000000000000000", b"12 4000000000000000000"])
    assert line == b"l5d-ctx-deadline: 12 4000000000000000000\r\n"
    line = deadline_header(0.5, [b"1 9000000000000000000"])
    ts, dl = map(int, line.split(b": ")[1].split())
    assert dl - ts == 500_000_000
    assert deadline_header(None, []) is None


# --- config validation -------------------------------------------------------------------

BASE = """
routers:
- protocol: http
  dtab: /svc => /$/inet/127.1/1
"""


def test_linkerd_policy_config_loads():
    cfg = loads_linker(BASE + """
  service:
    kind: io.l5d.static
    configs:
    - prefix: /svc
      totalTimeoutMs: 3000
      responseClassifier: {kind: io.l5d.http.retryableRead5XX}
      retries:
        budget: {minRetriesPerSec: 5, percentCanRetry: 0.2, ttlSecs: 10}
        backoff: {kind: jittered, minMs: 10, maxMs: 500}
  client:
    failureAccrual: {kind: io.l5d.successRate, successRate: 0.9, requests: 1000}
    requeueBudget: {percentCanRetry: 0.5}
    hostConnectionPool: {maxSize: 10}
""").config
    r = cfg.routers[0]
    assert r.service.configs[0].retries.backoff.maxMs == 500
    assert r.client.kind == "io.l5d.global"  # the default kind
    assert r.client.failureAccrual.requests == 1000


@pytest.mark.parametrize("snippet,message", [
    ("  service:\n    retries:\n      budget: {percentCanRetry: 2000}\n",
     "routers[0].service.retries.budget.percentCanRetry: expected a number 0.0-1000.0"),
    ("  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5xx}\n",
     "did you mean"),
    ("  service:\n    retries:\n      backoff: {kind: jittered, minMs: 10}\n",
     "routers[0].service.retries.backoff.maxMs: required key is missing"),
    ("  service:\n    retries:\n      backoff: {kind: jittered, minMs: 10, maxMs: 5}\n",
     "maxMs (5) must not be below minMs (10)"),
    ("  client:\n    failureAccrual: {kind: io.l5d.consecutiveFailures}\n",
     "routers[0].client.failureAccrual.failures: required key is missing"),
    ("  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: web\n      requestAttemptTimeoutMs: 5\n",
     "routers[0].client.configs[0].prefix"),
    ("  client:\n    requestAttemptTimeoutMs: 0\n",
     "routers[0].client.requestAttemptTimeoutMs: expected an integer"),
    ("  service:\n    totalTimeoutMillis: 5\n", "unknown key"),
])
def test_bad_policy_config_names_the_key_and_line(snippet, message):
    with pytest.raises(ConfigError) as e:
        loads_linker(BASE + snippet)
    text = str(e.value)
    assert message in text, text
    assert "line" in text
