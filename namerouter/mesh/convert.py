"""Between the ``io.linkerd.mesh`` messages and namerouter's dtab and naming types.

Both directions are used: namerd encodes what it binds, the ``io.l5d.mesh`` interpreter
decodes what namerd (ours or Linkerd's) sends. Decoding is strict where a message would
otherwise be misread (an empty path label, a node with no kind) and raises
:class:`MeshDecodeError`; the caller turns it into INVALID_ARGUMENT or a failed watch.

Two Linkerd habits matter on the wire:

* Linkerd's decoder reads every scalar as present-or-absent, and skips a union branch
  with no weight and an endpoint with no address family. The ``optional`` scalars of our
  ``.proto`` files make protobuf write them even when they hold the default (weight
  ``0.0``, ``INET4``), and the encoders below always set them.
* Metadata crosses the wire as text (``map<string, string>``). The decoder turns the
  weight key back into a number, so a union's weights and endpoint weights survive the
  trip (Linkerd's own client loses them).
"""
from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any, Callable, Mapping, Optional

from ..dtab import Dentry, Dtab, Path, Prefix, WILDCARD
from ..dtab.tree import EMPTY, FAIL, NEG, Alt, Empty, Fail, Leaf, NameTree, Union, Weighted
from ..naming.addr import ADDR_NEG, ADDR_PENDING, WEIGHT_KEY, Addr, AddrBound, AddrFailed, Address
from ..naming.bound import BoundName
from ..naming.dns import ip_literal
from . import delegator_pb2 as dpb
from . import dtab_pb2 as pb
from . import interpreter_pb2 as ipb
from . import resolver_pb2 as rpb

log = logging.getLogger(__name__)

#: Finagle's ``Dentry.nop`` (prefix: one label "/", destination: ``~``): the dentry of a
#: delegation tree's root, which Linkerd's decoder requires to be present.
NOP_DENTRY_PREFIX = (b"/",)


class MeshDecodeError(ValueError):
    """A message that cannot be read as what it claims to be."""


# -- paths and dtabs -----------------------------------------------------------------------

def path_to_proto(path: Path) -> pb.Path:
    return pb.Path(elems=path.labels)


def path_from_proto(msg: pb.Path) -> Path:
    try:
        return Path(msg.elems)
    except ValueError as e:
        raise MeshDecodeError(f"invalid path: {e}") from None


def _encode_tree(tree: NameTree[Any], cls: Any, set_leaf: Callable[[Any, Any], None]) -> Any:
    """PathNameTree and BoundNameTree have the same shape; ``set_leaf`` fills a leaf."""
    out = cls()
    if isinstance(tree, Leaf):
        set_leaf(out, tree.value)
    elif isinstance(tree, Alt):
        out.alt.SetInParent()
        out.alt.trees.extend(_encode_tree(t, cls, set_leaf) for t in tree.trees)
    elif isinstance(tree, Union):
        out.union.SetInParent()
        for w in tree.weighted:
            out.union.trees.add(weight=float(w.weight), tree=_encode_tree(w.tree, cls, set_leaf))
    elif isinstance(tree, Fail):
        out.fail.SetInParent()
    elif isinstance(tree, Empty):
        out.empty.SetInParent()
    else:
        out.neg.SetInParent()
    return out


def _decode_tree(msg: Any, leaf: Callable[[Any], Any], what: str) -> NameTree[Any]:
    kind = msg.WhichOneof("node")
    if kind == "leaf":
        return Leaf(leaf(msg.leaf))
    if kind == "alt":
        return Alt(*(_decode_tree(t, leaf, what) for t in msg.alt.trees))
    if kind == "union":
        return Union(*(Weighted(w.weight, _decode_tree(w.tree, leaf, what)) for w in msg.union.trees
                       if w.HasField("weight") and w.HasField("tree")))
    if kind == "neg":
        return NEG
    if kind == "fail":
        return FAIL
    if kind == "empty":
        return EMPTY
    raise MeshDecodeError(f"a {what} node has no kind (neg, fail, empty, alt, union or leaf)")


def tree_to_proto(tree: NameTree[Path]) -> pb.PathNameTree:
    out: pb.PathNameTree = _encode_tree(tree, pb.PathNameTree, lambda out, p: out.leaf.id.CopyFrom(path_to_proto(p)))
    return out


def tree_from_proto(msg: pb.PathNameTree) -> NameTree[Path]:
    def leaf(m: Any) -> Path:
        if not m.HasField("id"):
            raise MeshDecodeError("a name tree leaf has no path")
        return path_from_proto(m.id)

    return _decode_tree(msg, leaf, "name tree")


def prefix_to_proto(prefix: Prefix) -> pb.Dtab.Dentry.Prefix:
    out = pb.Dtab.Dentry.Prefix()
    for e in prefix.elems:
        elem = out.elems.add()
        if isinstance(e, bytes):
            elem.label = e
        else:  # WILDCARD
            elem.wildcard.SetInParent()
    return out


