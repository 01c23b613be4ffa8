from namerouter.mesh import dtab_pb2 as _dtab_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadDtabReq(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ReadDtabRsp(_message.Message):
    __slots__ = ("dtab",)
    DTAB_FIELD_NUMBER: _ClassVar[int]
    dtab: _dtab_pb2.Dtab
    def __init__(self, dtab: _Optional[_Union[_dtab_pb2.Dtab, _Mapping]] = ...) -> None: ...

class ShowDtabReq(_message.Message):
    __slots__ = ("dtab",)
    DTAB_FIELD_NUMBER: _ClassVar[int]
    dtab: _dtab_pb2.Dtab
    def __init__(self, dtab: _Optional[_Union[_dtab_pb2.Dtab, _Mapping]] = ...) -> None: ...

class ShowDtabRsp(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ReadPathReq(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ReadPathRsp(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: _dtab_pb2.Path
    def __init__(self, path: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ...) -> None: ...

class ShowPathReq(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: _dtab_pb2.Path
    def __init__(self, path: _Optional[_Union[_dtab_pb2.Path, _Mapping]] = ...) -> None: ...

class ShowPathRsp(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...
