"""The metrics registry in InfluxDB's line protocol (Linkerd's ``io.l5d.influxdb``
telemeter, ``GET /admin/metrics/influxdb``, meant for Telegraf's ``inputs.exec`` or
``inputs.http``).

Shape, as Linkerd writes it: the metrics directly under one scope become the fields of
one line; the scope, with the router, server, service and client ids taken out as tags,
is the measurement, joined with ``:`` (``rt:service,host=…,rt=incoming,service=svc/web
requests=3,success=3``). Metrics with no scope go to the measurement ``root``. A stat
adds ``<name>_count``, ``_sum``, ``_avg``, ``_min``, ``_max``, ``_p50``, ``_p90``, ``_p95``,
``_p99``, ``_p999``, ``_p9999``. Every line carries the tag ``host``: the ``Host`` header
of the scrape request (``none`` without one). Tags are sorted by key, fields by name.

Differences from Linkerd, on purpose:

* tag values and field keys are escaped as the line protocol requires, and a backslash
  in them is written ``\\x5c`` (Linkerd writes them raw, so a Host header with a space,
  a comma or a trailing backslash breaks its output);
* NaN and infinite values are left out (the protocol has no spelling for them);
* a stat that has recorded nothing is left out (Linkerd: until its first snapshot);
* stats are lifetime summaries, as in ``/admin/metrics.json`` (Linkerd's are per-minute
  snapshots).
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

from ..metrics import Counter, Gauge, MetricsRegistry, Stat
from .metrics_export import split_name

_MEASUREMENT_BAD = re.compile(r"[^a-zA-Z0-9:]")
_STAT_FIELDS = (("count", "count"), ("sum", "sum"), ("avg", "avg"), ("min", "min"), ("max", "max"),
                ("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p999", "p9990"),
                ("p9999", "p9999"))


def escape_tag(text: str) -> str:
    """A tag key or value, or a field key: commas, equals signs and spaces get a
    backslash; line breaks (which no escape allows) become spaces. A backslash of the
    text itself is written ``\\x5c`` (as paths show it): InfluxDB cannot read a literal
    backslash before a separator or at the end of a value."""
    text = text.replace("\\", r"\x5c").replace("\r", " ").replace("\n", " ")
    return text.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _number(v: Any) -> str | None:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f):
        return None
    return repr(f)


def influx_lines(registry: MetricsRegistry, host: str = "none", known_ids: Iterable[str] = ()) -> str:
    known = list(known_ids)
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
    for name, m in registry.items():
        key, labels = split_name(name, known)
        if len(key) > 1:
            measurement, field = ":".join(key[:-1]), key[-1]
        else:
            measurement, field = "root", key[0]
        tags = tuple(sorted([(k, v) for k, v in labels if v] + [("host", host or "none")]))
        fields = groups.setdefault((_MEASUREMENT_BAD.sub("_", measurement), tags), {})
        if isinstance(m, Stat):
            if m.count == 0:
                continue
            summary = m.summary()
            for suffix, k in _STAT_FIELDS:
                value = _number(summary[k])
                if value is not None:
                    fields[f"{field}_{suffix}"] = value
        elif isinstance(m, (Counter, Gauge)):
            value = _number(m.value)
            if value is not None:
                fields[field] = value
    out = []
    for (measurement, tags), fields in groups.items():
        if not fields:
            continue
        tag_text = ",".join(f"{escape_tag(k)}={escape_tag(v)}" for k, v in tags)
        field_text = ",".join(f"{escape_tag(k)}={v}" for k, v in sorted(fields.items()))
        out.append(f"{measurement},{tag_text} {field_text}\n")
    return "".join(out)