def prefix_from_proto(msg: pb.Dtab.Dentry.Prefix) -> Prefix:
    elems: list[Any] = []
    for e in msg.elems:
        kind = e.WhichOneof("value")
        if kind == "wildcard":
            elems.append(WILDCARD)
        elif kind == "label" and e.label:
            elems.append(e.label)
        else:
            raise MeshDecodeError("a dentry prefix element is neither a label nor a wildcard")
    return Prefix(elems)


def dentry_to_proto(dentry: Dentry) -> pb.Dtab.Dentry:
    return pb.Dtab.Dentry(prefix=prefix_to_proto(dentry.prefix), dst=tree_to_proto(dentry.dst))


def dentry_from_proto(msg: pb.Dtab.Dentry) -> Dentry:
    if not msg.HasField("prefix") or not msg.HasField("dst"):
        raise MeshDecodeError("a dentry needs both a prefix and a destination")
    return Dentry(prefix_from_proto(msg.prefix), tree_from_proto(msg.dst))


def dtab_to_proto(dtab: Dtab) -> pb.Dtab:
    return pb.Dtab(dentries=[dentry_to_proto(d) for d in dtab])


def dtab_from_proto(msg: pb.Dtab) -> Dtab:
    return Dtab(dentry_from_proto(d) for d in msg.dentries)


# -- bound trees ----------------------------------------------------------------------------

def _set_bound_leaf(out: Any, b: Any) -> None:
    if isinstance(b, BoundName):
        out.leaf.id.CopyFrom(path_to_proto(b.id))
        out.leaf.residual.CopyFrom(path_to_proto(b.residual))
    else:
        out.neg.SetInParent()


def bound_tree_to_proto(tree: NameTree[Any]) -> ipb.BoundNameTree:
    """A bound tree (leaves are BoundNames) without addresses: a client resolves each
    leaf's id with the Resolver. A leaf that is not a BoundName is sent as ``neg``."""
    out: ipb.BoundNameTree = _encode_tree(tree, ipb.BoundNameTree, _set_bound_leaf)
    return out


def bound_tree_from_proto(msg: ipb.BoundNameTree,
                          bound: Callable[[Path, Path], BoundName]) -> NameTree[BoundName]:
    """``bound(id, residual)`` makes each leaf (with the shared address Var of ``id``)."""

    def leaf(m: Any) -> BoundName:
        if not m.HasField("id"):
            raise MeshDecodeError("a bound tree leaf has no id")
        residual = path_from_proto(m.residual) if m.HasField("residual") else Path()
        return bound(path_from_proto(m.id), residual)

    return _decode_tree(msg, leaf, "bound tree")


# -- address sets ------------------------------------------------------------------------------

