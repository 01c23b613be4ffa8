"""Diagnostic ``TRACE`` requests (Linkerd 1.3+): what the router did with a request,
appended to the answer.

A ``TRACE`` request with ``l5d-add-context: true`` gets, from every router it passes,
a block naming the router, the request's duration at that hop, the logical name, the bound
name, the bound address set, the endpoint chosen and the dtab steps from the logical name
to the bound name (Linkerd's ``DiagnosticTracer`` and ``RouterContextFormatter``):

    --- Router: outgoing ---
    request duration: 3 ms
    service name: /svc/dog
    client name: /$/inet/127.1/8080
    addresses: [127.0.0.1:8080]
    selected address: 127.0.0.1:8080
    dtab resolution:
      /svc/dog
      /srv/dog (/svc=>/srv)
      /$/inet/127.1/8080/dog (/srv=>/$/inet/127.1/8080)

``Max-Forwards`` is honoured as Linkerd does: 0 → the router answers itself (with its
block when asked for context), n > 0 → forwarded with n - 1, unparsable → 400.

The data plane calls :func:`plan` for each ``TRACE`` request, acts on the returned
:class:`Plan`, and for the context asks :func:`router_context` (once the request was
routed and answered) and :func:`append_context` to build the body.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Optional

#: Linkerd's request header asking for the routers' context
ADD_CONTEXT_HEADER = b"l5d-add-context"

PASS = "pass"                      # not a diagnostic request: route it as any other
BAD_REQUEST = "bad-request"        # Max-Forwards unparsable: 400 with BAD_MAX_FORWARDS
ANSWER = "answer"                  # Max-Forwards 0: answer 200 here (empty, or the context)
FORWARD = "forward"                # route it (with max_forwards if not None), maybe add context

BAD_MAX_FORWARDS = "Invalid value for Max-Forwards header"
CHUNKED_PLACEHOLDER = "Diagnostic trace encountered chunked response. Response content discarded."

_INT = re.compile(rb"[+-]?[0-9]{1,10}")


class Plan:
    """What to do with a ``TRACE`` request: ``action`` (one of the constants above),
    ``max_forwards`` (the value to send downstream; None = leave the header as it is) and
    ``add_context`` (append this router's block to the answer)."""

    __slots__ = ("action", "max_forwards", "add_context")

    def __init__(self, action: str, max_forwards: Optional[int] = None, add_context: bool = False) -> None:
        self.action = action
        self.max_forwards = max_forwards
        self.add_context = add_context

    def __repr__(self) -> str:
        return f"Plan({self.action}, max_forwards={self.max_forwards}, add_context={self.add_context})"


_PASS = Plan(PASS)


def _truthy(v: Optional[bytes]) -> bool:
    """Finagle's ``StringUtil.toBoolean``: "1" or "true" in any case."""
    return v is not None and v.strip().lower() in (b"1", b"true")


def plan(method: bytes, max_forwards: Optional[bytes], add_context: Optional[bytes]) -> Plan:
    """The decision table of Linkerd's ``DiagnosticTracer``."""
    if method != b"TRACE":
        return _PASS
    add = _truthy(add_context)
    mf: Optional[int] = None
    if max_forwards is not None:
        v = max_forwards.strip()
        if not _INT.fullmatch(v) or not -2**31 <= int(v) < 2**31:  # Java's Integer.parseInt
            return Plan(BAD_REQUEST)
        mf = int(v)
    if mf == 0:
        return Plan(ANSWER, None, add)
    if mf is not None and mf > 0:
        return Plan(FORWARD, mf - 1, add)
    if mf is None and add:
        return Plan(FORWARD, None, True)
    return _PASS  # a TRACE without Max-Forwards or context, or a negative Max-Forwards


# --- the context block ------------------------------------------------------------------------

def _dentry(node: dict[str, Any]) -> str:
    d = node.get("dentry")
    return f"{d['prefix']}=>{d['dst']}" if isinstance(d, dict) else ""


def resolution_steps(tree: dict[str, Any], bound_id: str) -> Optional[list[tuple[str, str]]]:
    """The (path, dentry) steps from the root of a delegate tree (its JSON, as
    ``interpreter.delegate`` gives it) to the leaf bound to ``bound_id``; None if no
    leaf is (Linkerd's ``DelegateTree.find``)."""
    kind = tree.get("type")
    path = str(tree.get("path", ""))
    if kind == "leaf":
        bound = tree.get("bound") or {}
        return [(path, _dentry(tree))] if bound.get("id") == bound_id else None
    if kind == "transformation":
        rest = resolution_steps(tree.get("tree") or {}, bound_id)
        if rest is None:
            return None
        name = str(tree.get("name", ""))
        if len(rest) == 1:  # switch the dentries so the list reads naturally, as Linkerd does
            return [(path, rest[0][1]), (rest[0][0], name)]
        return [(path, name)] + rest
    if kind == "delegate":
        rest = resolution_steps(tree.get("delegate") or {}, bound_id)
        return None if rest is None else [(path, _dentry(tree))] + rest
    children: Iterable[dict[str, Any]] = ()
    if kind == "alt":
        children = tree.get("alt") or ()
    elif kind == "union":
        children = [w.get("tree") or {} for w in tree.get("union") or ()]
    for child in children:
        rest = resolution_steps(child, bound_id)
        if rest is not None:
            return [(path, _dentry(tree))] + rest
    return None


def format_context(label: str, elapsed_ms: int, service: str, client: str, addresses: Optional[Iterable[str]],
                   selected: str, steps: Optional[list[tuple[str, str]]]) -> str:
    """Linkerd's ``RouterContextFormatter.formatRouterContext``, line for line."""
    lines = [f"  {p} ({d})" if d else f"  {p}" for p, d in steps or ()]
    return (f"--- Router: {label} ---\n"
            f"request duration: {elapsed_ms} ms\n"
            f"service name: {service}\n"
            f"client name: {client}\n"
            f"addresses: [{', '.join(addresses or ())}]\n"
            f"selected address: {selected}\n"
            f"dtab resolution:\n"
            + "".join(line + "\n" for line in lines))


async def router_context(interpreter: Any, dtab: Any, service: Any, bound_id: str, addresses: Optional[Iterable[str]],
                         selected: str, label: str, elapsed_ms: int) -> str:
    """This router's block: ``dtab`` is the dtab the request was bound with (the router's
    plus the request's), ``service`` the logical name (a ``Path``), ``bound_id`` the
    client's id text, ``addresses`` the bound address set as ``host:port`` texts (None
    when it was not bound), ``selected`` the endpoint used. The dtab steps come from the
    interpreter's delegator; an interpreter that cannot delegate leaves them out."""
    steps = None
    delegate = getattr(interpreter, "delegate", None)
    if delegate is not None and service is not None:
        try:
            steps = resolution_steps(await delegate(dtab, service), bound_id)
        except Exception:  # no delegation (timeout, unsupported): the rest still helps
            steps = None
    return format_context(label, elapsed_ms, str(service) if service is not None else "/", bound_id or "/",
                          addresses, selected, steps)


def append_context(body: bytes, context: str) -> bytes:
    """The answer's body with this router's block after it (Linkerd: the body trimmed,
    a blank line, the block)."""
    return body.strip() + b"\n\n" + context.encode("utf-8", "replace")


def chunked_placeholder(header_lines: Iterable[str], status: int, reason: str) -> bytes:
    """What replaces a streamed (chunked, or too long to hold) answer's body before the
    context is appended: its headers, its status and a note, as Linkerd writes it."""
    head = "\n".join(header_lines)
    return f"{head}\nHTTP {status} - {reason}\n{CHUNKED_PLACEHOLDER}".encode("utf-8", "replace")
