from namerouter.mesh import dtab_pb2 as _dtab_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DtabReq(_message.Message):
    __slots__ = ("root",)
    ROOT_FIELD_NUMBER: _ClassVar[int]
    root: _dtab_pb2.Path
    def __init__(self, root: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ...) -> None: ...

class DtabRsp(_message.Message):
    __slots__ = ("dtab",)
    DTAB_FIELD_NUMBER: _ClassVar[int]
    dtab: _dtab_pb2.VersionedDtab
    def __init__(self, dtab: _Optional[_Union[_dtab_pb2.VersionedDtab, _Mapping]] = ...) -> None: ...

class DelegateTreeReq(_message.Message):
    __slots__ = ("root", "tree", "dtab")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    DTAB_FIELD_NUMBER: _ClassVar[int]
    root: _dtab_pb2.Path
    tree: _dtab_pb2.PathNameTree
    dtab: _dtab_pb2.Dtab
    def __init__(self, root: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ..., tree: _Optional[_Union[_dtab_pb2.PathNameTree, _Mapping]] = ..., dtab: _Optional[_Union[_dtab_pb2.Dtab, _Mapping]] = ...) -> None: ...

class DelegateTreeRsp(_message.Message):
    __slots__ = ("tree",)
    TREE_FIELD_NUMBER: _ClassVar[int]
    tree: BoundDelegateTree
    def __init__(self, tree: _Optional[_Union[BoundDelegateTree, _Mapping]] = ...) -> None: ...

class BoundDelegateTree(_message.Message):
    __slots__ = ("path", "dentry", "neg", "fail", "empty", "alt", "union", "leaf", "delegate", "transformation", "exception")
    class Neg(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Fail(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Empty(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Alt(_message.Message):
        __slots__ = ("trees",)
        TREES_FIELD_NUMBER: _ClassVar[int]
        trees: _containers.RepeatedCompositeFieldContainer[BoundDelegateTree]
        def __init__(self, trees: _Optional[_Iterable[_Union[BoundDelegateTree, _Mapping]]] = ...) -> None: ...
    class Union(_message.Message):
        __slots__ = ("trees",)
        class Weighted(_message.Message):
            __slots__ = ("weight", "tree")
            WEIGHT_FIELD_NUMBER: _ClassVar[int]
            TREE_FIELD_NUMBER: _ClassVar[int]
            weight: float
            tree: BoundDelegateTree
            def __init__(self, weight: _Optional[float] = ..., tree: _Optional[_Union[BoundDelegateTree, _Mapping]] = ...) -> None: ...
        TREES_FIELD_NUMBER: _ClassVar[int]
        trees: _containers.RepeatedCompositeFieldContainer[BoundDelegateTree.Union.Weighted]
        def __init__(self, trees: _Optional[_Iterable[_Union[BoundDelegateTree.Union.Weighted, _Mapping]]] = ...) -> None: ...
    class Leaf(_message.Message):
        __slots__ = ("id", "residual")
        ID_FIELD_NUMBER: _ClassVar[int]
        RESIDUAL_FIELD_NUMBER: _ClassVar[int]
        id: _dtab_pb2.Path
        residual: _dtab_pb2.Path
        def __init__(self, id: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ..., residual: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ...) -> None: ...
    class Transformation(_message.Message):
        __slots__ = ("name", "leaf", "tree")
        NAME_FIELD_NUMBER: _ClassVar[int]
        LEAF_FIELD_NUMBER: _ClassVar[int]
        TREE_FIELD_NUMBER: _ClassVar[int]
        name: str
        leaf: BoundDelegateTree.Leaf
        tree: BoundDelegateTree
        def __init__(self, name: _Optional[str] = ..., leaf: _Optional[_Union[BoundDelegateTree.Leaf, _Mapping]] = ..., tree: _Optional[_Union[BoundDelegateTree, _Mapping]] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    DENTRY_FIELD_NUMBER: _ClassVar[int]
    NEG_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FIELD_NUMBER: _ClassVar[int]
    ALT_FIELD_NUMBER: _ClassVar[int]
    UNION_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    DELEGATE_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMATION_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    path: _dtab_pb2.Path
    dentry: _dtab_pb2.Dtab.Dentry
    neg: BoundDelegateTree.Neg
    fail: BoundDelegateTree.Fail
    empty: BoundDelegateTree.Empty
    alt: BoundDelegateTree.Alt
    union: BoundDelegateTree.Union
    leaf: BoundDelegateTree.Leaf
    delegate: BoundDelegateTree
    transformation: BoundDelegateTree.Transformation
    exception: str
    def __init__(self, path: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ..., dentry: _Optional[_Union[_dtab_pb2.Dtab.Dentry, _Mapping]] = ..., neg: _Optional[_Union[BoundDelegateTree.Neg, _Mapping]] = ..., fail: _Optional[_Union[BoundDelegateTree.Fail, _Mapping]] = ..., empty: _Optional[_Union[BoundDelegateTree.Empty, _Mapping]] = ..., alt: _Optional[_Union[BoundDelegateTree.Alt, _Mapping]] = ..., union: _Optional[_Union[BoundDelegateTree.Union, _Mapping]] = ..., leaf: _Optional[_Union[BoundDelegateTree.Leaf, _Mapping]] = ..., delegate: _Optional[_Union[BoundDelegateTree, _Mapping]] = ..., transformation: _Optional[_Union[BoundDelegateTree.Transformation, _Mapping]] = ..., exception: _Optional[str] = ...) -> None: ...
