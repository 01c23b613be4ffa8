"""Between namerd's thrift values (``namer.thrift``) and the dtab and naming types.

Trees travel flat: a root node plus a map of numbered nodes, alt/union children being
node ids. The ids are assigned as Linkerd's namerd assigns them (a union's or alt's
child takes the next id before its own children; a delegate or transformation child
is numbered after its subtree), so our answers are byte-for-byte what a Linkerd 1
router expects.

Decoding what a server sent is defensive: a missing node id, a reference cycle, or a
tree deeper than ``MAX_DEPTH`` raises :class:`ThriftTreeError`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from ..dtab import Dtab, Path
from ..dtab.tree import EMPTY, FAIL, NEG, Alt, Empty, Fail, Leaf, NameTree, Union, Weighted
from ..mesh.convert import ip_bytes
from ..naming.addr import ADDR_NEG, WEIGHT_KEY, Addr, AddrBound, Address
from ..naming.bound import BoundName
from . import namer

MAX_DEPTH = 100
#: Finagle's ``Dentry.nop`` as text: the dentry of a delegation tree's root.
NOP_DENTRY = "/\\x2f=>~"


class ThriftTreeError(ValueError):
    """A thrift tree that does not describe a tree."""


def path_to_thrift(path: Path) -> list[bytes]:
    return list(path.labels)


def path_from_thrift(labels: Optional[list[bytes]]) -> Path:
    """Raises ValueError for an empty label."""
    return Path(labels or ())


# -- bound trees --------------------------------------------------------------------------

def bound_tree_to_thrift(tree: NameTree[Any]) -> Any:
    nodes: dict[int, Any] = {}

    def mk(t: NameTree[Any], next_id: int) -> tuple[Any, int]:
        if isinstance(t, Leaf):
            b = t.value
            if isinstance(b, BoundName):
                return namer.BoundNode(leaf=namer.BoundName(id=path_to_thrift(b.id),
                                                            residual=path_to_thrift(b.residual))), next_id
            return namer.BoundNode(neg=namer.Void()), next_id
        if isinstance(t, Alt):
            ids = []
            for child in t.trees:
                cid = next_id
                node, next_id = mk(child, cid + 1)
                nodes[cid] = node
                ids.append(cid)
            return namer.BoundNode(alt=ids), next_id
        if isinstance(t, Union):
            weighted = []
            for w in t.weighted:
                cid = next_id
                node, next_id = mk(w.tree, cid + 1)
                nodes[cid] = node
                weighted.append(namer.WeightedNodeId(weight=float(w.weight), id=cid))
            return namer.BoundNode(weighted=weighted), next_id
        if isinstance(t, Fail):
            return namer.BoundNode(fail=namer.Void()), next_id
        if isinstance(t, Empty):
            return namer.BoundNode(empty=namer.Void()), next_id
        return namer.BoundNode(neg=namer.Void()), next_id

    root, _ = mk(tree, 0)
    return namer.BoundTree(root=root, nodes=nodes)


def bound_tree_from_thrift(tree: Any, bound: Callable[[Path, Path], BoundName]) -> NameTree[BoundName]:
    nodes: Mapping[int, Any] = tree.nodes or {}

    def child(i: int, depth: int, seen: frozenset[int]) -> NameTree[BoundName]:
        if i in seen:
            raise ThriftTreeError(f"node {i} refers to itself")
        node = nodes.get(i)
        if node is None:
            raise ThriftTreeError(f"unknown node id: {i}")
        return mk(node, depth + 1, seen | {i})

    def mk(node: Any, depth: int, seen: frozenset[int]) -> NameTree[BoundName]:
        if node is None:
            raise ThriftTreeError("a bound tree node is missing")
        if depth > MAX_DEPTH:
            raise ThriftTreeError(f"bound tree deeper than {MAX_DEPTH}")
        if node.leaf is not None:
            return Leaf(bound(path_from_thrift(node.leaf.id), path_from_thrift(node.leaf.residual)))
        if node.alt is not None:
            return Alt(*(child(i, depth, seen) for i in node.alt))
        if node.weighted is not None:
            return Union(*(Weighted(w.weight if w.weight is not None else 1.0, child(w.id, depth, seen))
                           for w in node.weighted))
        if node.fail is not None:
            return FAIL
        if node.empty is not None:
            return EMPTY
        if node.neg is not None:
            return NEG
        raise ThriftTreeError("a bound tree node has no kind")

    return mk(tree.root, 0, frozenset())


# -- address sets ------------------------------------------------------------------------------

def _meta_to_thrift(meta: Mapping[str, Any]) -> Optional[Any]:
    authority = meta.get("authority")
    node = meta.get("nodeName")
    weight = meta.get(WEIGHT_KEY)
    try:
        weight = float(weight) if weight is not None else None
    except (TypeError, ValueError):
        weight = None
    if authority is None and node is None and weight is None:
        return None
    return namer.AddrMeta(authority=None if authority is None else str(authority),
                          nodeName=None if node is None else str(node), endpoint_addr_weight=weight)


def _meta_from_thrift(meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if meta is None:
        return out
    if meta.authority is not None:
        out["authority"] = meta.authority
    if meta.nodeName is not None:
        out["nodeName"] = meta.nodeName
    if meta.endpoint_addr_weight is not None:
        out[WEIGHT_KEY] = float(meta.endpoint_addr_weight)
    return out


def addr_to_thrift(addr: Addr) -> Any:
    """An ``AddrVal``: ``bound`` for a bound set, ``neg`` otherwise (callers send failures
    as ``AddrFailure`` and never send pending)."""
    if not isinstance(addr, AddrBound):
        return namer.AddrVal(neg=namer.Void())
    taddrs = []
    for a in sorted(addr.addrs, key=lambda a: (a.host, a.port)):
        raw = ip_bytes(a.host)
        if raw is not None:
            taddrs.append(namer.TransportAddress(ip=raw, port=a.port, meta=_meta_to_thrift(a.meta)))
    return namer.AddrVal(bound=namer.BoundAddr(addresses=taddrs, meta=_meta_to_thrift(addr.meta)))


def addr_from_thrift(val: Any) -> Addr:
    import ipaddress

    if val is None or val.bound is None:
        return ADDR_NEG
    addrs = []
    for t in val.bound.addresses or ():
        if t.ip is None or len(t.ip) not in (4, 16) or t.port is None or not 0 < t.port < 65536:
            continue
        addrs.append(Address(str(ipaddress.ip_address(t.ip)), t.port, _meta_from_thrift(t.meta)))
    return AddrBound(addrs, _meta_from_thrift(val.bound.meta))


# -- delegation trees --------------------------------------------------------------------------

def _dentry_text(doc: Mapping[str, Any]) -> str:
    d = doc.get("dentry")
    if isinstance(d, Mapping):
        return f"{d.get('prefix', '')}=>{d.get('dst', '')}"
    return NOP_DENTRY


def _path_text(text: str) -> list[bytes]:
    if text in ("", "!", "~", "$"):
        return []
    try:
        return path_to_thrift(Path.read(text))
    except ValueError:
        return []


def _bound_name(b: Mapping[str, Any]) -> Any:
    return namer.BoundName(id=_path_text(str(b.get("id", ""))), residual=_path_text(str(b.get("path", "/"))))


def delegate_json_to_thrift(doc: Mapping[str, Any]) -> Any:
    """namerd's delegate-tree JSON (the HTTP ``/delegate`` answer) as a DelegateTree."""
    nodes: dict[int, Any] = {}

    def mk(d: Mapping[str, Any], next_id: int) -> tuple[Any, int]:
        path = _path_text(str(d.get("path", "")))
        dentry = _dentry_text(d)
        kind = d.get("type")
        if kind == "delegate":
            node, nid = mk(d["delegate"], next_id)
            nodes[nid] = node
            return namer.DelegateNode(path=path, dentry=dentry,
                                      contents=namer.DelegateContents(delegate=nid)), nid + 1
        if kind == "transformation":
            node, nid = mk(d["tree"], next_id)
            nodes[nid] = node
            t = namer.Transformation(value=_bound_name(d.get("bound") or {}), tree=nid)
            return namer.DelegateNode(path=path, dentry=str(d.get("name", "")),
                                      contents=namer.DelegateContents(transformation=t)), nid + 1
        if kind in ("alt", "union"):
            ids: list[Any] = []
            children = d.get("alt", []) if kind == "alt" else d.get("union", [])
            for c in children:
                cid = next_id
                node, next_id = mk(c if kind == "alt" else c["tree"], cid + 1)
                nodes[cid] = node
                ids.append(cid if kind == "alt" else namer.WeightedNodeId(weight=float(c.get("weight", 1.0)), id=cid))
            contents = namer.DelegateContents(alt=ids) if kind == "alt" else namer.DelegateContents(weighted=ids)
            return namer.DelegateNode(path=path, dentry=dentry, contents=contents), next_id
        if kind == "leaf":
            contents = namer.DelegateContents(boundLeaf=_bound_name(d.get("bound") or {}))
        elif kind == "exception":
            contents = namer.DelegateContents(error=str(d.get("message") or "No underlying exception message"))
        elif kind == "fail":
            contents = namer.DelegateContents(fail=namer.Void())
        elif kind == "empty":
            contents = namer.DelegateContents(empty=namer.Void())
        else:
            contents = namer.DelegateContents(neg=namer.Void())
        return namer.DelegateNode(path=path, dentry=dentry, contents=contents), next_id

    root, _ = mk(doc, 0)
    return namer.DelegateTree(root=root, nodes=nodes)


