"""Reading dtabs from the outside world (HTTP bodies, config, files) with clear errors.

The dtab language lives in ``namerouter.dtab``; this module only turns its errors
into messages that say where the problem is (``line:col``) and reads the two wire
forms namerd accepts: dtab text and Linkerd's JSON dentry array.
"""
from __future__ import annotations

import json
from typing import Any

from namerouter.dtab import Dentry, Dtab, DtabSyntaxError, NameTree, Path, Prefix


class DtabParseError(ValueError):
    """A malformed dtab; ``str()`` names where, ``detail`` is the parser's message."""

    def __init__(self, message: str, detail: str = "", line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.detail = detail or message
        self.line = line
        self.column = column


def parse_dtab_at(text: str, where: str = "dtab") -> Dtab:
    """Parse dtab text; on error raise DtabParseError ``<where>:<line>:<col>: <msg>``."""
    try:
        return Dtab.read(text)
    except DtabSyntaxError as e:
        raise DtabParseError(f"{where}:{e.line}:{e.column}: {e}", str(e), e.line, e.column) from None


def parse_path(text: str) -> Path:
    """Parse a path (query parameters, CLI args); raises DtabSyntaxError."""
    return Path.read(text)


def dtab_from_json(body: bytes | str) -> Dtab:
    """Linkerd's JSON form ``[{"prefix": "/svc", "dst": "/#/io.l5d.fs"}, ...]``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise DtabParseError(f"invalid JSON dtab: {e}") from None
    if not isinstance(doc, list):
        raise DtabParseError("invalid JSON dtab: expected an array of {\"prefix\", \"dst\"} objects")
    dentries = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict) or not isinstance(item.get("prefix"), str) \
                or not isinstance(item.get("dst"), str):
            raise DtabParseError(
                f"invalid JSON dtab: entry {i} must be an object with string \"prefix\" and "
                f"\"dst\", got {json.dumps(item)}"
            )
        try:
            dentries.append(Dentry(Prefix.read(item["prefix"]), NameTree.read(item["dst"])))
        except DtabSyntaxError as e:
            raise DtabParseError(f"invalid JSON dtab: entry {i}: {e}", str(e)) from None
    return Dtab(dentries)


def dtab_to_json(dtab: Dtab) -> list[dict[str, Any]]:
    return dtab.to_json()


def dtab_to_text(dtab: Dtab) -> str:
    """The text form namerd stores and serves: Finagle's ``Dtab.show``."""
    return dtab.show()
