"""``io.l5d.tracelog``: every span of a sampled request written to the log.

As Linkerd's telemeter: logger ``io.l5d.tracelog``, the configured ``level``, and its own
``sampleRate`` for traces nobody upstream decided on (a trace that carries a decision is
logged when it is sampled). Linkerd logged each Finagle record; we log one line per span,
the span in Zipkin's v2 JSON, so a line can be read by a person or a program.
"""
from __future__ import annotations

import json
import logging

from .span import TraceRecord
from .tracer import FOLLOWS, TraceTelemeter
from .zipkin import span_json

#: Linkerd's (TwitterServer's) level names → Python logging levels; OFF logs nothing.
LEVELS = {
    "ALL": 1, "TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
    "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL, "FATAL": logging.CRITICAL, "OFF": None,
}

logger = logging.getLogger("io.l5d.tracelog")


class TracelogTelemeter(TraceTelemeter):
    kind = "io.l5d.tracelog"
    mode = FOLLOWS

    def __init__(self, sample_rate: float, level: str = "INFO") -> None:
        super().__init__(sample_rate)
        self.level = LEVELS[level.upper()]

    def record(self, rec: TraceRecord) -> None:
        level = self.level
        if level is None or not logger.isEnabledFor(level):
            return
        for span in rec.spans():
            logger.log(level, "%s", json.dumps(span_json(span), separators=(",", ":")))
