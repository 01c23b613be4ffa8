from namerouter.mesh.linkerd2 import net_pb2 as _net_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetDestination(_message.Message):
    __slots__ = ("scheme", "path")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    scheme: str
    path: str
    def __init__(self, scheme: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class Update(_message.Message):
    __slots__ = ("add", "remove", "no_endpoints")
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    NO_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    add: WeightedAddrSet
    remove: AddrSet
    no_endpoints: NoEndpoints
    def __init__(self, add: _Optional[_Union[WeightedAddrSet, _Mapping]] = ..., remove: _Optional[_Union[AddrSet, _Mapping]] = ..., no_endpoints: _Optional[_Union[NoEndpoints, _Mapping]] = ...) -> None: ...

class AddrSet(_message.Message):
    __slots__ = ("addrs",)
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    addrs: _containers.RepeatedCompositeFieldContainer[_net_pb2.TcpAddress]
    def __init__(self, addrs: _Optional[_Iterable[_Union[_net_pb2.TcpAddress, _Mapping]]] = ...) -> None: ...

class WeightedAddrSet(_message.Message):
    __slots__ = ("addrs", "metric_labels")
    class MetricLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    METRIC_LABELS_FIELD_NUMBER: _ClassVar[int]
    addrs: _containers.RepeatedCompositeFieldContainer[WeightedAddr]
    metric_labels: _containers.ScalarMap[str, str]
    def __init__(self, addrs: _Optional[_Iterable[_Union[WeightedAddr, _Mapping]]] = ..., metric_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WeightedAddr(_message.Message):
    __slots__ = ("addr", "weight", "metric_labels", "tls_identity", "protocol_hint")
    class MetricLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ADDR_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    METRIC_LABELS_FIELD_NUMBER: _ClassVar[int]
    TLS_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_HINT_FIELD_NUMBER: _ClassVar[int]
    addr: _net_pb2.TcpAddress
    weight: int
    metric_labels: _containers.ScalarMap[str, str]
    tls_identity: TlsIdentity
    protocol_hint: ProtocolHint
    def __init__(self, addr: _Optional[_Union[_net_pb2.TcpAddress, _Mapping]] = ..., weight: _Optional[int] = ..., metric_labels: _Optional[_Mapping[str, str]] = ..., tls_identity: _Optional[_Union[TlsIdentity, _Mapping]] = ..., protocol_hint: _Optional[_Union[ProtocolHint, _Mapping]] = ...) -> None: ...

class TlsIdentity(_message.Message):
    __slots__ = ("k8s_pod_identity",)
    class K8sPodIdentity(_message.Message):
        __slots__ = ("pod_identity", "controller_ns")
        POD_IDENTITY_FIELD_NUMBER: _ClassVar[int]
        CONTROLLER_NS_FIELD_NUMBER: _ClassVar[int]
        pod_identity: str
        controller_ns: str
        def __init__(self, pod_identity: _Optional[str] = ..., controller_ns: _Optional[str] = ...) -> None: ...
    K8S_POD_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    k8s_pod_identity: TlsIdentity.K8sPodIdentity
    def __init__(self, k8s_pod_identity: _Optional[_Union[TlsIdentity.K8sPodIdentity, _Mapping]] = ...) -> None: ...

class NoEndpoints(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    def __init__(self, exists: _Optional[bool] = ...) -> None: ...

class ProtocolHint(_message.Message):
    __slots__ = ("h2",)
    class H2(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    H2_FIELD_NUMBER: _ClassVar[int]
    h2: ProtocolHint.H2
    def __init__(self, h2: _Optional[_Union[ProtocolHint.H2, _Mapping]] = ...) -> None: ...
