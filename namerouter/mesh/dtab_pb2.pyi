from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Path(_message.Message):
    __slots__ = ("elems",)
    ELEMS_FIELD_NUMBER: _ClassVar[int]
    elems: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, elems: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PathNameTree(_message.Message):
    __slots__ = ("neg", "fail", "empty", "alt", "union", "leaf")
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
        trees: _containers.RepeatedCompositeFieldContainer[PathNameTree]
        def __init__(self, trees: _Optional[_Iterable[_Union[PathNameTree, _Mapping]]] = ...) -> None: ...
    class Union(_message.Message):
        __slots__ = ("trees",)
        class Weighted(_message.Message):
            __slots__ = ("weight", "tree")
            WEIGHT_FIELD_NUMBER: _ClassVar[int]
            TREE_FIELD_NUMBER: _ClassVar[int]
            weight: float
            tree: PathNameTree
            def __init__(self, weight: _Optional[float] = ..., tree: _Optional[_Union[PathNameTree, _Mapping]] = ...) -> None: ...
        TREES_FIELD_NUMBER: _ClassVar[int]
        trees: _containers.RepeatedCompositeFieldContainer[PathNameTree.Union.Weighted]
        def __init__(self, trees: _Optional[_Iterable[_Union[PathNameTree.Union.Weighted, _Mapping]]] = ...) -> None: ...
    class Leaf(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: Path
        def __init__(self, id: _Optional[_Union[Path, _Mapping]] = ...) -> None: ...
    NEG_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FIELD_NUMBER: _ClassVar[int]
    ALT_FIELD_NUMBER: _ClassVar[int]
    UNION_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    neg: PathNameTree.Neg
    fail: PathNameTree.Fail
    empty: PathNameTree.Empty
    alt: PathNameTree.Alt
    union: PathNameTree.Union
    leaf: PathNameTree.Leaf
    def __init__(self, neg: _Optional[_Union[PathNameTree.Neg, _Mapping]] = ..., fail: _Optional[_Union[PathNameTree.Fail, _Mapping]] = ..., empty: _Optional[_Union[PathNameTree.Empty, _Mapping]] = ..., alt: _Optional[_Union[PathNameTree.Alt, _Mapping]] = ..., union: _Optional[_Union[PathNameTree.Union, _Mapping]] = ..., leaf: _Optional[_Union[PathNameTree.Leaf, _Mapping]] = ...) -> None: ...

class Dtab(_message.Message):
    __slots__ = ("dentries",)
    class Dentry(_message.Message):
        __slots__ = ("prefix", "dst")
        class Prefix(_message.Message):
            __slots__ = ("elems",)
            class Elem(_message.Message):
                __slots__ = ("label", "wildcard")
                class Wildcard(_message.Message):
                    __slots__ = ()
                    def __init__(self) -> None: ...
                LABEL_FIELD_NUMBER: _ClassVar[int]
                WILDCARD_FIELD_NUMBER: _ClassVar[int]
                label: bytes
                wildcard: Dtab.Dentry.Prefix.Elem.Wildcard
                def __init__(self, label: _Optional[bytes] = ..., wildcard: _Optional[_Union[Dtab.Dentry.Prefix.Elem.Wildcard, _Mapping]] = ...) -> None: ...
            ELEMS_FIELD_NUMBER: _ClassVar[int]
            elems: _containers.RepeatedCompositeFieldContainer[Dtab.Dentry.Prefix.Elem]
            def __init__(self, elems: _Optional[_Iterable[_Union[Dtab.Dentry.Prefix.Elem, _Mapping]]] = ...) -> None: ...
        PREFIX_FIELD_NUMBER: _ClassVar[int]
        DST_FIELD_NUMBER: _ClassVar[int]
        prefix: Dtab.Dentry.Prefix
        dst: PathNameTree
        def __init__(self, prefix: _Optional[_Union[Dtab.Dentry.Prefix, _Mapping]] = ..., dst: _Optional[_Union[PathNameTree, _Mapping]] = ...) -> None: ...
    DENTRIES_FIELD_NUMBER: _ClassVar[int]
    dentries: _containers.RepeatedCompositeFieldContainer[Dtab.Dentry]
    def __init__(self, dentries: _Optional[_Iterable[_Union[Dtab.Dentry, _Mapping]]] = ...) -> None: ...

class VersionedDtab(_message.Message):
    __slots__ = ("version", "dtab")
    class Version(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: bytes
        def __init__(self, id: _Optional[bytes] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DTAB_FIELD_NUMBER: _ClassVar[int]
    version: VersionedDtab.Version
    dtab: Dtab
    def __init__(self, version: _Optional[_Union[VersionedDtab.Version, _Mapping]] = ..., dtab: _Optional[_Union[Dtab, _Mapping]] = ...) -> None: ...
