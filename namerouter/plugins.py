"""Registry of plugin kinds (Linkerd's names) -> "module:Class", imported lazily.

Adding a backend = one module + one line here. Lazy import keeps optional client
libraries (kazoo, py-consul) out of processes that do not use them.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

NAMERS: dict[str, str] = {
    "io.l5d.fs": "namerouter.namers.fs:FsNamer",
    "io.l5d.serversets": "namerouter.namers.serversets:ServersetsNamer",
    "io.l5d.consul": "namerouter.namers.consul:ConsulNamer",
    "io.l5d.k8s": "namerouter.namers.k8s:K8sNamer",
    # Linkerd parity (issue 15)
    "io.l5d.rewrite": "namerouter.namers.rewrite:RewriteNamer",
    "io.l5d.dnssrv": "namerouter.namers.dnssrv:DnsSrvNamer",
    "io.l5d.curator": "namerouter.namers.curator:CuratorNamer",
    "io.l5d.zkLeader": "namerouter.namers.zk_leader:ZkLeaderNamer",
    "io.l5d.k8s.ns": "namerouter.namers.k8s:K8sNsNamer",
    "io.l5d.k8s.external": "namerouter.namers.k8s_external:K8sExternalNamer",
    "io.l5d.marathon": "namerouter.namers.marathon:MarathonNamer",
}

INTERPRETERS: dict[str, str] = {
    "default": "namerouter.interpreters.default:DefaultInterpreterPlugin",
    "io.l5d.fs": "namerouter.interpreters.fs:FsInterpreter",
    "io.l5d.namerd.http": "namerouter.interpreters.namerd_http:NamerdHttpInterpreter",
    # Linkerd parity (issue 15)
    "io.l5d.consul.interpreter": "namerouter.interpreters.consul:ConsulInterpreter",
    "io.l5d.k8s.configMap": "namerouter.interpreters.k8s_configmap:ConfigMapInterpreter",
    "io.l5d.mesh": "namerouter.interpreters.mesh:MeshInterpreter",
    "io.l5d.namerd": "namerouter.interpreters.namerd_thrift:NamerdThriftInterpreter",
}

TRANSFORMERS: dict[str, str] = {
    "io.l5d.port": "namerouter.transformers.basic:PortTransformer",
    "io.l5d.localhost": "namerouter.transformers.basic:LocalhostTransformer",
    "io.l5d.specificHost": "namerouter.transformers.basic:SpecificHostTransformer",
    "io.l5d.replace": "namerouter.transformers.basic:ReplaceTransformer",
    "io.l5d.const": "namerouter.transformers.basic:ConstTransformer",
    "io.l5d.k8s.daemonset": "namerouter.transformers.k8s:DaemonSetTransformer",
    "io.l5d.k8s.localnode": "namerouter.transformers.k8s:LocalNodeTransformer",
}

ANNOUNCERS: dict[str, str] = {
    "io.l5d.serversets": "namerouter.announcers.serversets:ServersetsAnnouncer",
}

#: telemeters other than io.l5d.prometheus (served by the admin server itself)
TELEMETERS: dict[str, str] = {
    "io.l5d.statsd": "namerouter.telemetry.statsd:StatsDTelemeter",
    "io.l5d.influxdb": "namerouter.telemetry.influxdb:InfluxDbTelemeter",
}

NAMERD_STORAGE: dict[str, str] = {
    "io.l5d.inMemory": "namerd.storage.memory:InMemoryDtabStore",
    "io.namerouter.file": "namerd.storage.file:FileDtabStore",
    "io.l5d.zk": "namerd.storage.zk:ZkDtabStore",
    "io.l5d.etcd": "namerd.storage.etcd:EtcdDtabStore",
    "io.l5d.consul": "namerd.storage.consul:ConsulDtabStore",
    "io.l5d.k8s": "namerd.storage.k8s:K8sDtabStore",
}


def load(registry: dict[str, str], kind: str) -> Any:
    """Import and return the class registered under ``kind``; KeyError if unknown."""
    target = registry[kind]
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def kind_of(config: Any) -> Optional[str]:
    """The ``kind`` a validated plugin config was chosen by: its ``kind`` field, or the
    ``_kind`` the validator sets on a config dataclass without one."""
    kind = getattr(config, "kind", None)
    if isinstance(kind, str):
        return kind
    kind = getattr(config, "_kind", None)
    return kind if isinstance(kind, str) else None


def load_for(registry: dict[str, str], config: Any) -> Any:
    """The class registered under the kind a validated config was chosen by."""
    kind = kind_of(config)
    if kind is None:
        raise TypeError(f"expected a validated plugin config, got {type(config).__name__}")
    return load(registry, kind)