def meta_text(value: Any) -> str:
    """A metadata value as text, the way Linkerd's ``toString`` prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def meta_from_text(meta: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(meta)
    w = out.get(WEIGHT_KEY)
    if isinstance(w, str):
        try:
            out[WEIGHT_KEY] = float(w)
        except ValueError:
            del out[WEIGHT_KEY]
    return out


_warned_hosts: set[str] = set()


def ip_bytes(host: str) -> Optional[bytes]:
    """Packed IPv4/IPv6 bytes of an IP literal; None (logged once per host) otherwise:
    only IP addresses cross the wire, as in Linkerd (which resolves names first)."""
    lit = ip_literal(host)
    if lit is None:
        if host not in _warned_hosts and len(_warned_hosts) < 1024:
            _warned_hosts.add(host)
            log.warning("address %r is not an IP address and is left out of mesh/thrift answers", host)
        return None
    return ipaddress.ip_address(lit).packed


def endpoint_to_proto(a: Address) -> Optional[rpb.Endpoint]:
    raw = ip_bytes(a.host)
    if raw is None:
        return None
    ep = rpb.Endpoint(inet_af=rpb.Endpoint.INET6 if len(raw) == 16 else rpb.Endpoint.INET4,
                      address=raw, port=a.port)
    ep.meta.SetInParent()
    node = a.meta.get("nodeName")
    if node is not None:
        ep.meta.nodeName = str(node)
    for k, v in a.meta.items():
        ep.metadata[str(k)] = meta_text(v)
    return ep


def endpoint_from_proto(ep: rpb.Endpoint) -> Optional[Address]:
    """Linkerd's rule: an endpoint needs a family, an address and a port; others are
    skipped. The address must be 4 or 16 bytes."""
    if not (ep.HasField("inet_af") and ep.HasField("address") and ep.HasField("port")):
        return None
    if len(ep.address) not in (4, 16) or not 0 < ep.port < 65536:
        return None
    return Address(str(ipaddress.ip_address(ep.address)), ep.port, meta_from_text(ep.metadata))


def addr_to_replicas(addr: Addr) -> rpb.Replicas:
    out = rpb.Replicas()
    if isinstance(addr, AddrBound):
        out.bound.SetInParent()
        for a in sorted(addr.addrs, key=lambda a: (a.host, a.port)):
            ep = endpoint_to_proto(a)
            if ep is not None:
                out.bound.endpoints.append(ep)
        for k, v in addr.meta.items():
            out.bound.metadata[str(k)] = meta_text(v)
    elif isinstance(addr, AddrFailed):
        out.failed.message = addr.cause
    elif addr is ADDR_PENDING:
        out.pending.SetInParent()
    else:
        out.neg.SetInParent()
    return out


def replicas_to_addr(msg: rpb.Replicas) -> Addr:
    kind = msg.WhichOneof("result")
    if kind == "bound":
        addrs = [a for a in (endpoint_from_proto(e) for e in msg.bound.endpoints) if a is not None]
        return AddrBound(addrs, meta_from_text(msg.bound.metadata))
    if kind == "failed":
        return AddrFailed(msg.failed.message if msg.failed.HasField("message") else "unknown")
    if kind == "pending":
        return ADDR_PENDING
    return ADDR_NEG  # Linkerd: no result at all is negative


# -- delegation trees --------------------------------------------------------------------------

def _nop_dentry() -> pb.Dtab.Dentry:
    d = pb.Dtab.Dentry()
    d.prefix.elems.add(label=NOP_DENTRY_PREFIX[0])
    d.dst.neg.SetInParent()
    return d


def _read_path_text(text: str) -> Path:
    if text in ("", "!", "~", "$"):
        return Path()
    try:
        return Path.read(text)
    except ValueError:
        return Path()


def delegate_json_to_proto(doc: Mapping[str, Any]) -> dpb.BoundDelegateTree:
    """namerd's delegate-tree JSON (the HTTP ``/delegate`` answer) as a BoundDelegateTree."""
    out = dpb.BoundDelegateTree()
    out.path.CopyFrom(path_to_proto(_read_path_text(str(doc.get("path", "")))))
    d = doc.get("dentry")
    if isinstance(d, Mapping):
        out.dentry.CopyFrom(dentry_to_proto(Dentry(Prefix.read(d["prefix"]), NameTree.read(d["dst"]))))
    elif doc.get("type") != "transformation":
        out.dentry.CopyFrom(_nop_dentry())
    kind = doc.get("type")
    if kind == "delegate":
        out.delegate.CopyFrom(delegate_json_to_proto(doc["delegate"]))
    elif kind == "alt":
        out.alt.SetInParent()
        out.alt.trees.extend(delegate_json_to_proto(t) for t in doc.get("alt", []))
    elif kind == "union":
        out.union.SetInParent()
        for w in doc.get("union", []):
            out.union.trees.add(weight=float(w.get("weight", 1.0)), tree=delegate_json_to_proto(w["tree"]))
    elif kind == "leaf":
        b = doc.get("bound") or {}
        out.leaf.id.CopyFrom(path_to_proto(_read_path_text(str(b.get("id", "")))))
        out.leaf.residual.CopyFrom(path_to_proto(_read_path_text(str(b.get("path", "/")))))
    elif kind == "exception":
        out.exception = str(doc.get("message") or "No underlying exception message")
    elif kind == "transformation":
        out.transformation.name = str(doc.get("name", ""))
        b = doc.get("bound") or {}
        out.transformation.leaf.id.CopyFrom(path_to_proto(_read_path_text(str(b.get("id", "")))))
        out.transformation.leaf.residual.CopyFrom(path_to_proto(_read_path_text(str(b.get("path", "/")))))
        out.transformation.tree.CopyFrom(delegate_json_to_proto(doc["tree"]))
    elif kind == "fail":
        out.fail.SetInParent()
    elif kind == "empty":
        out.empty.SetInParent()
    else:
        out.neg.SetInParent()
    return out


def delegate_proto_to_json(msg: dpb.BoundDelegateTree) -> dict[str, Any]:
    """The inverse, for the router's delegator (the admin shows namerd's JSON shape)."""
    doc: dict[str, Any] = {"path": path_from_proto(msg.path).show()}
    if msg.HasField("dentry") and tuple(msg.dentry.prefix.elems) and not (
            len(msg.dentry.prefix.elems) == 1 and msg.dentry.prefix.elems[0].label == NOP_DENTRY_PREFIX[0]):
        d = dentry_from_proto(msg.dentry)
        doc["dentry"] = {"prefix": d.prefix.show(), "dst": d.dst.show()}
    kind = msg.WhichOneof("node")
    if kind == "delegate":
        doc.update(type="delegate", delegate=delegate_proto_to_json(msg.delegate))
    elif kind == "alt":
        doc.update(type="alt", alt=[delegate_proto_to_json(t) for t in msg.alt.trees])
    elif kind == "union":
        doc.update(type="union", union=[{"weight": w.weight, "tree": delegate_proto_to_json(w.tree)}
                                        for w in msg.union.trees])
    elif kind == "leaf":
        doc.update(type="leaf", bound={"id": path_from_proto(msg.leaf.id).show(),
                                       "path": path_from_proto(msg.leaf.residual).show()})
    elif kind == "exception":
        doc.update(type="exception", message=msg.exception)
    elif kind == "transformation":
        t = msg.transformation
        doc.update(type="transformation", name=t.name,
                   bound={"id": path_from_proto(t.leaf.id).show(), "path": path_from_proto(t.leaf.residual).show()},
                   tree=delegate_proto_to_json(t.tree))
    elif kind in ("fail", "empty"):
        doc["type"] = kind
    else:
        doc["type"] = "neg"
    return doc
