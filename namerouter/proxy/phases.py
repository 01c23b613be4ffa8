"""The states of a request lifecycle (``lifecycle.py``), changed only by its methods.

``Phase`` is where the exchange is; the phases are ordered so that every phase before
``RESPONDING`` has sent nothing to the client::

    WAITING -> ROUTING -> CONNECTING -> SENT -> [HOLDING ->] RESPONDING -> ANSWERED -> DONE
                  ^                      |
                  +-- RETRYING <- DISCARDING   (a retryable response, dropped; backoff)

``HOLDING`` (HTTP/2): the response is kept, unsent, until its end can classify it (gRPC's
status comes in trailers); then it is relayed, or discarded and the request retried.

``Upload`` is whether the request body is still arriving.
"""
from __future__ import annotations

import enum


class Phase(enum.IntEnum):
    """Where the exchange is. Ordered: every phase before RESPONDING has sent nothing to
    the client."""

    WAITING = 0      # queued behind another request of its connection (HTTP/1 pipelining)
    ROUTING = 1      # identifying, binding, picking (waiting for a binding: a task)
    CONNECTING = 2   # an endpoint is picked; waiting for a connection (a task)
    SENT = 3         # the request is on an upstream connection; no response head yet
    HOLDING = 4      # a response is kept (not sent) until it can be classified (h2 policy)
    DISCARDING = 5   # a retryable response is read and dropped; a retry follows
    RETRYING = 6     # between attempts (backoff)
    RESPONDING = 7   # the response head went to the client; the body is streaming
    ANSWERED = 8     # the answer is complete; the rest of the request body is dropped
    DONE = 9         # finished (or abandoned) and recorded


class Upload(enum.IntEnum):
    RECEIVING = 0    # request body pieces may still arrive
    COMPLETE = 1     # the request is fully received


# The members as module globals: reading an Enum member through its class costs several
# times a global lookup, and the hot path reads them a dozen times per request.
WAITING, ROUTING, CONNECTING, SENT, HOLDING, DISCARDING, RETRYING, RESPONDING, ANSWERED, DONE = Phase
RECEIVING, COMPLETE = Upload