def delegate_thrift_to_json(tree: Any) -> dict[str, Any]:
    """The inverse, for the router's delegator (the admin shows namerd's JSON shape)."""
    nodes: Mapping[int, Any] = tree.nodes or {}

    def show(p: Optional[list[bytes]]) -> str:
        return path_from_thrift(p).show()

    def mk(node: Any, depth: int) -> dict[str, Any]:
        if node is None or depth > MAX_DEPTH:
            raise ThriftTreeError("delegate tree node missing or too deep")
        doc: dict[str, Any] = {"path": show(node.path)}
        if node.dentry and node.dentry != NOP_DENTRY and "=>" in node.dentry:
            prefix, _, dst = node.dentry.partition("=>")
            doc["dentry"] = {"prefix": prefix, "dst": dst}
        c = node.contents
        if c is None:
            raise ThriftTreeError("delegate tree node has no contents")
        if c.delegate is not None:
            doc.update(type="delegate", delegate=mk(nodes.get(c.delegate), depth + 1))
        elif c.transformation is not None:
            b = c.transformation.value
            doc.pop("dentry", None)
            doc.update(type="transformation", name=node.dentry,
                       bound={"id": show(b.id if b else None), "path": show(b.residual if b else None)},
                       tree=mk(nodes.get(c.transformation.tree), depth + 1))
        elif c.alt is not None:
            doc.update(type="alt", alt=[mk(nodes.get(i), depth + 1) for i in c.alt])
        elif c.weighted is not None:
            doc.update(type="union", union=[{"weight": w.weight, "tree": mk(nodes.get(w.id), depth + 1)}
                                            for w in c.weighted])
        elif c.boundLeaf is not None:
            doc.update(type="leaf", bound={"id": show(c.boundLeaf.id), "path": show(c.boundLeaf.residual)})
        elif c.pathLeaf is not None:
            doc.update(type="leaf", bound={"id": show(c.pathLeaf), "path": "/"})
        elif c.error is not None:
            doc.update(type="exception", message=c.error)
        elif c.fail is not None:
            doc["type"] = "fail"
        elif c.empty is not None:
            doc["type"] = "empty"
        else:
            doc["type"] = "neg"
        return doc

    return mk(tree.root, 0)


def path_delegate_tree(path: Path) -> Any:
    """The request tree a client sends to delegate one path (a root path leaf)."""
    return namer.DelegateTree(root=namer.DelegateNode(path=path_to_thrift(path), dentry=NOP_DENTRY,
                                                      contents=namer.DelegateContents(pathLeaf=path_to_thrift(path))),
                              nodes={})


def dtab_text(dtab: Dtab) -> str:
    return dtab.show()
