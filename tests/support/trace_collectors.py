"""Trace collectors for tests: a Zipkin v2 HTTP collector and an OTLP/HTTP receiver.

Both run an aiohttp server in a thread of their own (their own event loop), so the
process or loop under test can be a router in this process or a subprocess, and a
collector that is told to hang does not hang the test's loop.

``ZipkinCollector`` answers ``POST /api/v2/spans`` as Zipkin does (202 Accepted; 400 for a
body that is not a JSON list of spans) and validates every body against Zipkin's v2
model (``zipkin_schema.py``): spans that do not conform are kept in ``invalid`` with the
reasons, never in ``spans``.

``OtlpReceiver`` answers ``POST /v1/traces`` (``application/x-protobuf``, gzip or not) by
decoding an ``ExportTraceServiceRequest`` with the ``opentelemetry-proto`` classes and
flattening each span into a dict (hex ids, kind name, attributes, events, status, the
resource's attributes).

Both can be made slow (``delay_s``: the answer waits that long) or failing (``status``:
answer with that code), and record how many requests they got. ``wait_for(n)`` blocks
until ``n`` spans arrived (or fails after ``timeout``).
"""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable, Optional

from aiohttp import web

from .ports import free_port
from .zipkin_schema import problems


class _ThreadServer:
    path = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.delay_s = 0.0
        self.status: Optional[int] = None
        self.requests = 0
        self.spans: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._release: Optional[asyncio.Event] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "_ThreadServer":
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # noqa: BLE001 - reported to start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait(15)
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._release = asyncio.Event()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(self._release_waiters)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(15)
            self._thread = None

    def _release_waiters(self) -> None:
        if self._release is not None:
            self._release.set()

    def reset(self) -> None:
        """Forget what was received; back to answering at once with success."""
        with self._cond:
            self.spans.clear()
            self.requests = 0
            self.delay_s = 0.0
            self.status = None
            self._reset_extra()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._renew_release)

    def _renew_release(self) -> None:
        if self._release is not None:
            self._release.set()
        self._release = asyncio.Event()

    def _reset_extra(self) -> None:
        pass

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        with self._cond:
            self.requests += 1
            delay, status = self.delay_s, self.status
        if delay:
            release = self._release
            try:
                await asyncio.wait_for(release.wait(), delay)  # type: ignore[union-attr]
            except asyncio.TimeoutError:
                pass
        if status is not None:
            return web.Response(status=status, text="collector told to fail\n")
        body = await request.read()  # aiohttp undoes a gzip Content-Encoding
        return self._accept(request, body)

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        raise NotImplementedError

    def _add(self, spans: list[dict[str, Any]]) -> None:
        with self._cond:
            self.spans.extend(spans)
            self._cond.notify_all()

    def wait_for(self, n: int = 1, timeout: float = 15.0,
                 pred: Optional[Callable[[list[dict[str, Any]]], bool]] = None) -> list[dict[str, Any]]:
        """At least ``n`` spans (and ``pred(spans)`` true), or AssertionError after ``timeout``."""
        def ok() -> bool:
            return len(self.spans) >= n and (pred is None or pred(self.spans))

        with self._cond:
            if not self._cond.wait_for(ok, timeout):
                raise AssertionError(f"{type(self).__name__}: {len(self.spans)} spans after {timeout} s, "
                                     f"wanted {n}; {self.requests} requests")
            return list(self.spans)

    async def await_for(self, n: int = 1, timeout: float = 15.0,
                        pred: Optional[Callable[[list[dict[str, Any]]], bool]] = None) -> list[dict[str, Any]]:
        """``wait_for`` from a coroutine (waits in a thread, the caller's loop keeps running)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.wait_for, n, timeout, pred)


class ZipkinCollector(_ThreadServer):
    path = "/api/v2/spans"

    def __init__(self) -> None:
        super().__init__()
        #: (reason list, the offending body) for every body that was not Zipkin v2
        self.invalid: list[tuple[list[str], Any]] = []

    def _reset_extra(self) -> None:
        self.invalid.clear()

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        if request.content_type != "application/json":
            self._reject([f"content type {request.content_type!r}, expected application/json"], body)
            return web.Response(status=415, text="expected application/json\n")
        try:
            doc = json.loads(body)
        except ValueError as e:
            self._reject([f"not JSON: {e}"], body)
            return web.Response(status=400, text=f"Malformed reading List<Span> from json: {e}\n")
        reasons = problems(doc)
        if reasons:
            self._reject(reasons, doc)
            return web.Response(status=400, text="\n".join(reasons) + "\n")
        self._add(doc)
        return web.Response(status=202)

    def _reject(self, reasons: list[str], body: Any) -> None:
        with self._cond:
            self.invalid.append((reasons, body))


def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


class OtlpReceiver(_ThreadServer):
    path = "/v1/traces"

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        )
        from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text="expected application/x-protobuf\n")
        req = ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - a decode error is the client's
            return web.Response(status=400, text=f"cannot decode ExportTraceServiceRequest: {e}\n")
        out = []
        for rs in req.resource_spans:
            resource = {kv.key: _any_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": Span.SpanKind.Name(s.kind),
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": {kv.key: _any_value(kv.value) for kv in s.attributes},
                        "events": [(e.name, e.time_unix_nano) for e in s.events],
                        "status": Status.StatusCode.Name(s.status.code),
                        "status_message": s.status.message,
                        "resource": resource,
                        "scope": ss.scope.name,
                    })
        self._add(out)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")
