"""Requeues: a failure that provably never reached a server (connect refused or timed out)
is re-sent at once to another endpoint of the same client, within the client's
``requeueBudget`` (Finagle's RetryBudget, default 10/s + 20 %, ttl 10 s).

Deposits are taken lazily from the client's request count when a requeue is asked for,
so a request that needs no requeue costs nothing here (the hot path records the request
once, as it does anyway).

Metrics (per client, Finagle's names): ``retries/requeues``, ``retries/budget_exhausted``
and the gauge ``retries/budget``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ...metrics import MetricsRegistry
from .retries import RetryBudget


class Requeues:
    __slots__ = ("budget", "requeues", "exhausted", "_requests", "_seen")

    def __init__(self, cfg: Any, registry: MetricsRegistry, prefix: str) -> None:
        self.budget = RetryBudget.from_config(cfg)
        self.requeues = registry.counter(prefix + "retries/requeues")
        self.exhausted = registry.counter(prefix + "retries/budget_exhausted")
        #: () -> requests the client has recorded so far (set by the client stage)
        self._requests: Optional[Callable[[], int]] = None
        self._seen = 0
        registry.gauge(prefix + "retries/budget", self.balance)

    def balance(self) -> int:
        """Requeues the budget allows now (the gauge), with the requests seen so far deposited."""
        self._sync()
        return self.budget.balance

    def count_requests(self, requests: Callable[[], int]) -> None:
        """Where the client's request count comes from (its metrics scope)."""
        self._requests = requests
        self._seen = requests()

    def _sync(self) -> None:
        if self._requests is None:
            return
        n = self._requests() - self._seen
        if n > 0:
            self._seen += n
            self.budget.window.add(n * self.budget.deposit_amount)

    def try_requeue(self) -> bool:
        """Withdraw one requeue; False (and ``budget_exhausted``) when the budget is empty."""
        self._sync()
        if self.budget.try_withdraw():
            self.requeues.value += 1
            return True
        self.exhausted.value += 1
        return False
