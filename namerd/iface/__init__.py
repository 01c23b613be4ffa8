"""namerd's interfaces besides the HTTP controller (``namerd/api.py``):

* ``mesh`` — ``io.l5d.mesh``: the ``io.linkerd.mesh`` gRPC services (Interpreter,
  Resolver, Delegator, Codec);
* ``thrift`` — ``io.l5d.thriftNameInterpreter``: the long-polling thrift ``Namer``
  service over ThriftMux (``namerouter/mux``) or plain framed thrift;
* ``destination`` — ``io.l5d.destination``: Linkerd 2's ``Destination.Get`` stream.

All of them serve what the HTTP controller serves — bindings, address sets, dtabs and
delegations from ``namerd.binding.NamerdBinder`` — as the same lazy observables, so a
stream costs nothing while its name does not change and releases its watches when it
ends. ``updates`` turns an observable into a stream of messages.
"""

from typing import Any


def build_interface(cfg: Any, store: Any, binder: Any, metrics: Any) -> Any:
    """The interface object for a validated interface config (its ``kind``)."""
    kind = cfg.kind
    if kind == "io.l5d.mesh":
        from .mesh import MeshInterface

        return MeshInterface(store, binder, metrics)
    if kind == "io.l5d.thriftNameInterpreter":
        from .thrift import ThriftInterface

        return ThriftInterface(store, binder, metrics, cfg.cache)
    if kind == "io.l5d.destination":
        from .destination import DestinationInterface

        return DestinationInterface(binder, metrics, prefix=cfg.prefix, namespace=cfg.namespace)
    raise ValueError(f"unknown namerd interface kind {kind!r}")
