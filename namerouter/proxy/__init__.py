"""Data plane: uvloop + httptools HTTP/1.1 router (see router.py for the entry point)."""
from . import native as _native

_native.install()  # before any hot module is imported: compiled when fresh, else the sources

from .config import IdentifierConfig, LoadBalancerConfig, BindingCacheConfig, RouterConfig, ServerConfig  # noqa: E402
from .router import HttpRouter  # noqa: E402

__all__ = ["HttpRouter", "RouterConfig", "ServerConfig", "IdentifierConfig", "BindingCacheConfig",
           "LoadBalancerConfig"]
