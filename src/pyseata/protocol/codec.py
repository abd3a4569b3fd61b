"""The ``seata`` body codec (serializer 0x01): PROTOCOL.md section 3.

A body is ``int16 type code`` followed by the payload of that message. Each payload layout is a
row in :data:`LAYOUTS`: an ordered list of fields, each with a wire kind. The same row drives
encoding and decoding, so the two cannot drift apart. Java's decoder quirks are flags on a field
(``stop``: a zero-length string ends the payload) or on the layout (``lenient``: a short payload
ends quietly), because Java clients depend on them.

Decoding raises :class:`~pyseata.errors.RemoteProtocolError` for anything malformed; encoding
raises :class:`~pyseata.errors.LocalProtocolError` for values the wire cannot carry. Nothing else
escapes.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pyseata.errors import LocalProtocolError, RemoteProtocolError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import (
    EXCEPTION_CODE_TABLES,
    BranchStatus,
    BranchType,
    ExceptionCodeTable,
    GlobalStatus,
    ResultCode,
    TransactionExceptionCode,
    TypeCode,
)

__all__ = ["DEFAULT_CODES", "LAYOUTS", "decode_body", "encode_body"]

DEFAULT_CODES = EXCEPTION_CODE_TABLES["2.0"]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U8 = struct.Struct(">B")
_I8 = struct.Struct(">b")

_MAX_STR16 = 0x7FFF


class _Stop(Exception):  # noqa: N818 - control flow, never escapes
    """Raised inside a payload decoder where Java's decoder stops reading (quirk, not an error)."""


class _Short(Exception):  # noqa: N818 - control flow, never escapes
    """The payload ended before a field did."""


# A field reader takes (buffer, position, values-so-far, codes) and returns the new position.
Reader = Callable[[bytes, int, dict[str, Any], ExceptionCodeTable], int]
# A field writer appends the encoded field to a list of chunks.
Writer = Callable[[Any, list[bytes], ExceptionCodeTable], None]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    read: Reader
    write: Writer
    # What the field is, for the compiled fast path (see _compile): a kind and its parameters.
    kind: str = ""
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Layout:
    cls: type[m.Message]
    fields: tuple[Field, ...]
    lenient: bool = False  # Java stops quietly when the payload runs short (identify requests)


# --- primitive readers and writers ------------------------------------------------------------


def _read_str(buf: bytes, pos: int, width: struct.Struct) -> tuple[str | None, int]:
    if pos + width.size > len(buf):
        raise _Short
    (n,) = width.unpack_from(buf, pos)
    pos += width.size
    if n <= 0:  # Java: "if length > 0 read, else leave null"; negative lengths are read as 0
        return None, pos
    end = pos + n
    if end > len(buf):
        raise _Short
    return buf[pos:end].decode("utf-8"), end


def _write_str(value: str | None, width: struct.Struct, limit: int, name: str) -> bytes:
    if not value:
        return width.pack(0)
    data = value.encode("utf-8")
    if len(data) > limit:
        raise LocalProtocolError(f"{name} is {len(data)} bytes in UTF-8; the wire allows at most {limit}")
    return width.pack(len(data)) + data


