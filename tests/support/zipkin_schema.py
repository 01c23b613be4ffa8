"""Zipkin's v2 span model as a JSON Schema, transcribed from the ``definitions`` of
openzipkin/zipkin-api's ``zipkin2-api.yaml`` (``ListOfSpans``, ``Span``, ``Endpoint``,
``Annotation``, ``Tags``).

What the YAML states only in prose is made checkable here: ids are *lower-case* hex
("Encoded as 16 or 32 lowercase hex characters"), ``kind`` is one of the four listed,
``timestamp``/``duration`` are integers (epoch microseconds; "durations of less than one
are rounded up", so ``duration`` >= 1), tag values are strings. Unknown properties are
refused (``additionalProperties: false``): Zipkin would silently ignore a misspelt field,
a test should not.
"""
from __future__ import annotations

from typing import Any

import jsonschema

_HEX16 = "^[0-9a-f]{16}$"

ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "serviceName": {"type": "string"},
        "ipv4": {"type": "string", "format": "ipv4"},
        "ipv6": {"type": "string", "format": "ipv6"},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
    },
}

ANNOTATION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["timestamp", "value"],
    "properties": {
        "timestamp": {"type": "integer", "minimum": 0},
        "value": {"type": "string"},
    },
}

TAGS = {"type": "object", "additionalProperties": {"type": "string"}}

SPAN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["traceId", "id"],
    "properties": {
        "traceId": {"type": "string", "minLength": 16, "maxLength": 32, "pattern": "^([0-9a-f]{16}|[0-9a-f]{32})$"},
        "name": {"type": "string"},
        "parentId": {"type": "string", "minLength": 16, "maxLength": 16, "pattern": _HEX16},
        "id": {"type": "string", "minLength": 16, "maxLength": 16, "pattern": _HEX16},
        "kind": {"type": "string", "enum": ["CLIENT", "SERVER", "PRODUCER", "CONSUMER"]},
        "timestamp": {"type": "integer", "minimum": 0},
        "duration": {"type": "integer", "minimum": 1},
        "debug": {"type": "boolean"},
        "shared": {"type": "boolean"},
        "localEndpoint": ENDPOINT,
        "remoteEndpoint": ENDPOINT,
        "annotations": {"type": "array", "items": ANNOTATION},
        "tags": TAGS,
    },
}

LIST_OF_SPANS = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": SPAN}

_VALIDATOR = jsonschema.Draft7Validator(LIST_OF_SPANS, format_checker=jsonschema.FormatChecker())


def problems(doc: Any) -> list[str]:
    """Every way ``doc`` departs from the model (empty when it conforms), plus the two
    rules Zipkin's collector enforces beyond the schema: ids are not all zeros."""
    out = [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
           for e in _VALIDATOR.iter_errors(doc)]
    if isinstance(doc, list):
        for i, s in enumerate(doc):
            if not isinstance(s, dict):
                continue
            for key in ("traceId", "id", "parentId"):
                v = s.get(key)
                if isinstance(v, str) and v and set(v) == {"0"}:
                    out.append(f"{i}/{key}: all zeros")
    return out
