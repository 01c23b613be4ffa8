"""Interpreter kind ``default`` (Linkerd's DefaultInterpreterInitializer).

Router config::

    interpreter:
      kind: default
      transformers:            # optional, applied to every bound tree in this order
      - kind: io.l5d.port
        port: 4141

The interpreter binds through the router's dtab, the process's configured ``namers``
and the system namers; see ``namerouter.naming.interpreter.DefaultInterpreter``.

``runtime`` (built by the main job) is read by attribute, all optional:
``namers`` (the configured Namer objects, in config order), ``binding_cache`` (the
router's ``bindingCache`` config: ``trees`` bounds the cache, ``idleTtlSecs`` its idle
TTL), ``metrics`` + ``metrics_scope`` (e.g. ``rt/outgoing``: cache gauges are registered
under ``<scope>/bindcache/tree/…``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..naming.interpreter import DefaultInterpreter
from ..naming.transform import build_transformers


@dataclass
class DefaultInterpreterConfig:
    transformers: list[Any] = field(default_factory=list, metadata={"plugins": "TRANSFORMERS"})


def interpreter_options(runtime: Any) -> dict[str, Any]:
    """Keyword arguments for DefaultInterpreter taken from ``runtime`` (see module doc)."""
    opts: dict[str, Any] = {"namers": list(getattr(runtime, "namers", None) or ())}
    bc = getattr(runtime, "binding_cache", None)  # the router's validated BindingCacheConfig
    if bc is not None:
        if bc.trees:
            opts["cache_size"] = int(bc.trees)
        if bc.idleTtlSecs:
            opts["idle_ttl"] = float(bc.idleTtlSecs)
        opts["request_cache_size"] = int(bc.requestDtabPaths)
    return opts


def register_metrics(interp: DefaultInterpreter, runtime: Any) -> None:
    metrics = getattr(runtime, "metrics", None)
    scope = getattr(runtime, "metrics_scope", None)
    if metrics is not None and scope:
        interp.register_metrics(metrics, scope)


class DefaultInterpreterPlugin:
    kind = "default"
    config_class = DefaultInterpreterConfig

    @classmethod
    def from_config(cls, config: DefaultInterpreterConfig, runtime: Any = None) -> DefaultInterpreter:
        transformers = build_transformers(config.transformers, runtime)
        interp = DefaultInterpreter(transformers=transformers, **interpreter_options(runtime))
        register_metrics(interp, runtime)
        return interp