def str16(name: str, *, empty: str | None = None, stop: bool = False) -> Field:
    """An int16-length UTF-8 string. ``empty`` is what a zero length decodes to; ``stop`` makes a
    zero length end the payload, as some Java decoders do."""

    def read(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
        value, pos = _read_str(buf, pos, _I16)
        if value is None:
            if stop:
                raise _Stop
            value = empty
        values[name] = value
        return pos

    def write(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
        out.append(_write_str(value, _I16, _MAX_STR16, name))

    return Field(name, read, write, "str16", (empty, stop))


def str32(name: str) -> Field:
    def read(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
        values[name], pos = _read_str(buf, pos, _I32)
        return pos

    def write(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
        out.append(_write_str(value, _I32, 0x7FFFFFFF, name))

    return Field(name, read, write, "str32")


def integer(name: str, width: struct.Struct) -> Field:
    bits = width.size * 8

    def read(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
        if pos + width.size > len(buf):
            raise _Short
        (values[name],) = width.unpack_from(buf, pos)
        return pos + width.size

    def write(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
        try:
            out.append(width.pack(value))
        except struct.error:
            raise LocalProtocolError(f"{name}={value!r} does not fit a signed {bits}-bit integer") from None

    return Field(name, read, write, "integer", (width,))


def boolean(name: str, width: struct.Struct) -> Field:
    def read(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
        if pos + width.size > len(buf):
            raise _Short
        (raw,) = width.unpack_from(buf, pos)
        values[name] = raw == 1  # Java decoders test "== 1"
        return pos + width.size

    def write(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
        out.append(width.pack(1 if value else 0))

    return Field(name, read, write, "boolean", (width,))


def enum_u8(name: str, enum: type[IntEnum], *, nullable: bool = False) -> Field:
    """An enum written as one byte. ``nullable``: None travels as 0xFF (GlobalReportRequest)."""
    members = {int(e): e for e in enum}

    def read(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
        if pos >= len(buf):
            raise _Short
        raw = buf[pos]
        if nullable and raw >= 0x80:  # Java sets the status only if the signed byte > -1
            values[name] = None
            return pos + 1
        try:
            values[name] = members[raw]
        except KeyError:
            raise RemoteProtocolError(f"unknown {enum.__name__}[{raw}] in field {name}", offset=pos) from None
        return pos + 1

    def write(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
        if value is None:
            if not nullable:
                raise LocalProtocolError(f"{name} must not be None")
            out.append(b"\xff")
            return
        if not isinstance(value, enum):
            raise LocalProtocolError(f"{name} must be a {enum.__name__}, not {value!r}")
        out.append(_U8.pack(value))

    return Field(name, read, write, "enum_u8", (enum, members, nullable))


def _read_result_code(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
    if pos >= len(buf):
        raise _Short
    raw = buf[pos]
    if raw > 1:
        raise RemoteProtocolError(f"unknown ResultCode[{raw}]", offset=pos)
    values["result_code"] = ResultCode(raw)
    return pos + 1


def _write_result_code(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
    out.append(b"\x01" if value == ResultCode.Success else b"\x00")


def _read_msg(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
    # The message is on the wire only for failures.
    if values["result_code"] == ResultCode.Failed:
        values["msg"], pos = _read_str(buf, pos, _I16)
    return pos


def _truncate_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    # Cut at a character boundary: better than Java, whose (short) cast corrupts the frame.
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


def _write_msg_for(values: m.AbstractResultMessage, out: list[bytes]) -> None:
    if values.result_code == ResultCode.Failed:
        data = _truncate_utf8(values.msg or "", _MAX_STR16)
        out.append(_I16.pack(len(data)) + data)


def _read_exception_code(buf: bytes, pos: int, values: dict[str, Any], codes: ExceptionCodeTable) -> int:
    if pos >= len(buf):
        raise _Short
    values["transaction_exception_code"] = codes.decode(buf[pos])
    return pos + 1


def _write_exception_code(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
    out.append(_U8.pack(codes.encode(value)))


def _noop_write(value: Any, out: list[bytes], codes: ExceptionCodeTable) -> None:
    """The message field is written by the layout encoder, which needs the result code too."""


RESULT: tuple[Field, ...] = (
    Field("result_code", _read_result_code, _write_result_code, "result_code"),
    Field("msg", _read_msg, _noop_write, "msg"),
)
TRANSACTION_RESULT: tuple[Field, ...] = (
    *RESULT,
    Field("transaction_exception_code", _read_exception_code, _write_exception_code, "exception_code"),
)

# --- the layouts (PROTOCOL.md 3.4) ------------------------------------------------------------

_IDENTIFY_TM = (
    str16("version", empty=""),
    str16("application_id", empty=""),
    str16("transaction_service_group", empty=""),
    str16("extra_data", empty=""),
)
_GLOBAL_END_REQUEST = (str16("xid"), str16("extra_data"))
_GLOBAL_END_RESPONSE = (*TRANSACTION_RESULT, enum_u8("global_status", GlobalStatus))
_BRANCH_REGISTER = (
    str16("xid"),
    enum_u8("branch_type", BranchType),
    str16("resource_id"),
    str32("lock_key"),
    str32("application_data"),
)
_BRANCH_END_REQUEST = (
    str16("xid", stop=True),
    integer("branch_id", _I64),
    enum_u8("branch_type", BranchType),
    str16("resource_id", stop=True),
    str32("application_data"),
)
_BRANCH_END_RESPONSE = (
    *TRANSACTION_RESULT,
    str16("xid"),
    integer("branch_id", _I64),
    enum_u8("branch_status", BranchStatus),
)
_IDENTIFY_RESPONSE = (boolean("identified", _U8), str16("version", stop=True))

_SIMPLE_LAYOUTS: tuple[Layout, ...] = (
    Layout(m.RegisterTMRequest, _IDENTIFY_TM, lenient=True),
    Layout(
        m.RegisterRMRequest,
        (
            str16("version", stop=True),
            str16("application_id"),
            str16("transaction_service_group", empty=""),
            str16("extra_data"),
            str32("resource_ids"),
        ),
    ),
    Layout(m.RegisterTMResponse, _IDENTIFY_RESPONSE),
    Layout(m.RegisterRMResponse, _IDENTIFY_RESPONSE),
    Layout(m.GlobalBeginRequest, (integer("timeout", _I32), str16("transaction_name"))),
    Layout(m.GlobalBeginResponse, (*TRANSACTION_RESULT, str16("xid"), str16("extra_data"))),
    Layout(m.GlobalCommitRequest, _GLOBAL_END_REQUEST),
    Layout(m.GlobalRollbackRequest, _GLOBAL_END_REQUEST),
    Layout(m.GlobalStatusRequest, _GLOBAL_END_REQUEST),
    Layout(
        m.GlobalReportRequest,
        (*_GLOBAL_END_REQUEST, enum_u8("global_status", GlobalStatus, nullable=True)),
    ),
    Layout(m.GlobalCommitResponse, _GLOBAL_END_RESPONSE),
    Layout(m.GlobalRollbackResponse, _GLOBAL_END_RESPONSE),
    Layout(m.GlobalStatusResponse, _GLOBAL_END_RESPONSE),
    Layout(m.GlobalReportResponse, _GLOBAL_END_RESPONSE),
    Layout(m.BranchRegisterRequest, _BRANCH_REGISTER),
    Layout(m.GlobalLockQueryRequest, _BRANCH_REGISTER),
    Layout(m.BranchRegisterResponse, (*TRANSACTION_RESULT, integer("branch_id", _I64))),
    Layout(
        m.BranchReportRequest,
        (
            str16("xid"),
            integer("branch_id", _I64),
            enum_u8("status", BranchStatus),
            str16("resource_id"),
            str32("application_data"),
            enum_u8("branch_type", BranchType),
        ),
    ),
    Layout(m.BranchReportResponse, TRANSACTION_RESULT),
    Layout(m.GlobalLockQueryResponse, (*TRANSACTION_RESULT, boolean("lockable", _I16))),
    Layout(m.BranchCommitRequest, _BRANCH_END_REQUEST),
    Layout(m.BranchRollbackRequest, _BRANCH_END_REQUEST),
    Layout(m.BranchCommitResponse, _BRANCH_END_RESPONSE),
    Layout(m.BranchRollbackResponse, _BRANCH_END_RESPONSE),
    Layout(
        m.UndoLogDeleteRequest,
        (enum_u8("branch_type", BranchType), str16("resource_id", stop=True), integer("save_days", _I16)),
    ),
)

LAYOUTS: dict[type[m.Message], Layout] = {layout.cls: layout for layout in _SIMPLE_LAYOUTS}
"""Payload layout of every message that is not a batch container."""


def _decode_payload(layout: Layout, buf: bytes, pos: int, codes: ExceptionCodeTable) -> tuple[m.Message, int]:
    values: dict[str, Any] = {}
    try:
        for f in layout.fields:
            pos = f.read(buf, pos, values, codes)
    except _Stop:
        pass
    except _Short:
        if not layout.lenient:
            raise RemoteProtocolError(
                f"{layout.cls.__name__} body ends before field {f.name}", offset=pos
            ) from None
    return layout.cls(**values), pos


def _encode_payload(layout: Layout, msg: m.Message, out: list[bytes], codes: ExceptionCodeTable) -> None:
    for f in layout.fields:
        if f.name == "msg":
            _write_msg_for(msg, out)  # type: ignore[arg-type]
        else:
            f.write(getattr(msg, f.name), out, codes)


# --- compiled fast path ------------------------------------------------------------------------
#
# Walking the field closures above costs more than the bytes are worth for the small messages
# that make up nearly all traffic. For each layout, _compile writes one straight-line decoder and
# one encoder from the same rows. They handle only the ordinary case: anything unusual (a short
# body, a zero-length string that stops Java's decoder, an unknown enum byte, a string over its
# limit, a value of the wrong type) raises _Slow, and the generic functions above run instead,
# so every error message and every Java quirk stays exactly where it is defined.


class _Slow(Exception):  # noqa: N818 - control flow, never escapes
    """The compiled path met something only the generic path handles."""


_BYTES = tuple(bytes([i]) for i in range(256))
_LEN16 = tuple(_I16.pack(i) for i in range(256))
_RESULT_CODES = {int(c): c for c in ResultCode}
_FastDecoder = Callable[..., tuple[m.Message, int]]  # (buf, pos, codes[, end])
_FastEncoder = Callable[[m.Message, ExceptionCodeTable], bytes]


def _decode_lines(f: Field, i: int, env: dict[str, Any]) -> list[str] | None:
    v = f"v{i}"
    if f.kind in ("str16", "str32", "msg"):
        lines = []
        if f.kind == "msg":  # on the wire only for failures
            lines += [f"{v} = None", "if v_result == 0:"]
        ind = "    " if f.kind == "msg" else ""
        empty, stop = f.args if f.kind == "str16" else (None, False)
        env[f"E{i}"] = empty
        if f.kind == "str32":
            lines += ["if pos + 4 > n: raise _Slow", "(ln,) = _I32.unpack_from(buf, pos)", "pos += 4"]
        else:
            lines += [
                f"{ind}if pos + 2 > n: raise _Slow",
                f"{ind}ln = buf[pos] << 8 | buf[pos + 1]",
                f"{ind}pos += 2",
                f"{ind}if ln & 0x8000: ln = 0",  # a negative length reads as 0, as in _read_str
            ]
        lines += [
            f"{ind}if ln <= 0:",
            f"{ind}    {'raise _Slow' if stop else f'{v} = E{i}'}",
            f"{ind}else:",
            f"{ind}    if pos + ln > n: raise _Slow",
            f"{ind}    {v} = buf[pos:pos + ln].decode('utf-8')",
            f"{ind}    pos += ln",
        ]
        return lines
    if f.kind == "integer":
        (width,) = f.args
        env[f"W{i}"] = width
        return [
            f"if pos + {width.size} > n: raise _Slow",
            f"({v},) = W{i}.unpack_from(buf, pos)",
            f"pos += {width.size}",
        ]
    if f.kind == "boolean":
        (width,) = f.args
        env[f"W{i}"] = width
        return [f"if pos + {width.size} > n: raise _Slow", f"{v} = W{i}.unpack_from(buf, pos)[0] == 1",
                f"pos += {width.size}"]
    if f.kind == "enum_u8":
        _, members, nullable = f.args
        env[f"M{i}"] = members
        lines = ["if pos >= n: raise _Slow", "raw = buf[pos]", "pos += 1"]
        if nullable:
            lines += [f"{v} = None if raw >= 0x80 else M{i}[raw]"]
        else:
            lines += [f"{v} = M{i}[raw]"]  # KeyError: unknown member, the generic path reports it
        return lines
    if f.kind == "result_code":
        return ["if pos >= n: raise _Slow", "v_result = buf[pos]", "pos += 1", "if v_result > 1: raise _Slow",
                f"{v} = _RESULT_CODES[v_result]"]
    if f.kind == "exception_code":
        # codes.decode, inline
        return ["if pos >= n: raise _Slow", "raw = buf[pos]", "pos += 1", "t = codes._by_ordinal",
                f"{v} = t[raw] if raw < len(t) else _UNKNOWN_CODE"]
    return None


def _encode_lines(f: Field, i: int, env: dict[str, Any]) -> list[str] | None:
    """Lines that leave the field's bytes in ``p{i}``; the encoder joins them once at the end."""
    get, p = f"msg.{f.name}", f"p{i}"
    if f.kind in ("str16", "str32"):
        width, limit = (_I16, _MAX_STR16) if f.kind == "str16" else (_I32, 0x7FFFFFFF)
        env[f"W{i}"] = width
        # Short strings take their length prefix from a table: a struct call less.
        prefix = f"(_LEN16[n] if n < 256 else W{i}.pack(n))" if f.kind == "str16" else f"W{i}.pack(n)"
        return [
            f"v = {get}",
            "if not v:",
            f"    {p} = {width.pack(0)!r}",
            "else:",
            f"    {p} = v.encode('utf-8')",
            f"    n = len({p})",
            f"    if n > {limit}: raise _Slow",
            f"    {p} = {prefix} + {p}",
        ]
    if f.kind == "msg":
        return [f"{p} = b''", "if msg.result_code == _FAILED:", "    data = _truncate_utf8(msg.msg or '', _MAX_STR16)",
                f"    {p} = _I16.pack(len(data)) + data"]
    if f.kind == "integer":
        env[f"W{i}"] = f.args[0]
        return [f"{p} = W{i}.pack({get})"]  # struct.error: the generic path reports it
    if f.kind == "boolean":
        env[f"W{i}"] = f.args[0]
        return [f"{p} = W{i}.pack(1 if {get} else 0)"]
    if f.kind == "enum_u8":
        env[f"C{i}"] = f.args[0]
        return [f"v = {get}", f"if v.__class__ is not C{i}: raise _Slow", f"{p} = _BYTES[v]"]
    if f.kind == "result_code":
        return [f"{p} = b'\\x01' if {get} == _SUCCESS else b'\\x00'"]
    if f.kind == "exception_code":
        return [f"{p} = _BYTES[codes._to_ordinal.get({get}, 0)]"]  # codes.encode, inline
    return None


def _construct_lines(layout: Layout, env: dict[str, Any]) -> list[str]:
    """Builds the record. Through its slot descriptors when that is what the frozen dataclass's
    ``__init__`` would do anyway (no ``__post_init__``, plain defaults): a third of the cost."""
    cls = layout.cls
    in_layout = {f.name: i for i, f in enumerate(layout.fields)}
    dc_fields = dataclasses.fields(cls)
    plain = not hasattr(cls, "__post_init__") and all(
        f.name in in_layout or f.default is not dataclasses.MISSING for f in dc_fields
    )
    if not plain:
        args = ", ".join(f"{name}=v{i}" for name, i in in_layout.items())
        return [f"return cls({args}), pos"]
    lines = ["obj = _new(cls)"]
    env["_new"] = object.__new__
    for j, f in enumerate(dc_fields):
        env[f"S{j}"] = getattr(cls, f.name).__set__
        if f.name in in_layout:
            lines.append(f"S{j}(obj, v{in_layout[f.name]})")
        else:
            env[f"D{j}"] = f.default
            lines.append(f"S{j}(obj, D{j})")
    return [*lines, "return obj, pos"]


def _compile(layout: Layout) -> tuple[_FastDecoder, _FastEncoder] | None:
    env: dict[str, Any] = {
        "_Slow": _Slow, "_I16": _I16, "_I32": _I32, "_BYTES": _BYTES, "_RESULT_CODES": _RESULT_CODES,
        "_FAILED": ResultCode.Failed, "_SUCCESS": ResultCode.Success, "_MAX_STR16": _MAX_STR16,
        "_truncate_utf8": _truncate_utf8, "cls": layout.cls, "_LEN16": _LEN16,
        "_UNKNOWN_CODE": TransactionExceptionCode.Unknown,
        "HEAD": _I16.pack(layout.cls.TYPE_CODE),
    }
    # ``end``: where the body ends inside ``buf`` (the frame decoder reads bodies in place);
    # by default the end of ``buf``.
    decode = ["def decode(buf, pos, codes, end=-1):", "    n = len(buf) if end < 0 else end"]
    encode = ["def encode(msg, codes):"]
    for i, f in enumerate(layout.fields):
        dec, enc = _decode_lines(f, i, env), _encode_lines(f, i, env)
        if dec is None or enc is None:
            return None  # a field kind the compiler does not know: the generic path only
        decode += ["    " + line for line in dec]
        encode += ["    " + line for line in enc]
    decode += ["    " + line for line in _construct_lines(layout, env)]
    parts = ", ".join(f"p{i}" for i in range(len(layout.fields)))
    encode.append(f"    return b''.join((HEAD, {parts}))")
    exec(compile("\n".join(decode + encode), f"<codec {layout.cls.__name__}>", "exec"), env)
    return env["decode"], env["encode"]


_FAST: dict[type[m.Message], tuple[_FastDecoder, _FastEncoder]] = {
    layout.cls: compiled for layout in _SIMPLE_LAYOUTS if (compiled := _compile(layout)) is not None
}


_FAST_DECODERS: dict[int, _FastDecoder] = {cls.TYPE_CODE: fast[0] for cls, fast in _FAST.items()}
_FAST_ENCODERS: dict[type[m.Message], _FastEncoder] = {cls: fast[1] for cls, fast in _FAST.items()}
FAST_ERRORS = (_Slow, KeyError, UnicodeDecodeError)
"""What a compiled decoder raises when the generic path must decide (and report errors)."""


def _decode_layout(layout: Layout, buf: bytes, pos: int, codes: ExceptionCodeTable) -> tuple[m.Message, int]:
    fast = _FAST.get(layout.cls)
    if fast is not None:
        try:
            return fast[0](buf, pos, codes)
        except (_Slow, KeyError, UnicodeDecodeError):
            pass
    return _decode_payload(layout, buf, pos, codes)


# --- batch containers (PROTOCOL.md 3.5) -------------------------------------------------------


def _decode_item(buf: bytes, pos: int, codes: ExceptionCodeTable) -> tuple[m.Message, int]:
    if pos + 2 > len(buf):
        raise RemoteProtocolError("batch ends before an item's type code", offset=pos)
    (code,) = _I16.unpack_from(buf, pos)
    layout = _layout_for_code(code, pos)
    return _decode_layout(layout, buf, pos + 2, codes)


def _decode_items(
    buf: bytes, pos: int, codes: ExceptionCodeTable, what: str
) -> tuple[list[m.Message], int, int]:
    """Reads ``i32 contentLength, i16 count, count x item``; returns items, item end, content end."""
    if pos + 6 > len(buf):
        raise RemoteProtocolError(f"{what} body too short for its header", offset=pos)
    (length,) = _I32.unpack_from(buf, pos)
    end = pos + 4 + length
    if length < 2 or end > len(buf):
        raise RemoteProtocolError(f"{what} content length {length} does not fit the body", offset=pos)
    content = buf[: end]
    (count,) = _I16.unpack_from(buf, pos + 4)
    if count < 0:
        raise RemoteProtocolError(f"{what} has a negative item count {count}", offset=pos + 4)
    pos += 6
    items = []
    for _ in range(count):
        item, pos = _decode_item(content, pos, codes)
        items.append(item)
    return items, pos, end


def _read_ids(buf: bytes, pos: int, count: int, end: int, what: str) -> tuple[int, ...]:
    if pos + 4 * count > end:
        raise RemoteProtocolError(f"{what} ends before its {count} message ids", offset=pos)
    return struct.unpack_from(f">{count}i", buf, pos)


def _decode_merged(buf: bytes, pos: int, codes: ExceptionCodeTable) -> m.Message:
    items, pos, end = _decode_items(buf, pos, codes, "MergedWarpMessage")
    # Seata <= 1.4 sends no ids; newer ones append them inside the content length.
    ids = _read_ids(buf, pos, len(items), end, "MergedWarpMessage") if pos < end else None
    return m.MergedWarpMessage(msgs=tuple(items), msg_ids=ids)


def _results(items: list[m.Message], what: str) -> tuple[m.AbstractResultMessage, ...]:
    for item in items:
        if not isinstance(item, m.AbstractResultMessage):
            raise RemoteProtocolError(f"{what} carries a {type(item).__name__}, which is not a result")
    return tuple(items)  # type: ignore[arg-type]


def _decode_merge_result(buf: bytes, pos: int, codes: ExceptionCodeTable) -> m.Message:
    items, _, _ = _decode_items(buf, pos, codes, "MergeResultMessage")
    return m.MergeResultMessage(msgs=_results(items, "MergeResultMessage"))


def _decode_batch_result(buf: bytes, pos: int, codes: ExceptionCodeTable) -> m.Message:
    items, pos, end = _decode_items(buf, pos, codes, "BatchResultMessage")
    ids = _read_ids(buf, pos, len(items), end, "BatchResultMessage")
    return m.BatchResultMessage(result_messages=_results(items, "BatchResultMessage"), msg_ids=ids)


def _encode_items(
    items: tuple[m.Message, ...], ids: tuple[int, ...] | None, codes: ExceptionCodeTable
) -> bytes:
    if len(items) > 0x7FFF:
        raise LocalProtocolError(f"a batch holds at most 32767 messages, not {len(items)}")
    if ids is not None and len(ids) != len(items):
        raise LocalProtocolError(f"{len(items)} messages but {len(ids)} message ids")
    out: list[bytes] = [_I16.pack(len(items))]
    for item in items:
        if isinstance(item, m.MergedWarpMessage | m.MergeResultMessage | m.BatchResultMessage):
            raise LocalProtocolError("batch containers cannot be nested")
        out.append(encode_body(item, codes))
    if ids:
        try:
            out.append(struct.pack(f">{len(ids)}i", *ids))
        except struct.error:
            raise LocalProtocolError(f"message ids {ids!r} do not fit signed 32-bit integers") from None
    content = b"".join(out)
    return _I32.pack(len(content)) + content


def _encode_merged(msg: Any, codes: ExceptionCodeTable) -> bytes:
    return _encode_items(msg.msgs, msg.msg_ids, codes)


def _encode_merge_result(msg: Any, codes: ExceptionCodeTable) -> bytes:
    return _encode_items(msg.msgs, None, codes)


def _encode_batch_result(msg: Any, codes: ExceptionCodeTable) -> bytes:
    return _encode_items(msg.result_messages, msg.msg_ids, codes)


_CONTAINERS: dict[
    type[m.Message],
    tuple[Callable[[bytes, int, ExceptionCodeTable], m.Message], Callable[[Any, ExceptionCodeTable], bytes]],
] = {
    m.MergedWarpMessage: (_decode_merged, _encode_merged),
    m.MergeResultMessage: (_decode_merge_result, _encode_merge_result),
    m.BatchResultMessage: (_decode_batch_result, _encode_batch_result),
}

_BY_CODE: dict[int, Layout | type[m.Message]] = {layout.cls.TYPE_CODE: layout for layout in _SIMPLE_LAYOUTS}
_BY_CODE.update({cls.TYPE_CODE: cls for cls in _CONTAINERS})


def _layout_for_code(code: int, pos: int) -> Layout:
    entry = _BY_CODE.get(code)
    if isinstance(entry, Layout):
        return entry
    if entry is None:
        name = TypeCode(code).name if code in TypeCode._value2member_map_ else "unknown"
        raise RemoteProtocolError(f"body type code {code} ({name}) has no seata codec", offset=pos)
    raise RemoteProtocolError(f"batch container {entry.__name__} cannot be nested", offset=pos)


# --- public entry points ----------------------------------------------------------------------


def decode_body(data: bytes, codes: ExceptionCodeTable = DEFAULT_CODES) -> m.Message:
    """Decodes a seata-codec body (type code + payload). Bytes after the payload are ignored, as
    Java does."""
    if len(data) < 2:
        raise RemoteProtocolError(f"body of {len(data)} bytes has no type code", offset=0)
    (code,) = _I16.unpack_from(data, 0)
    fast = _FAST_DECODERS.get(code)
    if fast is not None:
        try:
            return fast(data, 2, codes)[0]
        except (_Slow, KeyError, UnicodeDecodeError):
            pass  # the generic path below decides, and reports errors exactly
    try:
        entry = _BY_CODE.get(code)
        if entry is not None and not isinstance(entry, Layout):
            return _CONTAINERS[entry][0](data, 2, codes)
        return _decode_payload(_layout_for_code(code, 0), data, 2, codes)[0]
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"invalid UTF-8 in a string of a type {code} body: {exc.reason}") from None
    except struct.error as exc:  # defensive: every read is bounds-checked first
        raise RemoteProtocolError(f"malformed type {code} body: {exc}") from None


def encode_body(msg: m.Message, codes: ExceptionCodeTable = DEFAULT_CODES) -> bytes:
    """Encodes ``msg`` as a seata-codec body."""
    cls = type(msg)
    fast = _FAST.get(cls)
    if fast is not None:
        try:
            return fast[1](msg, codes)
        except Exception:
            pass
    layout = LAYOUTS.get(cls)
    head = _I16.pack(cls.TYPE_CODE)
    if layout is not None:
        out = [head]
        _encode_payload(layout, msg, out, codes)
        return b"".join(out)
    container = _CONTAINERS.get(cls)
    if container is None:
        raise LocalProtocolError(f"{cls.__name__} has no body in the seata codec")
    return head + container[1](msg, codes)
