"""The undo log: Seata's ``undo_log`` table and the ``rollback_info`` it holds.

**Table** (:class:`UndoLogTable`): Seata's columns per dialect (BEHAVIOUR.md 3.3) — MySQL has no
``id``; PostgreSQL has ``id SERIAL`` as primary key; SQLite (no Seata script) follows PostgreSQL.
``UNIQUE (xid, branch_id)`` is what makes the anti-suspension "defense" row work.

**rollback_info** (:func:`encode_undo_log`): a :class:`BranchUndoLog` written as Seata's default
``jackson`` serializer writes it, with Jackson's default typing: every bean carries ``@class``,
lists are ``["java.util.ArrayList", [...]]``, values other than String/Integer/Double/Boolean are
``[<java class>, <value>]``. So a Java RM can read what we write, and we read what it writes.

Every value round-trips **exactly** in Python. Each value is written in the Java form Seata's own
RM would write for it (``java.lang.Long``, ``java.math.BigDecimal`` with its exact digits,
``java.sql.Timestamp`` as ``[epochMillis, nanos]``, ``[B`` as base64...). When that form cannot
carry the value exactly (an offset-aware datetime, a time with microseconds, a PostgreSQL interval,
a NaN numeric, an array...), the field also gets a ``pyValue`` property with an exact
``["py:<kind>", ...]`` form; Jackson ignores unknown properties, so Java still reads the field. A
value no Java form can hold is written only as ``["py:<kind>", ...]``: a Java RM fails to read that
log rather than restore something else. Whether a field needs ``pyValue`` is decided by decoding
the Java form and comparing, so exactness holds by construction.

**Naive date-times and Java.** ``java.sql.Timestamp`` and ``java.sql.Date`` are written as epoch
milliseconds of the wall-clock value *in the JVM's time zone*. pyseata writes them in
``UndoConfig.zone`` (UTC by default) and records that zone in the context (``timeZone=...``), so
any Python reader decodes them identically. A log written by Java has no ``timeZone``: set
``UndoConfig.java_zone`` to the JVM's ``user.timezone`` (default: this machine's zone, as the JVM's
default is). Other Java shapes are read as follows: ``java.sql.Time`` (``"HH:MM:SS"``) gives a
``time``, ``java.time.LocalDateTime`` a naive ``datetime``, ``SerialBlob`` bytes, ``SerialClob`` a
``str``, ``org.postgresql.util.PGobject`` of type json/jsonb the decoded document (other types its
text), Seata < 2.0 ``io.seata.*`` classes and ``keyType: "PrimaryKey"`` the same as today's. Where
a Java driver returns a different Python type than the Python driver (MySQL TIME: Java ``Time``,
PyMySQL ``timedelta``), the dirty-write check reports the difference instead of guessing.

**Compression**: above ``UndoConfig.threshold`` bytes (Seata's ``64k``) the JSON is compressed with
``UndoConfig.compressor`` (Seata's default ZIP, byte-compatible with Java), and the context says
``compressorType=<NAME>``.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import math
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from pyseata.at.dialects import Dialect, JavaType, Paramstyle, fill, get_dialect
from pyseata.at.errors import UndoLogFormatError, UndoValueError
from pyseata.at.images import Field, KeyType, Row, TableRecords, same_value
from pyseata.protocol.compress import compress, decompress
from pyseata.protocol.enums import CompressorType

__all__ = [
    "ROW_COLUMNS",
    "SERIALIZER",
    "BranchUndoLog",
    "SQLUndoLog",
    "SqlType",
    "UndoConfig",
    "UndoLogStatus",
    "UndoLogTable",
    "decode_context",
    "decode_undo_log",
    "decode_value",
    "encode_context",
    "encode_undo_log",
    "encode_value",
    "pack",
    "parse_size",
    "unpack",
]

SERIALIZER = "jackson"
_DEFAULT_CONTENT = b"{}"  # JacksonUndoLogParser.getDefaultContent(): the defense row's payload


# --- records ----------------------------------------------------------------------------------------


class SqlType(StrEnum):
    """Seata's ``SQLType`` names as they appear in ``sqlUndoLogs[].sqlType``."""

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SELECT_FOR_UPDATE = "SELECT_FOR_UPDATE"
    INSERT_ON_DUPLICATE_UPDATE = "INSERT_ON_DUPLICATE_UPDATE"
    UPDATE_JOIN = "UPDATE_JOIN"
    MULTI_DELETE = "MULTI_DELETE"
    MULTI_UPDATE = "MULTI_UPDATE"


