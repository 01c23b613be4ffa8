"""Thrift messages for a thriftpy2 service: decode a call and dispatch it (server), encode
a call and decode its reply (client).

Binary protocol as Finagle uses it: strict (versioned) headers written, non-strict ones
accepted on read. A payload that cannot be decoded is answered with a thrift
``TApplicationException`` (``PROTOCOL_ERROR``) when its header names a method and seqid,
an unknown method with ``UNKNOWN_METHOD``; an exception the service declares travels in
the result struct, as Scrooge-generated Finagle services do.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Optional

from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.thrift import TApplicationException, TException, TMessageType
from thriftpy2.transport import TMemoryBuffer

from ..ratelog import RateLimitedLog

log = logging.getLogger(__name__)
_bad_input = RateLimitedLog(log)

#: Nesting allowed when decoding (the Namer IDL needs 4; unknown fields are skipped
#: recursively, so a hostile message could otherwise nest until Python's limit).
MAX_DEPTH = 16


class ThriftDecodeError(ValueError):
    """A payload that is not a thrift message we can read."""


def _proto(buf: TMemoryBuffer) -> TBinaryProtocol:
    return TBinaryProtocol(buf, strict_read=False, strict_write=True, decode_response=True,
                           max_depth=MAX_DEPTH)


def encode_message(name: str, mtype: int, seqid: int, obj: Any) -> bytes:
    buf = TMemoryBuffer()
    p = _proto(buf)
    p.write_message_begin(name, mtype, seqid)
    p.write_struct(obj)
    p.write_message_end()
    out: bytes = buf.getvalue()
    return out


def decode_message(payload: bytes, make: Callable[[str, int], Any]) -> tuple[str, int, int, Any]:
    """(name, type, seqid, struct); ``make(name, type)`` gives the empty struct to fill."""
    buf = TMemoryBuffer(payload)
    p = _proto(buf)
    try:
        name, mtype, seqid = p.read_message_begin()
    except Exception as e:
        raise ThriftDecodeError(f"not a thrift message: {e}") from None
    obj = make(name, mtype)
    if obj is None:
        return name, mtype, seqid, None
    try:
        p.read_struct(obj)
    except Exception as e:
        raise _Undecodable(name, seqid, f"malformed {name} message: {type(e).__name__}: {e}") from None
    return name, mtype, seqid, obj


class _Undecodable(ThriftDecodeError):
    def __init__(self, name: str, seqid: int, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.seqid = seqid


def _exception_field(result_cls: Any, exc: BaseException) -> Optional[str]:
    """The result struct's field that carries ``exc`` (a declared exception), if any."""
    for fid, spec in result_cls.thrift_spec.items():
        if fid == 0:
            continue
        fname: str = spec[1]
        cls = spec[2] if len(spec) > 2 else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return fname
    return None


class ThriftDispatcher:
    """Serves ``impl`` (``async def <method>(*params) -> result value``) for thriftpy2
    ``service``. ``__call__(payload) -> reply payload`` is what the Mux server runs."""

    def __init__(self, service: Any, impl: Any, on_bad_input: Optional[Callable[[str, str], None]] = None) -> None:
        self.service = service
        self.impl = impl
        self.methods = set(service.thrift_services)
        self.on_bad_input = on_bad_input or (lambda kind, msg: _bad_input.warn(kind, "thrift: %s", msg))

    def _make(self, name: str, mtype: int) -> Any:
        if name not in self.methods or mtype not in (TMessageType.CALL, TMessageType.ONEWAY):
            return None
        return getattr(self.service, f"{name}_args")()

    async def __call__(self, payload: bytes) -> bytes:
        try:
            name, mtype, seqid, args = decode_message(payload, self._make)
        except _Undecodable as e:
            self.on_bad_input("malformed", str(e))
            return self._app_error(e.name, e.seqid, TApplicationException.PROTOCOL_ERROR, str(e))
        except ThriftDecodeError as e:
            self.on_bad_input("not-thrift", str(e))
            raise
        if args is None:
            what = f"unknown method {name!r}" if name not in self.methods else f"message type {mtype} for {name}"
            self.on_bad_input("unknown-method", what)
            return self._app_error(name, seqid, TApplicationException.UNKNOWN_METHOD,
                                   f"Invalid method name: '{name}'" if name not in self.methods else what)
        result_cls = getattr(self.service, f"{name}_result")
        result = result_cls()
        try:
            params = [getattr(args, spec[1]) for _, spec in sorted(args.thrift_spec.items())]
            value = await getattr(self.impl, name)(*params)
            result.success = value
        except TException as e:
            field = _exception_field(result_cls, e)
            if field is None:
                log.warning("thrift %s: undeclared exception %r", name, e)
                return self._app_error(name, seqid, TApplicationException.INTERNAL_ERROR, str(e))
            setattr(result, field, e)
        return encode_message(name, TMessageType.REPLY, seqid, result)

    @staticmethod
    def _app_error(name: str, seqid: int, kind: int, message: str) -> bytes:
        return encode_message(name, TMessageType.EXCEPTION, seqid, TApplicationException(kind, message))


class ThriftCallError(Exception):
    """The server answered with a TApplicationException (or an unreadable reply)."""


def encode_call(service: Any, name: str, seqid: int, **kwargs: Any) -> bytes:
    args = getattr(service, f"{name}_args")(**kwargs)
    return encode_message(name, TMessageType.CALL, seqid, args)


def decode_reply(service: Any, name: str, payload: bytes) -> Any:
    """The call's value; a declared exception is raised as itself."""
    result_cls = getattr(service, f"{name}_result")

    def make(rname: str, mtype: int) -> Any:
        if mtype == TMessageType.EXCEPTION:
            return TApplicationException()
        return result_cls()

    try:
        _, mtype, _, result = decode_message(payload, make)
    except ThriftDecodeError as e:
        raise ThriftCallError(f"unreadable {name} reply: {e}") from None
    if mtype == TMessageType.EXCEPTION:
        raise ThriftCallError(f"{name}: {result.message or 'application exception'} (type {result.type})")
    for fid, spec in result_cls.thrift_spec.items():
        if fid != 0 and getattr(result, spec[1], None) is not None:
            raise getattr(result, spec[1])
    if result.success is None:
        raise ThriftCallError(f"{name}: reply has no result")
    return result.success


Handler = Callable[[bytes], Awaitable[bytes]]
