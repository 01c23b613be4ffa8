"""Failure injection: a backend failing a third of GETs with 500 (the seed's FLAKY rate),
through the real router with ``io.l5d.http.retryableRead5XX`` and the default budget
(minRetriesPerSec 10, percentCanRetry 0.2, ttlSecs 10).

- 20 req/s for 30 s: ≥ 99.9 % success; the budget is never exhausted.
- 200 req/s for 30 s: the budget caps retries at one reserve per ttl window plus 20 % of
  the requests, so success falls to what that allows.

In both runs the ``retries/total`` metric is checked against what the backend saw (every
attempt reached it) and against the budget's arithmetic. The two runs use separate
routers and backends and run at the same time, so the file takes ~35 s.
"""
from __future__ import annotations

import asyncio


from namerouter.proxy.policy.retries import RetryBudget
from tests.support.backends import RouterHarness
from tests.support.load import FlakyBackend, Report, run_load

READ_RETRIES = {"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}}
SVC = "rt/outgoing/service/svc/web/"
DURATION = 30.0


async def _scenario(rate: float, seed: int) -> tuple[Report, FlakyBackend, dict]:
    async with FlakyBackend("videos-api", mode="flaky", seed=seed) as b:
        async with RouterHarness(f"/svc/web => /$/inet/127.1/{b.port}", service=READ_RETRIES) as h:
            rep = await run_load(h.port, rate, DURATION, timeout=20)
            m = {k: h.metric(SVC + k) for k in ("retries/total", "retries/budget_exhausted", "requests")}
            m["per_request"] = h.metrics.get(SVC + "retries/per_request").summary()
        return rep, b, m


def _check_accounting(rep: Report, b: FlakyBackend, m: dict) -> None:
    n = rep.sent
    retries = m["retries/total"]
    assert not rep.errors, rep
    # every attempt reached the backend: the originals plus the retries
    assert b.total == n + retries, (b.requests, retries)
    # each 500 the backend served was either retried or answered to the client
    assert b.count(status=500) == retries + rep.statuses[500], (b.requests, retries, rep)
    assert m["requests"] == n
    assert m["per_request"]["count"] == n
    assert m["per_request"]["sum"] == retries


async def test_flaky_backend_retries_within_budget_at_20_and_200_rps():
    (slow, b1, m1), (fast, b2, m2) = await asyncio.gather(_scenario(20, seed=11), _scenario(200, seed=12))
    budget = RetryBudget()  # the defaults the router used

    # --- 20 req/s: the budget covers the 1/3 failure rate --------------------------------
    _check_accounting(slow, b1, m1)
    assert slow.success_rate >= 0.999, slow
    assert m1["retries/budget_exhausted"] == 0
    assert b1.count(status=500) > slow.sent / 5  # the failures really happened
    assert m1["retries/total"] <= budget.max_retries(slow.sent, DURATION)

    # --- 200 req/s: the budget caps retries --------------------------------------------
    _check_accounting(fast, b2, m2)
    retries = m2["retries/total"]
    assert m2["retries/budget_exhausted"] > 0
    allowance = budget.allowance(fast.sent, DURATION)  # 10/s × 30 s + 20 % of 6000
    assert allowance == 1500
    # Saturated, the budget hands out about its allowance; deposits and withdrawals
    # expire a 1 s slice at a time, so the strict bound counts one more (partial) window.
    assert 0.95 * allowance <= retries <= budget.max_retries(fast.sent, DURATION), retries
    assert budget.max_retries(fast.sent, DURATION) == 1600
    # what the budget allows: each retry turns a failure into a success 2 times in 3
    expected = 2 / 3 + (2 / 3) * retries / fast.sent
    assert abs(fast.success_rate - expected) < 0.03, (fast, retries, expected)
    assert fast.success_rate < 0.9
    # responses the router gave up on carry Linkerd's headers
    assert fast.l5d["l5d-retryable: true"] == fast.statuses[500]
    assert fast.l5d["l5d-success-class: 0.0"] == fast.statuses[500]
    assert fast.l5d["l5d-success-class: 1.0"] == fast.ok
