"""The dtab language: Finagle's Path, Prefix, Dentry, Dtab and NameTree.

Pure: no I/O and no asyncio, so every other layer (and users' CI scripts) can use it.
"""
from .dtab import Dentry, Dtab
from .errors import BindingError, BindingTooLarge, DtabSyntaxError, MaxDepthExceeded, UnknownNamer
from .path import WILDCARD, Path, Prefix
from .tree import EMPTY, FAIL, NEG, Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted

# Submodules reachable as attributes (`namerouter.dtab.offline.bind(...)` after importing
# the package). The parser (lark) stays lazy: Path.read & co import it on first use.
from . import delegation, offline, system  # noqa: E402

__all__ = [
    "Path", "Prefix", "WILDCARD", "Dentry", "Dtab", "NameTree",
    "Leaf", "Alt", "Union", "Weighted", "Fail", "Neg", "Empty", "FAIL", "NEG", "EMPTY",
    "DtabSyntaxError", "BindingError", "BindingTooLarge", "MaxDepthExceeded", "UnknownNamer",
]
