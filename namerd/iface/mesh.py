"""``io.l5d.mesh``: namerd's gRPC interface (Linkerd 1.1+ routers' ``io.l5d.mesh``).

Services of package ``io.linkerd.mesh`` (``namerouter/mesh/*.proto``), answering as
Linkerd 1.7's namerd does:

* ``Interpreter.GetBoundTree`` / ``StreamBoundTree`` — ``root`` is a one-element path
  naming the namespace; the tree binds ``name`` through the namespace's dtab ++ the
  request's ``dtab``. Leaves carry ids, not addresses. A stream sends the tree now and
  on every change; a binding failure ends it with ``INTERNAL`` (the client re-opens).
* ``Resolver.GetReplicas`` / ``StreamReplicas`` — the address set of a bound id, as
  ``/api/1/addr`` resolves it (the namer owning the id's prefix; ``/%/`` transformer
  prefixes stripped). A request without an id is answered ``failed: No ID provided``.
* ``Delegator.GetDtab`` / ``StreamDtab`` (stored dtab and version; ``NOT_FOUND`` for a
  missing namespace), ``GetDelegateTree`` (and the old one-message
  ``StreamDelegateTree``) — the delegation of one path.
* ``Codec`` — dtab/path text <-> structure.

Errors, as Linkerd: no ``root`` -> ``INVALID_ARGUMENT`` "No namespace specified"; a root
of more than one element -> ``INVALID_ARGUMENT``; no ``name``/``tree`` -> ``NOT_FOUND``
"No name given". Ours in addition: a malformed path, dtab or namespace name ->
``INVALID_ARGUMENT`` naming it; a one-shot answer that stays pending for 10 s ->
``DEADLINE_EXCEEDED`` (Linkerd waits forever).

Streams hold their observations only while open: a dtab change reaches every stream of
an affected name at once, and a storage outage changes nothing (stores keep serving
their last dtabs).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Optional

from google.protobuf.message import Message
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from namerouter.dtab import Dtab, DtabSyntaxError, Path
from namerouter.dtab.tree import Empty, Fail, Leaf, Neg
from namerouter.mesh import codec_pb2, convert, delegator_pb2, interpreter_pb2, resolver_pb2
from namerouter.mesh.grpc import BadRequest, GrpcServer
from namerouter.metrics import MetricsRegistry
from namerouter.naming.addr import ADDR_PENDING, Addr
from namerouter.naming.var import Failed, Ok

from ..binding import NamerdBinder
from ..storage.base import DtabStore, InvalidNamespace, VersionedDtab, check_namespace
from .updates import first, updates

log = logging.getLogger(__name__)

KIND = "io.l5d.mesh"
#: A one-shot answer waits at most this long for a non-pending state.
ANSWER_TIMEOUT = 10.0
#: Delegation budget, as the HTTP controller's /delegate.
DELEGATE_TIMEOUT = 2.0


def _key(msg: Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def namespace_of(root_set: bool, root: Any) -> str:
    """The namespace a request's ``root`` names (Linkerd's rules, plus ours on names)."""
    if not root_set:
        raise BadRequest(Status.INVALID_ARGUMENT, "No namespace specified")
    try:
        path = convert.path_from_proto(root)
    except convert.MeshDecodeError as e:
        raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid root: {e}") from None
    if len(path.labels) != 1:
        raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid root: `{path.show()}` must have exactly one segment")
    try:
        return check_namespace(path.labels[0].decode("utf-8"))
    except (UnicodeDecodeError, InvalidNamespace) as e:
        raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid root: {path.show()}: {e}") from None


def _dtab_of(req: Any) -> Dtab:
    if not req.HasField("dtab"):
        return Dtab()
    try:
        return convert.dtab_from_proto(req.dtab)
    except (convert.MeshDecodeError, ValueError) as e:
        raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid dtab: {e}") from None


def _failure(st: Any) -> GRPCError:
    err = st.error
    return GRPCError(Status.INTERNAL, str(err) or type(err).__name__)


class _Counted:
    def __init__(self, metrics: MetricsRegistry, scope: str) -> None:
        self.metrics = metrics
        self.scope = scope
        self.streams = 0

    def request(self, method: str) -> None:
        self.metrics.counter(f"{self.scope}/{method}/requests").incr()

    async def stream(self, method: str, gen: AsyncIterator[Any]) -> AsyncIterator[Any]:
        self.request(method)
        self.streams += 1
        try:
            async for msg in gen:
                yield msg
        finally:
            self.streams -= 1
            await gen.aclose()  # type: ignore[attr-defined]


class InterpreterService:
    def __init__(self, binder: NamerdBinder, counted: _Counted) -> None:
        self.binder = binder
        self.counted = counted

    def _bind(self, req: interpreter_pb2.BindReq) -> Any:
        ns = namespace_of(req.HasField("root"), req.root)
        if not req.HasField("name") or not req.name.elems:
            raise BadRequest(Status.NOT_FOUND, "No name given")
        try:
            name = convert.path_from_proto(req.name)
        except convert.MeshDecodeError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid name: {e}") from None
        return self.binder.bind(ns, name, _dtab_of(req)).states

    @staticmethod
    def _render(st: Any) -> Optional[interpreter_pb2.BoundTreeRsp]:
        if isinstance(st, Ok):
            return interpreter_pb2.BoundTreeRsp(tree=convert.bound_tree_to_proto(st.value))
        if isinstance(st, Failed):
            raise _failure(st)
        return None

    async def GetBoundTree(self, req: interpreter_pb2.BindReq) -> interpreter_pb2.BoundTreeRsp:
        self.counted.request("GetBoundTree")
        states = self._bind(req)
        try:
            return await first(states, self._render, ANSWER_TIMEOUT)
        except TimeoutError:
            raise GRPCError(Status.DEADLINE_EXCEEDED, f"binding did not complete within {ANSWER_TIMEOUT:g} s") from None

    def StreamBoundTree(self, req: interpreter_pb2.BindReq) -> AsyncIterator[interpreter_pb2.BoundTreeRsp]:
        states = self._bind(req)
        return self.counted.stream("StreamBoundTree", updates(states, self._render, _key))


class ResolverService:
    def __init__(self, binder: NamerdBinder, counted: _Counted) -> None:
        self.binder = binder
        self.counted = counted

    @staticmethod
    def _no_id(req: resolver_pb2.ReplicasReq) -> bool:
        return not req.HasField("id") or not req.id.elems

    def _addr(self, req: resolver_pb2.ReplicasReq) -> Any:
        try:
            return self.binder.addr(convert.path_from_proto(req.id))
        except convert.MeshDecodeError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid id: {e}") from None

    @staticmethod
    def _render(addr: Addr) -> Optional[resolver_pb2.Replicas]:
        return None if addr is ADDR_PENDING else convert.addr_to_replicas(addr)

    async def GetReplicas(self, req: resolver_pb2.ReplicasReq) -> resolver_pb2.Replicas:
        self.counted.request("GetReplicas")
        if self._no_id(req):
            return resolver_pb2.Replicas(failed=resolver_pb2.Replicas.Failed(message="No ID provided"))
        try:
            return await first(self._addr(req), self._render, ANSWER_TIMEOUT)
        except TimeoutError:
            return convert.addr_to_replicas(ADDR_PENDING)  # Linkerd answers the current state

    async def _stream(self, req: resolver_pb2.ReplicasReq) -> AsyncIterator[resolver_pb2.Replicas]:
        if self._no_id(req):
            yield resolver_pb2.Replicas(failed=resolver_pb2.Replicas.Failed(message="No ID provided"))
            return
        gen = updates(self._addr(req), self._render, _key)
        try:
            async for msg in gen:
                yield msg
        finally:
            await gen.aclose()

    def StreamReplicas(self, req: resolver_pb2.ReplicasReq) -> AsyncIterator[resolver_pb2.Replicas]:
        return self.counted.stream("StreamReplicas", self._stream(req))


class DelegatorService:
    def __init__(self, store: DtabStore, binder: NamerdBinder, counted: _Counted) -> None:
        self.store = store
        self.binder = binder
        self.counted = counted

    @staticmethod
    def _render_dtab(st: Any) -> Optional[delegator_pb2.DtabRsp]:
        if isinstance(st, Ok):
            vd: Optional[VersionedDtab] = st.value
            if vd is None:
                raise GRPCError(Status.NOT_FOUND, "Root not found")
            out = delegator_pb2.DtabRsp()
            out.dtab.version.id = vd.version
            out.dtab.dtab.CopyFrom(convert.dtab_to_proto(vd.dtab))
            return out
        if isinstance(st, Failed):
            raise _failure(st)
        return None

    async def GetDtab(self, req: delegator_pb2.DtabReq) -> delegator_pb2.DtabRsp:
        self.counted.request("GetDtab")
        ns = namespace_of(req.HasField("root"), req.root)
        try:
            return await first(self.store.observe(ns).states, self._render_dtab, ANSWER_TIMEOUT)
        except TimeoutError:
            raise GRPCError(Status.DEADLINE_EXCEEDED, f"storage did not answer within {ANSWER_TIMEOUT:g} s") from None

    def StreamDtab(self, req: delegator_pb2.DtabReq) -> AsyncIterator[delegator_pb2.DtabRsp]:
        ns = namespace_of(req.HasField("root"), req.root)
        return self.counted.stream("StreamDtab", updates(self.store.observe(ns).states, self._render_dtab, _key))

    async def _delegate(self, req: delegator_pb2.DelegateTreeReq) -> delegator_pb2.DelegateTreeRsp:
        ns = namespace_of(req.HasField("root"), req.root)
        if not req.HasField("tree"):
            raise BadRequest(Status.NOT_FOUND, "No name given")
        try:
            tree = convert.tree_from_proto(req.tree)
        except convert.MeshDecodeError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, f"Invalid tree: {e}") from None
        extra = _dtab_of(req)
        if isinstance(tree, (Neg, Fail, Empty)):
            doc: dict[str, Any] = {"type": type(tree).__name__.lower(), "path": tree.show()}
        elif isinstance(tree, Leaf):
            try:
                doc = await asyncio.wait_for(self.binder.delegate(ns, tree.value, extra), DELEGATE_TIMEOUT)
            except asyncio.TimeoutError:
                raise GRPCError(Status.DEADLINE_EXCEEDED, "Request timed out.") from None
            except NotImplementedError as e:
                raise GRPCError(Status.UNIMPLEMENTED, str(e) or "delegation is not available") from None
        else:
            raise BadRequest(Status.INVALID_ARGUMENT, "only a single path (a leaf tree) can be delegated")
        return delegator_pb2.DelegateTreeRsp(tree=convert.delegate_json_to_proto(doc))

    async def GetDelegateTree(self, req: delegator_pb2.DelegateTreeReq) -> delegator_pb2.DelegateTreeRsp:
        self.counted.request("GetDelegateTree")
        return await self._delegate(req)

    async def StreamDelegateTree(self, req: delegator_pb2.DelegateTreeReq) -> AsyncIterator[delegator_pb2.DelegateTreeRsp]:
        self.counted.request("StreamDelegateTree")
        yield await self._delegate(req)


class CodecService:
    def __init__(self, counted: _Counted) -> None:
        self.counted = counted

    async def ReadDtab(self, req: codec_pb2.ReadDtabReq) -> codec_pb2.ReadDtabRsp:
        self.counted.request("ReadDtab")
        try:
            dtab = Dtab.read(req.text) if req.HasField("text") and req.text.strip() else Dtab()
        except DtabSyntaxError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, str(e)) from None
        return codec_pb2.ReadDtabRsp(dtab=convert.dtab_to_proto(dtab))

    async def ShowDtab(self, req: codec_pb2.ShowDtabReq) -> codec_pb2.ShowDtabRsp:
        self.counted.request("ShowDtab")
        if not req.HasField("dtab"):
            return codec_pb2.ShowDtabRsp()
        return codec_pb2.ShowDtabRsp(text=_dtab_of(req).show())

    async def ReadPath(self, req: codec_pb2.ReadPathReq) -> codec_pb2.ReadPathRsp:
        self.counted.request("ReadPath")
        try:
            path = Path.read(req.text) if req.HasField("text") and req.text else Path()
        except DtabSyntaxError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, str(e)) from None
        return codec_pb2.ReadPathRsp(path=convert.path_to_proto(path))

    async def ShowPath(self, req: codec_pb2.ShowPathReq) -> codec_pb2.ShowPathRsp:
        self.counted.request("ShowPath")
        if not req.HasField("path"):
            return codec_pb2.ShowPathRsp()
        try:
            return codec_pb2.ShowPathRsp(text=convert.path_from_proto(req.path).show())
        except convert.MeshDecodeError as e:
            raise BadRequest(Status.INVALID_ARGUMENT, str(e)) from None


class MeshInterface:
    """One ``io.l5d.mesh`` listener."""

    kind = KIND

    def __init__(self, store: DtabStore, binder: NamerdBinder, metrics: Optional[MetricsRegistry] = None,
                 scope: str = f"namerd/{KIND}") -> None:
        self.metrics = metrics or MetricsRegistry()
        counted = _Counted(self.metrics, scope)
        self.counted = counted
        self.metrics.gauge(f"{scope}/streams", lambda: counted.streams)
        self.server = GrpcServer([
            (InterpreterService(binder, counted), interpreter_pb2.DESCRIPTOR.services_by_name["Interpreter"]),
            (ResolverService(binder, counted), resolver_pb2.DESCRIPTOR.services_by_name["Resolver"]),
            (DelegatorService(store, binder, counted), delegator_pb2.DESCRIPTOR.services_by_name["Delegator"]),
            (CodecService(counted), codec_pb2.DESCRIPTOR.services_by_name["Codec"]),
        ])

    async def start(self, ip: str, port: int, tls: Any = None, failures: Any = None) -> int:
        return await self.server.start(ip, port, tls=tls, failures=failures)

    async def close(self) -> None:
        await self.server.close()

    def admin_state(self) -> dict[str, Any]:
        return {"kind": KIND, "port": self.server.port, "streams": self.counted.streams}
