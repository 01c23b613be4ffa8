"""namerd's dtab storage backends: one module per kind (see ``base.DtabStore``)."""
from .base import (
    DtabStore,
    DtabStoreError,
    Forbidden,
    InvalidNamespace,
    NamespaceAlreadyExists,
    NamespaceNotFound,
    StorageUnavailable,
    VersionedDtab,
    VersionMismatch,
)

__all__ = [
    "DtabStore", "VersionedDtab", "DtabStoreError", "NamespaceAlreadyExists",
    "NamespaceNotFound", "VersionMismatch", "Forbidden", "StorageUnavailable",
    "InvalidNamespace",
]
