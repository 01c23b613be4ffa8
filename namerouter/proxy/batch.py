"""Write coalescing: one send per connection per read event.

Handling one read (a request head, a response head plus body) produces several
``write`` calls on the same connection; on loopback each ``transport.write`` is a
``send`` syscall costing more than the Python that produced it. While a protocol's
``data_received`` runs, writes are collected per connection and flushed when it
returns, so a small response leaves as one segment. Outside ``data_received``
(coroutines, timers) writes go straight to the transport.
"""
from __future__ import annotations

from typing import Any, Optional


class Coalescing:
    """Base of the protocols whose writes join the loop's batch (both connection sides).

    ``transport`` is None once closed; ``out`` holds the pending chunks (None when
    nothing waits)."""

    transport: Any = None
    out: Optional[list[bytes]] = None

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is None:
            return
        if BATCH.depth:
            out = self.out
            if out is None:
                self.out = [data]
                BATCH.dirty.append(self)
            else:
                out.append(data)
        else:
            t.write(data)

    def flush(self) -> None:
        out = self.out
        if out is not None:
            self.out = None
            t = self.transport
            if t is not None:
                t.write(out[0] if len(out) == 1 else b"".join(out))


class Batch:
    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[Coalescing] = []
        #: other connections with output to flush (HTTP/2's, whose frames ``h2`` collects;
        #: anything with ``flush()``)
        self.others: list[Any] = []

    def enter(self) -> None:
        self.depth += 1

    def leave(self) -> None:
        """End of a read event: flush every connection that was written to."""
        self.depth -= 1
        if self.depth:
            return
        if self.dirty:
            dirty, self.dirty = self.dirty, []
            for conn in dirty:
                conn.flush()
        if self.others:
            others, self.others = self.others, []
            for c in others:
                c.flush()


#: The loop's batch (the data plane runs on one event loop per process).
BATCH = Batch()
