"""Errors raised by the dtab language."""
from __future__ import annotations


class DtabSyntaxError(ValueError):
    """Malformed path, prefix, name tree, dentry or dtab.

    ``str(err)`` is Finagle's message, byte for byte:
    ``<expected> expected but <found> found at '<input with [x] marker>'``.
    ``line`` and ``column`` (1-based) locate the offending character for tools.
    """

    def __init__(self, message: str, text: str = "", offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.text = text
        self.offset = offset
        before = text[:offset]
        self.line = before.count("\n") + 1
        self.column = offset - (before.rfind("\n") + 1) + 1

    def __str__(self) -> str:
        return self.message


class BindingError(Exception):
    """Binding failed (depth limit, unknown namer, namer error)."""


class MaxDepthExceeded(BindingError):
    """Binding followed more than ``depth`` lookups along one branch (a loop, usually).

    Binding uses Finagle 19.4+'s message; delegation (Linkerd's ``delegate``) keeps the
    older fixed ``Max recursion level reached.``, passed as ``message``.
    """

    def __init__(self, depth: int = 100, message: str | None = None) -> None:
        super().__init__(message or f"Max recursion level: {depth} reached in Namer lookup")
        self.depth = depth


class BindingTooLarge(BindingError):
    """A binding or delegation needed more than its budget of steps, or would produce a
    tree too large or too deep (see ``namerouter.dtab.binding``): a dtab that loops
    through alternatives or fans out exponentially (``/x => /x/a & /x/b``), where
    Finagle would effectively hang. Never swallowed by Union/Alt handling: the whole
    call fails. ``str()`` says which limit was hit.
    """

    def __init__(self, limit: int, detail: str = "") -> None:
        super().__init__(f"Binding too large: {detail or f'more than {limit} lookup steps'}")
        self.limit = limit


class UnknownNamer(BindingError):
    """A ``/$/<name>`` path whose system namer does not exist."""

    def __init__(self, namer: str, path: str) -> None:
        super().__init__(f"namer not found: {namer} (Unknown namer: {namer} for path: {path})")
        self.namer = namer
        self.path = path
