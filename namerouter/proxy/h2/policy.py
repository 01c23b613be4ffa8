"""Retries of h2 routers: Linkerd's ClassifiedRetryFilter on the request lifecycle.

What differs from HTTP/1.1 (``policy/runtime.py``, which this extends):

- **Request buffer.** Whatever the framing (gRPC bodies have no Content-Length), the
  request stream is kept for a replay while it fits ``retryBufferSize.requestBytes``
  (16383); past that it is never retried (``retries/request_stream_too_long``). A
  request still streaming can be retried: the replay sends what was kept and the rest
  follows as it arrives.
- **Response hold.** When the classifier cannot classify a response by its head (a
  gRPC response whose ``grpc-status`` comes in trailers) and a retry is possible, the
  response is *held* (lifecycle phase HOLDING) until its stream ends — at most
  ``retryBufferSize.responseBytes`` of it (else ``response_stream_too_long``) and at
  most ``classificationTimeoutMs`` (100; else ``classification_timeout``). Then it is
  classified: retryable and the budget allows → dropped and the request sent again;
  otherwise relayed as held, and the rest streams on.
- **Failures** are classified with the stream's reset code (``compliant`` retries a
  REFUSED_STREAM).
- **Streams classified at their end.** A response relayed before its class was known
  (no retry possible, or released from a hold unclassified) is classified by its
  trailers when they arrive (``on_trailers``), or as a stream that ended without them
  when the exchange finishes; the lifecycle records that verdict (``lc.failed``), so
  metrics and the trace see a failed ``grpc-status`` as a failure.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ...metrics import Counter, MetricsRegistry
from ..errors import RouterError
from ..lifecycle import HOLD
from ..message import EMPTY_BLOCK as EMPTY
from ..message import HeaderBlock, ResponseHead
from ..phases import DONE, HOLDING
from ..policy.classifiers import RETRYABLE, SUCCESS
from ..policy.runtime import _FAILURE_HDR, _RETRYABLE_HDR, _SUCCESS_HDR, RequestPolicy, ServicePolicy
from ..policy.static_config import get
from ..timers import Timer
from .classifiers import make_h2_classifier
from .config import DEFAULT_CLASSIFICATION_TIMEOUT_MS, DEFAULT_RETRY_BUFFER
from .heads import trailer_grpc_status

if TYPE_CHECKING:  # pragma: no cover
    from ..lifecycle import Lifecycle


class H2ServicePolicy(ServicePolicy):
    """The service policy of one name in an h2 router."""

    classifier: Any  # classifiers.py: H2StatusClassifier or GrpcClassifier

    def __init__(self, keys: dict[str, Any], registry: MetricsRegistry, prefix: str,
                 attempt_timeouts_possible: bool, wheel: Any = None, headers: bool = True) -> None:
        super().__init__(keys, registry, prefix, attempt_timeouts_possible, wheel, headers)
        t = keys.get("classificationTimeoutMs")
        self.classification_timeout_s = (t or DEFAULT_CLASSIFICATION_TIMEOUT_MS) / 1000.0
        buf = keys.get("retryBufferSize")
        req = get(buf, "requestBytes")
        resp = get(buf, "responseBytes")
        self.request_bytes: int = DEFAULT_RETRY_BUFFER if req is None else req
        self.response_bytes: int = DEFAULT_RETRY_BUFFER if resp is None else resp
        p = prefix + "retries/"
        self.response_too_long: Counter = registry.counter(p + "response_stream_too_long")
        self.classification_timeouts: Counter = registry.counter(p + "classification_timeout")

    def make_classifier(self, block: Any) -> Any:
        return make_h2_classifier(block)

    def begin(self, lc: "Lifecycle") -> "H2RequestPolicy":
        return H2RequestPolicy(lc, self)


class H2RequestPolicy(RequestPolicy):
    """One h2 request's retry state (see the module docstring)."""

    __slots__ = ("held", "held_chunks", "held_bytes", "trailers_held", "hold_t", "open_lc", "open_resp")

    svc: H2ServicePolicy

    def __init__(self, lc: "Lifecycle", svc: H2ServicePolicy) -> None:
        super().__init__(lc, svc)
        self.replayable = lc.head.upgrade is None and svc.request_bytes > 0
        self.replay = [] if self.replayable else None
        self.held: Optional[ResponseHead] = None
        self.held_chunks: list[bytes] = []
        self.held_bytes = 0
        self.trailers_held: Optional[list[tuple[bytes, bytes]]] = None
        self.hold_t: Optional[Timer] = None
        #: a response relayed before it could be classified (see the module docstring)
        self.open_lc: Optional["Lifecycle"] = None
        self.open_resp: Optional[ResponseHead] = None

    # --- request buffer -------------------------------------------------------------------
    def keep(self, chunk: bytes) -> None:
        r = self.replay
        if r is not None:
            self.replay_bytes += len(chunk)
            if self.replay_bytes > self.svc.request_bytes:
                self.replay = None
                self.replayable = False
            else:
                r.append(chunk)

    def can_replay(self, lc: "Lifecycle") -> bool:
        return self.replayable

    # --- responses ------------------------------------------------------------------------------
    def on_response(self, lc: "Lifecycle", resp: ResponseHead) -> Any:
        svc = self.svc
        cls = svc.classifier.early(lc.head.method, resp)
        if cls is None:
            if svc.classifier.can_retry and self.replayable and not getattr(resp, "end_stream", False):
                self._hold(lc, resp)
                return HOLD
            self._done()
            self._classify_later(lc, resp)  # relayed now; classified when the stream ends
            return EMPTY
        self.klass = cls
        if cls != SUCCESS:
            code = getattr(resp, "grpc_status", None)  # a trailers-only gRPC answer
            lc.why = f"grpc-status {code}" if code is not None else None
        if cls == RETRYABLE:
            if not self.replayable:
                svc.stream_too_long.value += 1
            elif self._withdraw():
                self._cancel_attempt()
                self._record_attempt(lc, resp.status)
                return None
        self._done()
        return self._headers(cls)

    def _headers(self, cls: int) -> HeaderBlock:
        if not self.svc.headers:
            return EMPTY
        if cls == SUCCESS:
            return _SUCCESS_HDR
        return _RETRYABLE_HDR if cls == RETRYABLE else _FAILURE_HDR

    def _hold(self, lc: "Lifecycle", resp: ResponseHead) -> None:
        self._cancel_attempt()  # like Finagle's timeout filter, the attempt ends at the head
        self.held = resp
        self.held_chunks = []
        self.held_bytes = 0
        self.trailers_held = None
        self.hold_t = self.wheel.after(self.svc.classification_timeout_s, H2RequestPolicy._hold_expired, self)

    def held_body(self, lc: "Lifecycle", chunk: bytes) -> None:
        self.held_chunks.append(chunk)
        self.held_bytes += len(chunk)
        if self.held_bytes > self.svc.response_bytes:
            self.svc.response_too_long.value += 1
            self._release(lc, None)

    def held_trailers(self, lc: "Lifecycle", fields: list[tuple[bytes, bytes]]) -> None:
        self.trailers_held = fields

    def held_end(self, lc: "Lifecycle") -> bool:
        """The held response ended: True = retry it (the lifecycle drops it), else relayed."""
        self._stop_hold()
        resp = self.held
        assert resp is not None
        cls = self.svc.classifier.stream(lc.head.method, resp, self.trailers_held)
        if cls == RETRYABLE and self._withdraw():
            self._clear_held()
            self._record_attempt(lc, resp.status)
            return True
        self.klass = cls
        if cls != SUCCESS:
            code = trailer_grpc_status(self.trailers_held)
            lc.why = f"grpc-status {code}" if code is not None else "stream ended without grpc-status"
        self._release(lc, cls)
        return False

    def _hold_expired(self) -> None:
        self.hold_t = None
        lc = self.lc
        if lc is None or lc.phase is not HOLDING:
            return
        self.svc.classification_timeouts.value += 1
        self._release(lc, None)

    def _release(self, lc: "Lifecycle", cls: Optional[int]) -> None:
        """Relay the held response (``cls`` None: not classified yet)."""
        self._stop_hold()
        resp, chunks, trailers = self.held, self.held_chunks, self.trailers_held
        self._clear_held()
        self._done()
        if resp is None:
            return
        if cls is None:
            self._classify_later(lc, resp)
        lc.release_held(resp, self._headers(cls) if cls is not None else EMPTY, chunks, trailers)

    # --- streams classified at their end -----------------------------------------------------------
    def _classify_later(self, lc: "Lifecycle", resp: ResponseHead) -> None:
        self.open_lc = lc
        self.open_resp = resp

    def on_trailers(self, lc: "Lifecycle", fields: list[tuple[bytes, bytes]]) -> None:
        """The trailers of a relayed response: classify it by them."""
        self._classify_open(fields)

    def _classify_open(self, trailers: Optional[list[tuple[bytes, bytes]]]) -> None:
        lc, resp = self.open_lc, self.open_resp
        if lc is None or resp is None:
            return
        self.open_lc = self.open_resp = None
        cls = self.svc.classifier.stream(lc.head.method, resp, trailers)
        if cls != SUCCESS and not lc.failed:
            lc.failed = True
            code = trailer_grpc_status(trailers)
            lc.why = f"grpc-status {code}" if code is not None else "stream ended without grpc-status"

    def _stop_hold(self) -> None:
        t = self.hold_t
        if t is not None:
            self.hold_t = None
            t.cancel()

    def _clear_held(self) -> None:
        self.held = None
        self.held_chunks = []
        self.held_bytes = 0
        self.trailers_held = None

    # --- failures ------------------------------------------------------------------------------
    def on_fail(self, lc: "Lifecycle", err: RouterError) -> bool:
        self._stop_hold()
        self._clear_held()
        up = lc.up
        if up is not None and getattr(up, "reset_code", None) is not None:
            err.reset_code = up.reset_code  # type: ignore[attr-defined]
        return super().on_fail(lc, err)

    def finish(self) -> None:
        self._stop_hold()
        super().finish()
        if self.open_lc is not None and self.open_lc.phase is DONE:
            self._classify_open(None)  # the exchange is over and no trailers came
