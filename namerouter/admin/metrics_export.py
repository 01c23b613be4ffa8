"""Export a MetricsRegistry as Linkerd's ``/admin/metrics.json`` and as Prometheus text.

JSON: flat ``{name: value}``; a stat expands to ``name.count``, ``.sum``, ``.avg``,
``.min``, ``.max``, ``.p50``, ``.p90``, ``.p95``, ``.p99``, ``.p9990``, ``.p9999``.

Prometheus: Linkerd's telemeter turns scopes into labels — ``rt/<label>/…`` gives
``rt="<label>"``, ``…/server/<ip>/<port>/…`` gives ``server="<ip>/<port>"``,
``…/service/<name>/…`` ``service="<name>"``, ``…/client/<id>/…`` ``client="<id>"`` —
and joins the rest with ``:`` (``rt:server:requests{rt="outgoing",server="0.0.0.0/4140"}``).
Stats become a summary (quantiles 0 … 1, ``_count``, ``_sum``) plus an ``_avg`` gauge.

Our registry is flat, so a service name or client id (themselves paths with ``/``) must
be told apart from the metric name after it: the id ends before the first segment that
is a known metric or sub-scope name (``requests``, ``status``, ``service``, …); the
caller may also pass the live ids (``known_ids``) to make the split exact.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Optional

from ..metrics import Counter, Gauge, MetricsRegistry, Stat

STAT_KEYS = ("count", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99", "p9990", "p9999")

#: Finagle/Linkerd metric and sub-scope names that can follow a service name or client id.
METRIC_WORDS = frozenset("""
requests success failures status request_latency_ms connect_latency_ms connection_duration
connection_received_bytes connection_sent_bytes connections connects closes pending retries
sourcedfailures exn dispatcher loadbalancer failure_accrual service sent_bytes received_bytes
handletime_us request_payload_bytes response_payload_bytes transit_latency_ms dtab load size
available busy closed removes adds updates rebuilds max_effort_exhausted pool_size pool_waiters
pool_num_waited pool_cached requeues active stream err time_to_first_byte_ms total_latency_ms
endpoints failed_connect_latency_ms cancelled_connects timeouts bind binding removed_for_ms
revivals probes meanweight algorithm p2c ewma roundRobin budget per_request classifier
""".split())


def _num(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


def metrics_flat(registry: MetricsRegistry, q: Optional[str] = None,
                 pattern: Optional[str] = None) -> dict[str, Any]:
    """Linkerd's flat metrics.json dict. ``q`` keeps one subtree (a name prefix at a
    ``/`` boundary); ``pattern`` keeps names matching a regex (Finagle's ``filter``)."""
    q = q.strip("/") if q else None
    rx = re.compile(pattern) if pattern else None
    out: dict[str, Any] = {}
    for name, m in registry.items():
        if q and not (name == q or name.startswith(q + "/")):
            continue
        if rx and not rx.search(name):
            continue
        if isinstance(m, Stat):
            summary = m.summary()
            for k in STAT_KEYS:
                out[f"{name}.{k}"] = _num(summary[k])
        elif isinstance(m, (Counter, Gauge)):
            out[name] = _num(m.value)
    return out


def metrics_tree(flat: dict[str, Any]) -> dict[str, Any]:
    """Nest flat names on ``/`` (``?tree=1``); a scope's own value sits under ``""``."""
    root: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split("/")
        node = root
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                child = node[p] = {"": child}
            node = child
        leaf = parts[-1]
        if isinstance(node.get(leaf), dict):
            node[leaf][""] = value
        else:
            node[leaf] = value
    return root


# -- Prometheus -------------------------------------------------------------------------

_NAME_BAD = re.compile(r"[^a-zA-Z0-9:]")
_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _escape_label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return repr(f)


def _take_id(parts: list[str], i: int, known: frozenset[str]) -> int:
    """End index (exclusive) of the id starting at parts[i]."""
    for j in range(len(parts), i, -1):  # exact: the longest live id wins
        if "/".join(parts[i:j]) in known:
            return j
    for j in range(i + 1, len(parts)):
        if parts[j] in METRIC_WORDS:
            return j
    return max(i + 1, len(parts) - 1)


def split_name(name: str, known_ids: Iterable[str] = ()) -> tuple[list[str], list[tuple[str, str]]]:
    """``rt/out/service/svc/web/requests`` → (["rt","service","requests"],
    [("rt","out"),("service","svc/web")])."""
    known = frozenset(k.strip("/") for k in known_ids)
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != "rt":
        return parts, []
    key = ["rt"]
    labels = [("rt", parts[1])]
    i = 2
    scope = parts[i] if i < len(parts) else ""
    if scope == "server" and len(parts) > i + 3:
        key.append("server")
        labels.append(("server", f"{parts[i + 1]}/{parts[i + 2]}"))
        i += 3
    elif scope in ("service", "client") and len(parts) > i + 2:
        end = _take_id(parts, i + 1, known)
        key.append(scope)
        labels.append((scope, "/".join(parts[i + 1:end])))
        i = end
        if scope == "client" and i < len(parts) - 2 and parts[i] == "service":
            end = _take_id(parts, i + 1, known)
            key.append("service")
            labels.append(("service", "/".join(parts[i + 1:end])))
            i = end
    key.extend(parts[i:])
    return key, labels


def _labels(labels: list[tuple[str, str]]) -> str:
    if not labels:
        return ""
    return "{" + ", ".join(f'{_LABEL_BAD.sub("_", k)}="{_escape_label_value(v)}"' for k, v in labels) + "}"


def prometheus_text(registry: MetricsRegistry, prefix: str = "", known_ids: Iterable[str] = ()) -> str:
    """The registry in the Prometheus text exposition format (version 0.0.4)."""
    known = list(known_ids)
    families: dict[str, tuple[str, list[str]]] = {}

    def add(family: str, mtype: str, line: str) -> None:
        t, lines = families.setdefault(family, (mtype, []))
        if t != mtype:  # the same name used with two types: let Prometheus infer
            families[family] = ("untyped", lines)
        lines.append(line)

    for name, m in registry.items():
        key, labels = split_name(name, known)
        base = _NAME_BAD.sub("_", prefix + ":".join(key))
        if base[:1].isdigit():
            base = "_" + base
        if isinstance(m, Stat):
            s = m.summary()
            quantiles = (("0", s["min"]), ("0.5", s["p50"]), ("0.9", s["p90"]), ("0.95", s["p95"]),
                         ("0.99", s["p99"]), ("0.999", s["p9990"]), ("0.9999", s["p9999"]), ("1", s["max"]))
            for q, v in quantiles:
                add(base, "summary", f"{base}{_labels(labels + [('quantile', q)])} {_fmt(v)}")
            add(base, "summary", f"{base}_count{_labels(labels)} {_fmt(s['count'])}")
            add(base, "summary", f"{base}_sum{_labels(labels)} {_fmt(s['sum'])}")
            add(base + "_avg", "gauge", f"{base}_avg{_labels(labels)} {_fmt(s['avg'])}")
        elif isinstance(m, Counter):
            add(base, "counter", f"{base}{_labels(labels)} {_fmt(m.value)}")
        elif isinstance(m, Gauge):
            add(base, "gauge", f"{base}{_labels(labels)} {_fmt(m.value)}")
    out: list[str] = []
    for family in sorted(families):
        mtype, lines = families[family]
        out.append(f"# TYPE {family} {mtype}")
        out.extend(lines)
    return "\n".join(out) + ("\n" if out else "")
