"""Request timeouts and the ``l5d-ctx-deadline`` header.

Two timeouts, as in Linkerd:

- ``totalTimeoutMs`` (service): from the moment the router has the request until the
  response head, covering every attempt and backoff. On expiry the router answers
  ``503`` with ``l5d-err`` (Finagle's ``GlobalRequestTimeoutException``) and the attempt
  in flight is abandoned (its backend connection closed, never reused).
- ``requestAttemptTimeoutMs`` (client): one attempt, connection set-up included. On
  expiry the attempt fails (``IndividualRequestTimeoutException``); a classifier that
  retries the method may retry it, else the router answers ``503``.

Like Finagle's streaming HTTP, a timeout covers the response *head*: once a response is
being relayed it is not cut short.

``l5d-ctx-deadline`` is ``"<timestamp ns> <deadline ns>"`` (wall clock, nanoseconds).
Several values combine to the strictest (latest timestamp, earliest deadline). The
router writes the combination of the incoming value and its own total timeout.

Unlike Linkerd, the router checks and enforces an incoming deadline (issue 17): a value
that is not two integers, whose deadline precedes its timestamp or whose timestamp is
more than ``MAX_SKEW_NS`` away from this host's clock (``garbage``, ``0 1``) is dropped;
a valid one bounds the request like ``totalTimeoutMs`` (``Lifecycle._incoming_deadline``:
503 with ``l5d-err`` once it has passed).
"""
from __future__ import annotations

import time
from typing import Iterable, Optional

from ..errors import RequestTimeout

TOTAL_TIMEOUT_EXC = "com.twitter.finagle.GlobalRequestTimeoutException"
ATTEMPT_TIMEOUT_EXC = "com.twitter.finagle.IndividualRequestTimeoutException"


class TotalTimeout(RequestTimeout):
    """totalTimeoutMs expired: never retried."""

    status = 503


class AttemptTimeout(RequestTimeout):
    """requestAttemptTimeoutMs expired for one attempt: retryable by the classifier."""

    status = 503


def parse_deadline(value: bytes) -> Optional[tuple[int, int]]:
    """``b"<ts> <deadline>"`` -> (ts_ns, deadline_ns); None if malformed (then ignored)."""
    parts = value.split()
    if len(parts) != 2:
        return None
    try:
        ts, dl = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if ts < 0 or dl < 0:
        return None
    return ts, dl


#: An incoming deadline whose timestamp is further than this from our clock is dropped:
#: it was not made by a peer with a working clock (Finagle writes "now").
MAX_SKEW_NS = 3600 * 10**9


def valid_deadline(value: bytes, now_ns: int) -> Optional[tuple[int, int]]:
    """``parse_deadline``, and None unless the timestamp is near ``now_ns`` and the
    deadline does not precede it."""
    d = parse_deadline(value)
    if d is None or d[0] == 0 or d[1] < d[0] or abs(d[0] - now_ns) > MAX_SKEW_NS:
        return None
    return d


def incoming_deadline(values: Iterable[bytes], now_ns: int) -> Optional[tuple[int, int]]:
    """The strictest of the valid incoming ``l5d-ctx-deadline`` values, or None. A proxy
    may have folded several header lines into one, comma-separated (RFC 9110 §5.3)."""
    return combine(d for d in (valid_deadline(p, now_ns) for v in values for p in v.split(b","))
                   if d is not None)


def combine(deadlines: Iterable[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """The strictest of several deadlines (Finagle's ``Deadline.combined``)."""
    out: Optional[tuple[int, int]] = None
    for ts, dl in deadlines:
        out = (ts, dl) if out is None else (max(out[0], ts), min(out[1], dl))
    return out


def deadline_header(timeout_s: Optional[float], incoming: Iterable[bytes] = ()) -> Optional[bytes]:
    """The ``l5d-ctx-deadline`` header line to send, or None when there is no deadline."""
    ds = [d for d in (parse_deadline(v) for v in incoming) if d is not None]
    if timeout_s is not None:
        now = time.time_ns()
        ds.append((now, now + int(timeout_s * 1e9)))
    d = combine(ds)
    if d is None:
        return None
    return b"l5d-ctx-deadline: %d %d\r\n" % d
