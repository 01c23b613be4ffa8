"""HTTP response classifiers (Linkerd's ``responseClassifier`` kinds).

A classifier turns (request method, outcome) into one of three classes, as Finagle's
``ResponseClass``: success, failure, retryable failure. The outcome is a status code
or an exception-like failure (``None``): per-attempt timeout, connection closed or
reset before the response, connect failure. As in Linkerd's ``ResponseClassifiers``:

- ``nonRetryable5XX`` (default): 5XX and exceptions are failures, never retried;
- ``retryableRead5XX``: same, but GET/HEAD/OPTIONS/TRACE failures are retryable;
- ``retryableIdempotent5XX``: read methods plus PUT and DELETE;
- ``retryableAll5XX``: every method (POST and PATCH too);
- ``allSuccessful``: everything is a success (nothing retried, nothing counted failed).

Whether a retryable failure is actually retried also depends on the request (chunked or
over-the-buffer bodies never are) and on the budget; that is ``runtime.py``'s business.
Classification is a frozenset lookup and a comparison: it runs once per attempt.
"""
from __future__ import annotations

from typing import Optional

SUCCESS = 0
FAILURE = 1
RETRYABLE = 2

READ_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
IDEMPOTENT_METHODS = READ_METHODS | {b"PUT", b"DELETE"}


class Classifier:
    """One configured classifier kind."""

    __slots__ = ("kind", "retryable_methods", "all_successful", "retry_any")

    def __init__(self, kind: str, retryable_methods: frozenset[bytes], all_successful: bool = False,
                 retry_any: bool = False) -> None:
        self.kind = kind
        self.retryable_methods = retryable_methods
        self.all_successful = all_successful
        #: every method is retryable (retryableAll5XX), including ones we do not list
        self.retry_any = retry_any

    @property
    def can_retry(self) -> bool:
        """Whether this classifier ever answers RETRYABLE."""
        return self.retry_any or bool(self.retryable_methods)

    def method_retryable(self, method: bytes) -> bool:
        return self.retry_any or method in self.retryable_methods

    def classify_failure(self, method: bytes, err: object) -> int:
        """A failure without response (``err``: the RouterError; HTTP/2 classifiers look
        at its reset code)."""
        return self.classify(method, None)

    def classify(self, method: bytes, status: Optional[int]) -> int:
        """``status`` is the response status, or ``None`` for a failure without response."""
        if self.all_successful:
            return SUCCESS
        if status is not None and status < 500:
            return SUCCESS
        if self.retry_any or method in self.retryable_methods:
            return RETRYABLE
        return FAILURE

    def __repr__(self) -> str:
        return f"Classifier({self.kind})"


_BY_NAME = {
    "nonRetryable5XX": lambda k: Classifier(k, frozenset()),
    "retryableRead5XX": lambda k: Classifier(k, READ_METHODS),
    "retryableIdempotent5XX": lambda k: Classifier(k, IDEMPOTENT_METHODS),
    "retryableAll5XX": lambda k: Classifier(k, frozenset(), retry_any=True),
    "allSuccessful": lambda k: Classifier(k, frozenset(), all_successful=True),
}

KINDS = tuple(f"io.l5d.{proto}.{name}" for proto in ("http", "h2") for name in _BY_NAME)


def make_classifier(kind: Optional[str]) -> Classifier:
    """The classifier for a ``responseClassifier.kind`` (None: Linkerd's default)."""
    kind = kind or "io.l5d.http.nonRetryable5XX"
    for prefix in ("io.l5d.http.", "io.l5d.h2."):
        if kind.startswith(prefix):
            make = _BY_NAME.get(kind[len(prefix):])
            if make is not None:
                return make(kind)
    raise ValueError(f"responseClassifier.kind: unknown classifier {kind!r}; known: {', '.join(KINDS)}")


DEFAULT = make_classifier(None)
