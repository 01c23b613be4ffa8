"""Batched, asynchronous span export that never blocks the event loop.

``SpanQueue.offer(spans)`` runs on the loop for every sampled request: it appends to a
bounded buffer, or counts the spans as dropped when the buffer is full (a slow or dead
collector costs memory up to ``maxQueueSize`` spans, never more, and never a stall). One
task per queue takes up to ``maxExportBatchSize`` spans at a time — as soon as that many
are waiting, or every ``scheduleDelayMs`` — and awaits the telemeter's ``export(batch)``
(which does its encoding and blocking I/O off the loop) bounded by ``exportTimeoutMs``.
A batch that fails or times out is dropped and counted; there is no retry queue, so a
collector that comes back gets the new spans and the queue never grows past its bound.

Metrics under ``telemetry/<kind>/``: ``spans_sent``, ``spans_dropped`` (queue full, failed
or timed-out batches, spans left at shutdown), ``errors`` (failed exports), ``batches_sent``
and the gauge ``queue_size``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Awaitable, Callable, Optional, Sequence

from ..metrics import MetricsRegistry

log = logging.getLogger("namerouter.tracing")

Export = Callable[[list[Any]], Awaitable[None]]


class SpanQueue:
    def __init__(self, name: str, export: Export, metrics: Optional[MetricsRegistry], scope: str, *,
                 max_queue: int = 2048, max_batch: int = 512, delay_s: float = 1.0,
                 timeout_s: float = 10.0) -> None:
        self.name = name
        self._export = export
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self._buf: deque[Any] = deque()
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._closing = False
        self._last_error_log = 0.0
        reg = metrics if metrics is not None else MetricsRegistry()
        self.sent = reg.counter(f"{scope}/spans_sent")
        self.dropped = reg.counter(f"{scope}/spans_dropped")
        self.errors = reg.counter(f"{scope}/errors")
        self.batches = reg.counter(f"{scope}/batches_sent")
        reg.gauge(f"{scope}/queue_size", lambda: len(self._buf))
        #: the last export error (for logs and tests), None after a success
        self.last_error: Optional[str] = None

    def __len__(self) -> int:
        return len(self._buf)

    def offer(self, spans: Sequence[Any]) -> None:
        """Queue spans (on the loop, O(len(spans))); drops what does not fit."""
        buf = self._buf
        room = self.max_queue - len(buf)
        if room >= len(spans):
            buf.extend(spans)
        else:
            if room > 0:
                buf.extend(spans[:room])
            self.dropped.incr(len(spans) - max(room, 0))
        if len(buf) >= self.max_batch and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"span export {self.name}")

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            if len(self._buf) < self.max_batch:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.delay_s)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            while self._buf and not self._closing:
                await self._send_one()
                if len(self._buf) < self.max_batch:
                    break

    def _take(self) -> list[Any]:
        buf = self._buf
        n = min(len(buf), self.max_batch)
        return [buf.popleft() for _ in range(n)]

    async def _send_one(self, timeout_s: Optional[float] = None) -> None:
        batch = self._take()
        if not batch:
            return
        try:
            await asyncio.wait_for(self._export(batch), timeout_s or self.timeout_s)
        except asyncio.CancelledError:
            self.dropped.incr(len(batch))
            raise
        except Exception as e:
            self.errors.incr()
            self.dropped.incr(len(batch))
            reason = "timed out" if isinstance(e, asyncio.TimeoutError) else (str(e) or type(e).__name__)
            self.last_error = reason
            now = time.monotonic()
            if now - self._last_error_log > 10.0:  # one line per 10 s, not one per batch
                self._last_error_log = now
                log.warning("%s: could not export %d spans: %s", self.name, len(batch), reason)
            return
        self.last_error = None
        self.sent.incr(len(batch))
        self.batches.incr()

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Send what is queued now (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self._send_one(min(left, self.timeout_s))

    async def close(self, timeout_s: float = 2.0) -> None:
        """Let an export in flight finish, send what is left, all within ``timeout_s``;
        drop (and count) the rest."""
        deadline = time.monotonic() + timeout_s
        task, self._task = self._task, None
        self._closing = True
        if task is not None:
            if self._wake is not None:
                self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except (asyncio.TimeoutError, Exception):
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        try:
            await self.flush(max(0.0, deadline - time.monotonic()))
        finally:
            if self._buf:
                self.dropped.incr(len(self._buf))
                self._buf.clear()
