"""Data plane: uvloop + httptools HTTP/1.1 router (see router.py for the entry point)."""
from .config import IdentifierConfig, LoadBalancerConfig, BindingCacheConfig, RouterConfig, ServerConfig
from .router import HttpRouter

__all__ = ["HttpRouter", "RouterConfig", "ServerConfig", "IdentifierConfig", "BindingCacheConfig",
           "LoadBalancerConfig"]