class UndoLogStatus(IntEnum):
    """``undo_log.log_status``."""

    NORMAL = 0
    GLOBAL_FINISHED = 1  # the defense row: phase 2 ran before phase 1 committed


@dataclass(frozen=True, slots=True)
class SQLUndoLog:
    """What one statement changed: Seata's ``SQLUndoLog``."""

    sql_type: SqlType
    table_name: str
    before_image: TableRecords | None
    after_image: TableRecords | None


@dataclass(frozen=True, slots=True)
class BranchUndoLog:
    """The undo log of one branch: Seata's ``BranchUndoLog``, one per ``undo_log`` row."""

    xid: str
    branch_id: int
    sql_undo_logs: tuple[SQLUndoLog, ...] = ()


# --- values: Java forms and exact Python forms ------------------------------------------------------

_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPECIAL_FLOATS: Mapping[str, float] = MappingProxyType(
    {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
)
_PG_OBJECT = "org.postgresql.util.PGobject"
_JSON_TYPES = frozenset({"json", "jsonb"})


def _float32(value: float) -> float:
    """``value`` rounded to a Java ``float`` (beyond its range: infinity, as Java's cast gives)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _special(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _epoch_ms(value: datetime, zone: tzinfo) -> tuple[int, int]:
    """(epoch milliseconds, microseconds of the second) of a datetime; naive ones are in ``zone``."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    delta = aware - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1000, value.microsecond


def _from_epoch_ms(millis: int, zone: tzinfo) -> datetime:
    return (_EPOCH + timedelta(milliseconds=millis)).astimezone(zone).replace(tzinfo=None)


def _int_form(value: int, java_type: int) -> Any:
    if value in _INT32 and java_type != JavaType.BIGINT:
        return value  # java.lang.Integer is written bare
    return ["java.lang.Long" if value in _INT64 else "java.math.BigInteger", value]


def _float_form(value: float, java_type: int) -> Any:
    real = java_type == JavaType.REAL and (math.isnan(value) or _float32(value) == value)
    if not math.isfinite(value):
        return ["java.lang.Float" if real else "java.lang.Double", _special(value)]
    return ["java.lang.Float", value] if real else value  # java.lang.Double is written bare


def _decimal_form(value: Decimal, _java_type: int) -> Any:
    return ["java.math.BigDecimal", value] if value.is_finite() else ["py:Decimal", str(value)]


def _timestamp_form(value: datetime, zone: tzinfo) -> Any:
    millis, micros = _epoch_ms(value, zone)
    # Seata's TimestampSerializer: [millis, nanos-of-second] when there is anything below a millisecond
    return ["java.sql.Timestamp", [millis, micros * 1000] if micros % 1000 else millis]


def _date_form(value: date, zone: tzinfo) -> Any:
    return ["java.sql.Date", _epoch_ms(datetime(value.year, value.month, value.day), zone)[0]]


def _time_form(value: time) -> Any:
    return ["java.sql.Time", f"{value:%H:%M:%S}"]  # Jackson writes java.sql.Time.toString()


def _timedelta_form(value: timedelta) -> Any:
    return ["py:timedelta", [value.days, value.seconds, value.microseconds]]


def _json_form(value: Any) -> Any:
    if not _is_json(value):
        raise UndoValueError(f"a {type(value).__name__} value that is not a JSON document cannot be written "
                             "to an undo log")
    return {"@class": _PG_OBJECT, "type": "jsonb", "value": json.dumps(value, ensure_ascii=False)}


def _is_json(value: Any) -> bool:
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(_is_json(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False


@dataclass(frozen=True)
class _Codec:
    zone: tzinfo

    def java_form(self, value: Any, java_type: int) -> Any:
        """The form Seata's Java RM writes for this value (or a py: form when Java has none)."""
        encoder = _JAVA_FORMS.get(type(value))
        if encoder is None:
            raise UndoValueError(f"a value of type {type(value).__name__} cannot be written to an undo log")
        return encoder(self, value, java_type)

    def exact_form(self, value: Any, java_type: int) -> tuple[Any, Any]:
        """``(value form, pyValue form or None)``: the Java form, plus an exact form when it loses anything."""
        form = self.java_form(value, java_type)
        if type(value) in _EXACT_BY_FORM or self._survives(form, value):
            return form, None
        exact = _PY_FORMS.get(type(value))
        if exact is None:
            raise UndoValueError(f"a {type(value).__name__} value {value!r} does not survive the undo log")
        py = exact(self, value)
        if not self._survives(py, value):
            raise UndoValueError(f"a {type(value).__name__} value {value!r} does not survive the undo log")
        return form, py

    def _survives(self, form: Any, value: Any) -> bool:
        try:
            return _identical(self.decode(form), value)
        except UndoLogFormatError:  # e.g. year 1 in a zone west of Greenwich: before year 1 in UTC
            return False

    def decode(self, form: Any) -> Any:
        if form is None or isinstance(form, bool | int | str):
            return form
        if isinstance(form, Decimal):  # a bare JSON number with a fraction or exponent: java.lang.Double
            return float(form)
        if isinstance(form, float):
            return form
        if isinstance(form, dict):
            return _decode_bean(form)
        if isinstance(form, list) and len(form) == 2 and isinstance(form[0], str):
            decoder = _DECODERS.get(form[0])
            if decoder is None:
                raise UndoLogFormatError(f"cannot read a value of Java class {form[0]!r}")
            try:
                return decoder(self, form[1])
            except (ValueError, TypeError, OverflowError) as exc:
                raise UndoLogFormatError(f"bad {form[0]} value {form[1]!r}: {exc}") from exc
        raise UndoLogFormatError(f"cannot read the value {form!r}")


def _identical(a: Any, b: Any) -> bool:
    """``same_value``, and for date-times also the same offset and the same awareness."""
    if not same_value(a, b):
        return False
    if isinstance(a, datetime | time):
        return bool(a.utcoffset() == b.utcoffset())
    return True


_JAVA_FORMS: Mapping[type, Callable[[_Codec, Any, int], Any]] = MappingProxyType({
    type(None): lambda _c, _v, _t: None,
    bool: lambda _c, v, _t: v,
    int: lambda _c, v, t: _int_form(v, t),
    float: lambda _c, v, t: _float_form(v, t),
    Decimal: lambda _c, v, t: _decimal_form(v, t),
    str: lambda _c, v, _t: v,
    bytes: lambda _c, v, _t: ["[B", base64.b64encode(v).decode("ascii")],
    datetime: lambda c, v, _t: _timestamp_form(v, c.zone),
    date: lambda c, v, _t: _date_form(v, c.zone),
    time: lambda _c, v, _t: _time_form(v),
    timedelta: lambda _c, v, _t: _timedelta_form(v),
    uuid.UUID: lambda _c, v, _t: ["java.util.UUID", str(v)],
    dict: lambda _c, v, _t: _json_form(v),
    # A list is a JSON document (psycopg's json/jsonb) unless it is an ARRAY column or holds non-JSON values.
    list: lambda c, v, t: _json_form(v) if t != JavaType.ARRAY and _is_json(v) else _array_form(c, v),
    ipaddress.IPv4Address: lambda _c, v, _t: ["py:ip_address", str(v)],
    ipaddress.IPv6Address: lambda _c, v, _t: ["py:ip_address", str(v)],
    ipaddress.IPv4Interface: lambda _c, v, _t: ["py:ip_interface", str(v)],
    ipaddress.IPv6Interface: lambda _c, v, _t: ["py:ip_interface", str(v)],
    ipaddress.IPv4Network: lambda _c, v, _t: ["py:ip_network", str(v)],
    ipaddress.IPv6Network: lambda _c, v, _t: ["py:ip_network", str(v)],
})


# Types whose Java form holds every value exactly (Integer/Long/BigInteger, String, Boolean, base64
# bytes, UUID text): no decoding is needed to prove it. Exact types only: a subclass is verified.
_EXACT_BY_FORM = frozenset({type(None), bool, int, str, bytes, uuid.UUID})


def _array_form(codec: _Codec, value: list[Any]) -> Any:
    items = []
    for item in value:
        form, py = codec.exact_form(item, JavaType.ARRAY if isinstance(item, list) else JavaType.OTHER)
        items.append(form if py is None else py)
    return ["py:list", items]


_PY_FORMS: Mapping[type, Callable[[_Codec, Any], Any]] = MappingProxyType({
    datetime: lambda _c, v: ["py:datetime", v.isoformat()],
    date: lambda _c, v: ["py:date", v.isoformat()],
    time: lambda _c, v: ["py:time", v.isoformat()],
    Decimal: lambda _c, v: ["py:Decimal", str(v)],
    float: lambda _c, v: ["py:float", v.hex()],
    list: _array_form,
})


def _to_int(_c: _Codec, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise TypeError("not an integer")
    return int(v)


def _to_double(_c: _Codec, v: Any) -> float:
    if isinstance(v, str):
        return _SPECIAL_FLOATS[v] if v in _SPECIAL_FLOATS else float(v)
    return float(v)


def _to_decimal(_c: _Codec, v: Any) -> Decimal:
    if isinstance(v, float):
        raise TypeError("a BigDecimal read as a binary float loses digits")
    return Decimal(v) if isinstance(v, Decimal | int | str) else Decimal(str(v))


def _to_timestamp(c: _Codec, v: Any) -> datetime:
    if isinstance(v, list):
        millis, nanos = int(v[0]), int(v[1])
        return _from_epoch_ms(millis, c.zone).replace(microsecond=nanos // 1000)
    return _from_epoch_ms(int(v), c.zone)


def _to_date(c: _Codec, v: Any) -> date:
    if isinstance(v, str):
        return date.fromisoformat(v[:10])
    return _from_epoch_ms(int(v), c.zone).date()


def _to_time(c: _Codec, v: Any) -> time:
    if isinstance(v, str):
        return time.fromisoformat(v)
    return _from_epoch_ms(int(v), c.zone).time()


def _to_bytes(_c: _Codec, v: Any) -> bytes:
    return base64.b64decode(v, validate=True)


_DECODERS: Mapping[str, Callable[[_Codec, Any], Any]] = MappingProxyType({
    "java.lang.Integer": _to_int,
    "java.lang.Long": _to_int,
    "java.lang.Short": _to_int,
    "java.lang.Byte": _to_int,
    "java.math.BigInteger": _to_int,
    "java.lang.Double": _to_double,
    "java.lang.Float": lambda c, v: _float32(_to_double(c, v)),
    "java.math.BigDecimal": _to_decimal,
    "java.lang.Boolean": lambda _c, v: bool(v),
    "java.lang.String": lambda _c, v: str(v),
    "java.lang.Character": lambda _c, v: str(v),
    "[B": _to_bytes,
    "javax.sql.rowset.serial.SerialBlob": _to_bytes,
    "javax.sql.rowset.serial.SerialClob": lambda _c, v: str(v),
    "java.sql.Timestamp": _to_timestamp,
    "java.time.LocalDateTime": _to_timestamp,
    "java.util.Date": _to_timestamp,
    "java.sql.Date": _to_date,
    "java.sql.Time": _to_time,
    "java.util.UUID": lambda _c, v: uuid.UUID(str(v)),
    "py:Decimal": lambda _c, v: Decimal(str(v)),
    "py:float": lambda _c, v: float.fromhex(str(v)),
    "py:datetime": lambda _c, v: datetime.fromisoformat(str(v)),
    "py:date": lambda _c, v: date.fromisoformat(str(v)),
    "py:time": lambda _c, v: time.fromisoformat(str(v)),
    "py:timedelta": lambda _c, v: timedelta(days=int(v[0]), seconds=int(v[1]), microseconds=int(v[2])),
    "py:list": lambda c, v: [c.decode(item) for item in v],
    "py:ip_address": lambda _c, v: ipaddress.ip_address(str(v)),
    "py:ip_interface": lambda _c, v: ipaddress.ip_interface(str(v)),
    "py:ip_network": lambda _c, v: ipaddress.ip_network(str(v)),
})


def _decode_bean(form: dict[str, Any]) -> Any:
    if str(form.get("@class", "")) == _PG_OBJECT:
        text = form.get("value")
        if text is None:
            return None
        return json.loads(text) if str(form.get("type", "")).lower() in _JSON_TYPES else str(text)
    raise UndoLogFormatError(f"cannot read a value of Java class {form.get('@class')!r}")


def encode_value(value: Any, java_type: int = JavaType.OTHER, *, zone: tzinfo = UTC) -> tuple[Any, Any]:
    """A column value as it goes into rollback_info: ``(value form, pyValue form or None)``."""
    return _Codec(zone).exact_form(value, java_type)


def decode_value(form: Any, py_form: Any = None, *, zone: tzinfo = UTC) -> Any:
    """A column value back from rollback_info (``py_form`` wins when present)."""
    codec = _Codec(zone)
    return codec.decode(py_form if py_form is not None else form)


# --- JSON: Jackson's compact output, exact numbers ----------------------------------------------------


def _write(node: Any, out: list[str]) -> None:
    if node is None:
        out.append("null")
    elif node is True or node is False:
        out.append("true" if node else "false")
    elif isinstance(node, int):
        out.append(str(node))
    elif isinstance(node, float):
        out.append(repr(node))
    elif isinstance(node, Decimal):
        out.append(str(node))
    elif isinstance(node, str):
        out.append(json.dumps(node, ensure_ascii=False))
    elif isinstance(node, list):
        out.append("[")
        for i, item in enumerate(node):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(node, dict):
        out.append("{")
        for i, (key, item) in enumerate(node.items()):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    else:
        raise UndoValueError(f"cannot write {type(node).__name__} as JSON")


class _NotPlainJsonError(Exception):
    """A value the fast writer does not know: the slow writer's job (and its error)."""


_DECIMAL_MARK = "\x00pyseata:BigDecimal\x00"
_DECIMAL_TOKEN = json.dumps(_DECIMAL_MARK)


def _dumps(node: Any) -> bytes:
    """The JSON text of ``node``, as :func:`_write` writes it, mostly by the C encoder: each Decimal
    goes in as a marker string, replaced by its exact digits afterwards (a string value that equals
    the marker makes the counts differ, and the slow writer does the whole node)."""
    digits: list[str] = []

    def decimal(value: Any) -> Any:
        if type(value) is not Decimal:
            raise _NotPlainJsonError
        digits.append(str(value))
        return _DECIMAL_MARK

    try:
        text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False,
                                default=decimal).encode(node)
        if digits:
            parts = text.split(_DECIMAL_TOKEN)
            if len(parts) != len(digits) + 1:
                raise _NotPlainJsonError
            text = "".join(p + d for p, d in zip(parts, digits, strict=False)) + parts[-1]
    except (_NotPlainJsonError, ValueError):
        out: list[str] = []
        _write(node, out)
        text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UndoValueError(f"a string in the undo log is not valid Unicode: {exc}") from exc


_PACKAGE = "org.apache.seata.rm.datasource"
_CLASSES = MappingProxyType({
    "branch": f"{_PACKAGE}.undo.BranchUndoLog",
    "sql": f"{_PACKAGE}.undo.SQLUndoLog",
    "records": f"{_PACKAGE}.sql.struct.TableRecords",
    "empty": f"{_PACKAGE}.sql.struct.TableRecords$EmptyTableRecords",
    "row": f"{_PACKAGE}.sql.struct.Row",
    "field": f"{_PACKAGE}.sql.struct.Field",
})
_LIST = "java.util.ArrayList"


def _records_node(codec: _Codec, records: TableRecords | None) -> Any:
    if records is None:
        return None
    rows = []
    for row in records.rows:
        fields = []
        for f in row.fields:
            form, py = codec.exact_form(f.value, f.type)
            node = {"@class": _CLASSES["field"], "name": f.name, "keyType": f.key_type.value, "type": f.type,
                    "value": form}
            if py is not None:
                node["pyValue"] = py
            fields.append(node)
        rows.append({"@class": _CLASSES["row"], "fields": [_LIST, fields]})
    return {
        "@class": _CLASSES["records" if records.rows else "empty"],
        "tableName": records.table_name,
        "rows": [_LIST, rows],
        "pyPrimaryKey": [_LIST, list(records.primary_key)],  # Jackson skips properties it does not know
    }


def encode_undo_log(log: BranchUndoLog, *, zone: tzinfo = UTC) -> bytes:
    """``rollback_info`` for ``log`` in Seata's ``jackson`` form (naive date-times in ``zone``)."""
    codec = _Codec(zone)
    node = {
        "@class": _CLASSES["branch"],
        "xid": log.xid,
        "branchId": log.branch_id,
        "sqlUndoLogs": [_LIST, [
            {
                "@class": _CLASSES["sql"], "sqlType": item.sql_type.value, "tableName": item.table_name,
                "beforeImage": _records_node(codec, item.before_image),
                "afterImage": _records_node(codec, item.after_image),
            }
            for item in log.sql_undo_logs
        ]],
    }
    return _dumps(node)


def _items(node: Any, what: str) -> list[Any]:
    """A Jackson-typed list ``["java.util.ArrayList", [...]]`` (or a bare list)."""
    if isinstance(node, list) and len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], list):
        return node[1]
    if isinstance(node, list):
        return node
    raise UndoLogFormatError(f"{what} is not a list: {node!r}")


_KEY_TYPES: Mapping[str, KeyType] = MappingProxyType({
    "NULL": KeyType.NULL, "PRIMARY_KEY": KeyType.PRIMARY_KEY, "PrimaryKey": KeyType.PRIMARY_KEY,
})


def _decode_records(codec: _Codec, node: Any) -> TableRecords | None:
    if node is None:
        return None
    if not isinstance(node, dict):
        raise UndoLogFormatError(f"an image is not an object: {node!r}")
    rows = []
    for row in _items(node.get("rows", []), "rows"):
        fields = []
        for f in _items(row.get("fields", []), "fields"):
            key = _KEY_TYPES.get(str(f.get("keyType", "NULL")))
            if key is None:
                raise UndoLogFormatError(f"unknown keyType {f.get('keyType')!r}")
            fields.append(Field(str(f["name"]), int(f.get("type", 0)), codec.decode(
                f["pyValue"] if f.get("pyValue") is not None else f.get("value")), key))
        rows.append(Row(tuple(fields)))
    if "pyPrimaryKey" in node:
        pk = tuple(str(c) for c in _items(node["pyPrimaryKey"], "pyPrimaryKey"))
    else:  # written by Java: the key columns in column order (the caller may know the key's order)
        pk = tuple(f.name for f in rows[0].fields if f.key_type is KeyType.PRIMARY_KEY) if rows else ()
    return TableRecords(str(node.get("tableName", "")), pk, tuple(rows))


def decode_undo_log(data: bytes, *, zone: tzinfo = UTC) -> BranchUndoLog:
    """A :class:`BranchUndoLog` from ``rollback_info`` written by pyseata or by Seata's Java RM."""
    if data == _DEFAULT_CONTENT:
        return BranchUndoLog("", 0)
    try:
        root = json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndoLogFormatError(f"rollback_info is not JSON: {exc}") from exc
    except RecursionError:  # "[[[[..." deeper than the json module can follow
        raise UndoLogFormatError("rollback_info is JSON nested too deeply to read") from None
    if not isinstance(root, dict):
        raise UndoLogFormatError("rollback_info is not a JSON object")
    codec = _Codec(zone)
    try:
        items = tuple(
            SQLUndoLog(
                SqlType(str(item["sqlType"])), str(item.get("tableName", "")),
                _decode_records(codec, item.get("beforeImage")), _decode_records(codec, item.get("afterImage")),
            )
            for item in _items(root.get("sqlUndoLogs", []), "sqlUndoLogs")
        )
        return BranchUndoLog(str(root.get("xid", "")), int(root.get("branchId", 0)), items)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UndoLogFormatError(f"rollback_info has an unexpected shape: {exc!r}") from exc


# --- context, compression, configuration ------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)b?\s*$", re.IGNORECASE)
_UNITS = MappingProxyType({"": 1, "k": 1024, "m": 1024**2, "g": 1024**3})


@functools.lru_cache(maxsize=64)
def parse_size(size: int | str) -> int:
    """Bytes from ``64k``, ``1m``, ``4096`` (Seata's ``SizeUtil.size2Long``)."""
    if isinstance(size, int):
        return size
    m = _SIZE.match(size)
    if m is None:
        raise ValueError(f"not a size: {size!r} (use a number with an optional k, m or g)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _zone(name: str | None) -> tzinfo:
    if name is None:  # the machine's zone now (not cached: it may change)
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    return _named_zone(name)


@functools.lru_cache(maxsize=64)
def _named_zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"([+-])(\d{2}):(\d{2})", name)
    if m:
        offset = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return timezone(-offset if m.group(1) == "-" else offset)
    return ZoneInfo(name)


@dataclass(frozen=True)
class UndoConfig:
    """How undo logs are written and read (Seata's ``client.undo.*``)."""

    table: str = "undo_log"
    compress: bool = True
    compressor: CompressorType = CompressorType.ZIP
    threshold: int | str = "64k"  # compress payloads strictly larger than this
    zone: str = "UTC"  # zone naive date-times are written in; recorded in the context
    java_zone: str | None = None  # JVM zone of logs written by Java (None: this machine's zone)
    max_size: int | str = "256m"  # largest decompressed rollback_info accepted

    def __post_init__(self) -> None:
        parse_size(self.threshold)
        parse_size(self.max_size)
        _zone(self.zone)


def encode_context(values: Mapping[str, str]) -> str:
    """Seata's ``CollectionUtils.encodeMap``: ``k=v&k=v``."""
    return "&".join(f"{k}={v}" for k, v in values.items())


def decode_context(text: str | None) -> dict[str, str]:
    """Seata's ``CollectionUtils.decodeMap``: pairs without exactly one ``=`` are skipped."""
    out: dict[str, str] = {}
    for pair in (text or "").split("&"):
        parts = pair.split("=")
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def pack(log: BranchUndoLog, config: UndoConfig = UndoConfig()) -> tuple[str, bytes]:
    """``(context, rollback_info)`` for an undo_log row."""
    payload = encode_undo_log(log, zone=_zone(config.zone))
    kind = CompressorType.NONE
    if config.compress and len(payload) > parse_size(config.threshold):
        kind = config.compressor
        payload = compress(kind, payload)
    context = {"serializer": SERIALIZER, "compressorType": kind.name, "timeZone": config.zone}
    return encode_context(context), payload


def unpack(context: str | None, rollback_info: bytes, config: UndoConfig = UndoConfig()) -> BranchUndoLog:
    """The :class:`BranchUndoLog` of an undo_log row (written by pyseata or by Java)."""
    values = decode_context(context)
    serializer = values.get("serializer", SERIALIZER)
    if serializer != SERIALIZER:
        raise UndoLogFormatError(f"undo log serializer {serializer!r} is not supported (only {SERIALIZER!r})")
    try:
        kind = CompressorType[values.get("compressorType", "NONE")]
    except KeyError:
        raise UndoLogFormatError(f"unknown compressorType {values.get('compressorType')!r}") from None
    payload = bytes(rollback_info)
    if kind is not CompressorType.NONE:
        try:
            payload = decompress(kind, payload, max_size=parse_size(config.max_size))
        except Exception as exc:
            raise UndoLogFormatError(f"rollback_info does not decompress as {kind.name}: {exc}") from exc
    zone = _zone(values["timeZone"]) if "timeZone" in values else _zone(config.java_zone)
    return decode_undo_log(payload, zone=zone)


# --- the table --------------------------------------------------------------------------------------

ROW_COLUMNS = ("branch_id", "xid", "context", "rollback_info", "log_status")  # what select_sql returns
_COLUMNS = ("branch_id", "xid", "context", "rollback_info", "log_status", "log_created", "log_modified")

_DDL: Mapping[str, Callable[[Dialect, str, str], tuple[str, ...]]] = MappingProxyType({
    "mysql": lambda d, t, n: (
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        "    `branch_id`     BIGINT       NOT NULL COMMENT 'branch transaction id',\n"
        "    `xid`           VARCHAR(128) NOT NULL COMMENT 'global transaction id',\n"
        "    `context`       VARCHAR(128) NOT NULL COMMENT 'undo_log context,such as serialization',\n"
        "    `rollback_info` LONGBLOB     NOT NULL COMMENT 'rollback info',\n"
        "    `log_status`    INT(11)      NOT NULL COMMENT '0:normal status,1:defense status',\n"
        "    `log_created`   DATETIME(6)  NOT NULL COMMENT 'create datetime',\n"
        "    `log_modified`  DATETIME(6)  NOT NULL COMMENT 'modify datetime',\n"
        f"    UNIQUE KEY {d.quote('ux_' + n)} (`xid`, `branch_id`),\n"
        f"    KEY {d.quote('ix_' + n + '_log_created' if n != 'undo_log' else 'ix_log_created')} (`log_created`)\n"
        ") ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COMMENT = 'AT transaction mode undo table'",
    ),
    "postgres": lambda d, t, n: (
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        "    id            SERIAL       NOT NULL,\n"
        "    branch_id     BIGINT       NOT NULL,\n"
        "    xid           VARCHAR(128) NOT NULL,\n"
        "    context       VARCHAR(128) NOT NULL,\n"
        "    rollback_info BYTEA        NOT NULL,\n"
        "    log_status    INT          NOT NULL,\n"
        "    log_created   TIMESTAMP(0) NOT NULL,\n"
        "    log_modified  TIMESTAMP(0) NOT NULL,\n"
        f"    CONSTRAINT {d.quote('pk_' + n)} PRIMARY KEY (id),\n"
        f"    CONSTRAINT {d.quote('ux_' + n)} UNIQUE (xid, branch_id)\n"
        ")",
        f"CREATE INDEX IF NOT EXISTS {d.quote('ix_' + n + '_log_created' if n != 'undo_log' else 'ix_log_created')} "
        f"ON {t} (log_created)",
    ),
    "sqlite": lambda d, t, n: (
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        "    id            INTEGER      NOT NULL PRIMARY KEY,\n"
        "    branch_id     BIGINT       NOT NULL,\n"
        "    xid           VARCHAR(128) NOT NULL,\n"
        "    context       VARCHAR(128) NOT NULL,\n"
        "    rollback_info BLOB         NOT NULL,\n"
        "    log_status    INT          NOT NULL,\n"
        "    log_created   TIMESTAMP    NOT NULL,\n"
        "    log_modified  TIMESTAMP    NOT NULL,\n"
        f"    CONSTRAINT {d.quote('ux_' + n)} UNIQUE (xid, branch_id)\n"
        ")",
        f"CREATE INDEX IF NOT EXISTS {d.quote('ix_' + n + '_log_created' if n != 'undo_log' else 'ix_log_created')} "
        f"ON {t} (log_created)",
    ),
})
_NOW: Mapping[str, str] = MappingProxyType({
    "mysql": "NOW(6)", "postgres": "now()", "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')",
})


@dataclass(frozen=True)
class UndoLogTable:
    """The SQL of one resource's undo_log table. Placeholders follow ``style`` (the driver's)."""

    dialect: Dialect = field(repr=False)
    name: str = "undo_log"
    schema: str | None = None
    style: Paramstyle = Paramstyle.FORMAT

    @classmethod
    def of(cls, dialect: Dialect | str, name: str = "undo_log", schema: str | None = None,
           style: Paramstyle | str = Paramstyle.FORMAT) -> UndoLogTable:
        return cls(get_dialect(dialect), name, schema, Paramstyle(style))

    @property
    def _family(self) -> str:
        return "mysql" if self.dialect.sqlglot == "mysql" else self.dialect.name

    @property
    def qualified(self) -> str:
        return self.dialect.qualified(self.schema, self.name)

    def ddl(self) -> tuple[str, ...]:
        """CREATE TABLE (and CREATE INDEX) statements, Seata's script for the dialect."""
        return _DDL[self._family](self.dialect, self.qualified, self.name)

    def insert_sql(self) -> str:
        """INSERT of one row: parameters branch_id, xid, context, rollback_info, log_status."""
        return _insert_sql(self)

    def _insert_sql(self) -> str:
        now = _NOW[self._family]
        cols = ", ".join(_COLUMNS)
        return self._fill(f"INSERT INTO {self.qualified} ({cols}) VALUES ({{}}, {{}}, {{}}, {{}}, {{}}, {now}, {now})")

    def select_sql(self) -> str:
        """The row of a branch, locked: parameters branch_id, xid; columns as :data:`ROW_COLUMNS`."""
        cols = "branch_id, xid, context, rollback_info, log_status"
        lock = self.dialect.for_update
        return self._fill(f"SELECT {cols} FROM {self.qualified} WHERE branch_id = {{}} AND xid = {{}}{lock}")

    def delete_sql(self) -> str:
        """DELETE of a branch's row(s): parameters branch_id, xid."""
        return self._fill(f"DELETE FROM {self.qualified} WHERE branch_id = {{}} AND xid = {{}}")

    def delete_many_sql(self, branches: int, xids: int) -> str:
        """Phase-2 commit cleanup: parameters the branch ids, then the xids."""
        b = ", ".join(["{}"] * branches)
        x = ", ".join(["{}"] * xids)
        return self._fill(f"DELETE FROM {self.qualified} WHERE branch_id IN ({b}) AND xid IN ({x})")

    def _fill(self, template: str) -> str:
        # Only the SQLite clock format holds a literal "%"; escape it for a "%"-style driver.
        escaped = template.replace("%", "%%") if self.style.percent else template
        return fill(escaped, self.style)

    @staticmethod
    def row_params(xid: str, branch_id: int, context: str, rollback_info: bytes,
                   status: UndoLogStatus = UndoLogStatus.NORMAL) -> list[Any]:
        """The parameters of :meth:`insert_sql`, in order."""
        return [branch_id, xid, context, rollback_info, int(status)]

    @staticmethod
    def defense_params(xid: str, branch_id: int) -> list[Any]:
        """The parameters of :meth:`insert_sql` for the anti-suspension row (log_status 1, ``{}``)."""
        context = encode_context({"serializer": SERIALIZER, "compressorType": CompressorType.NONE.name})
        return [branch_id, xid, context, _DEFAULT_CONTENT, int(UndoLogStatus.GLOBAL_FINISHED)]


@functools.lru_cache(maxsize=256)
def _insert_sql(table: UndoLogTable) -> str:
    return table._insert_sql()
