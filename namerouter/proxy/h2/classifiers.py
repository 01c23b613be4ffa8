"""Response classifiers of h2 routers (Linkerd's ``H2ClassifierConfig`` kinds).

An h2 classifier answers at two moments, as Linkerd's ``H2Classifier`` does:

- ``early(method, resp)`` when the response head arrives: a class, or None when only
  the end of the stream can tell;
- ``stream(method, resp, trailers)`` when the stream ended (``trailers`` None when it
  ended without them);
- ``classify_failure(method, err)`` for a failure without response.

``io.l5d.h2.{nonRetryable5XX, retryableRead5XX, retryableIdempotent5XX,
retryableAll5XX, allSuccessful}`` classify by HTTP status like their HTTP twins and
always answer at the head (Linkerd also holds 2xx streams of retryable methods to see
a mid-stream reset; we relay them at once: see docs/linkerd-compatibility.md).

The gRPC kinds read ``grpc-status`` — from the head of a trailers-only response (early)
or from the trailers: ``successStatusCodes`` (default ``[0]``) are successes; the rest
are failures, retryable when ``neverRetryable`` never, ``alwaysRetryable`` always,
``default`` for UNAVAILABLE (14), ``compliant`` for UNAVAILABLE plus HTTP 429/502/503/504
and a REFUSED_STREAM reset, ``retryableStatusCodes`` for the listed codes. A 4xx/5xx
response without ``grpc-status`` is a failure (retryable only under ``compliant``'s
HTTP rule); a stream that ended without ``grpc-status`` is a failure.
"""
from __future__ import annotations

from typing import Any, Optional

from h2.errors import ErrorCodes

from ..message import ResponseHead
from ..policy.classifiers import FAILURE, RETRYABLE, SUCCESS, Classifier, make_classifier
from .heads import GRPC_UNAVAILABLE, trailer_grpc_status


class H2StatusClassifier:
    """The HTTP-status kinds: a :class:`Classifier` of ``policy/classifiers.py``."""

    grpc = False

    def __init__(self, kind: str) -> None:
        self.base: Classifier = make_classifier(kind)
        self.kind = kind
        self.can_retry = self.base.can_retry

    def classify(self, method: bytes, status: Optional[int]) -> int:
        return self.base.classify(method, status)

    def early(self, method: bytes, resp: ResponseHead) -> Optional[int]:
        return self.base.classify(method, resp.status)

    def stream(self, method: bytes, resp: ResponseHead, trailers: Any) -> int:
        return self.base.classify(method, resp.status)

    def classify_failure(self, method: bytes, err: object) -> int:
        return self.base.classify(method, None)


class GrpcClassifier:
    """The gRPC kinds (see the module docstring)."""

    grpc = True

    def __init__(self, kind: str, retryable_codes: Optional[frozenset[int]], success_codes: frozenset[int],
                 http_rule: bool = False) -> None:
        self.kind = kind
        #: None = every failure code is retryable (alwaysRetryable)
        self.retryable_codes = retryable_codes
        self.success_codes = success_codes
        #: compliant: HTTP 429/502/503/504 and REFUSED_STREAM are retryable too
        self.http_rule = http_rule
        self.can_retry = retryable_codes is None or bool(retryable_codes) or http_rule

    def _grpc(self, code: int) -> int:
        if code in self.success_codes:
            return SUCCESS
        rc = self.retryable_codes
        return RETRYABLE if rc is None or code in rc else FAILURE

    def _http(self, status: int) -> int:
        if self.http_rule and status in (429, 502, 503, 504):
            return RETRYABLE
        return FAILURE

    def early(self, method: bytes, resp: ResponseHead) -> Optional[int]:
        code = getattr(resp, "grpc_status", None)
        if code is not None:
            return self._grpc(code)
        if resp.status >= 400:
            return self._http(resp.status)
        return None

    def stream(self, method: bytes, resp: ResponseHead, trailers: Any) -> int:
        early = self.early(method, resp)
        if early is not None:
            return early
        code = trailer_grpc_status(trailers)
        return FAILURE if code is None else self._grpc(code)

    def classify(self, method: bytes, status: Optional[int]) -> int:
        """By HTTP status alone (what the shared policy code asks): 4xx/5xx fail."""
        if status is None:
            return FAILURE
        return self._http(status) if status >= 400 else SUCCESS

    def classify_failure(self, method: bytes, err: object) -> int:
        if self.http_rule and getattr(err, "reset_code", None) == ErrorCodes.REFUSED_STREAM:
            return RETRYABLE
        return FAILURE


def make_h2_classifier(block: Any) -> Any:
    """The classifier of an h2 service block's ``responseClassifier`` (None: Linkerd's
    default, ``io.l5d.h2.nonRetryable5XX``)."""
    def get(key: str) -> Any:
        if block is None:
            return None
        return block.get(key) if isinstance(block, dict) else getattr(block, key, None)

    kind = get("kind") or "io.l5d.h2.nonRetryable5XX"
    if not kind.startswith("io.l5d.h2.grpc."):
        if not kind.startswith("io.l5d.h2."):
            raise ValueError(f"responseClassifier.kind: {kind!r} is not an h2 classifier")
        return H2StatusClassifier(kind)
    success = frozenset(get("successStatusCodes") or (0,))
    name = kind[len("io.l5d.h2.grpc."):]
    if name == "neverRetryable":
        return GrpcClassifier(kind, frozenset(), success)
    if name == "alwaysRetryable":
        return GrpcClassifier(kind, None, success)
    if name == "default":
        return GrpcClassifier(kind, frozenset((GRPC_UNAVAILABLE,)), success)
    if name == "compliant":
        return GrpcClassifier(kind, frozenset((GRPC_UNAVAILABLE,)), success, http_rule=True)
    if name == "retryableStatusCodes":
        codes = get("retryableStatusCodes")
        if codes is None:
            raise ValueError("responseClassifier.retryableStatusCodes: required for " + kind)
        return GrpcClassifier(kind, frozenset(codes), success)
    raise ValueError(f"responseClassifier.kind: unknown gRPC classifier {kind!r}")
