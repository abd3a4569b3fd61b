"""Global lock keys from images: Seata's ``table:pk1,pk2;table2:pk3``.

A branch registers with the lock key of every row it changed (the after image, or the before
image of a DELETE). Composite primary keys are joined with ``_`` in primary-key order
(``t_order:1001_A``), as ``BaseTransactionalExecutor.buildLockKey`` writes them. A key value is
written as Java's ``String.valueOf`` writes the value a JDBC driver returns, so a Python RM and a
Java RM name the same row the same way (int ``7`` -> ``7``, Decimal -> ``BigDecimal.toString``,
datetime -> ``Timestamp.toString``...). Bytes, which Java would print as an object address, are
written in hex.

The TC splits a lock key on ``;``, ``:`` and ``,``, so a value containing ``,`` or ``;`` would name
other rows than the one locked: it is refused with :class:`~pyseata.at.errors.LockKeyError`
(Seata refuses ``,``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from pyseata.at.errors import LockKeyError
from pyseata.at.images import TableRecords

__all__ = ["build_lock_key", "key_text", "row_keys"]

_FORBIDDEN = (",", ";")


def _java_double(value: float) -> str:
    """``Double.toString``: the shortest digits (as ``repr``), plain from 1e-3 to 1e7, else ``d.dE±n``."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    adjusted = len(digits) - 1 + int(exponent)
    minus = "-" if sign else ""
    if -3 <= adjusted < 7:
        plain = f"{abs(Decimal(repr(value))):f}"
        return minus + (plain if "." in plain else plain + ".0")
    return f"{minus}{text[0]}.{text[1:] or '0'}E{adjusted}"


def _timestamp(value: datetime) -> str:
    """``java.sql.Timestamp.toString``: ``yyyy-mm-dd hh:mm:ss.f``, fraction without trailing zeros."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    fraction = f"{value.microsecond:06d}".rstrip("0") or "0"
    return f"{value:%Y-%m-%d %H:%M:%S}.{fraction}"


def _time(value: time | timedelta) -> str:
    """``java.sql.Time.toString``: ``hh:mm:ss`` (a MySQL TIME arrives as a timedelta from PyMySQL)."""
    if isinstance(value, timedelta):
        total = int(value.total_seconds())
        sign, total = ("-", -total) if total < 0 else ("", total)
        return f"{sign}{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
    return f"{value:%H:%M:%S}"


_TEXT: Mapping[type, Callable[[Any], str]] = MappingProxyType({
    str: str,
    int: str,
    bool: lambda v: "true" if v else "false",
    Decimal: str,  # Python's and Java's BigDecimal.toString follow the same scientific-notation rule
    float: _java_double,
    datetime: _timestamp,
    date: date.isoformat,
    time: _time,
    timedelta: _time,
    uuid.UUID: str,
    bytes: bytes.hex,
})


def key_text(value: Any) -> str:
    """One primary-key value as it appears in a lock key."""
    to_text = _TEXT.get(type(value))
    if to_text is None:
        raise LockKeyError(f"a primary key value of type {type(value).__name__} cannot be named in a lock key")
    text = to_text(value)
    for char in _FORBIDDEN:
        if char in text:
            raise LockKeyError(f"primary key value {text!r} contains {char!r}, which lock keys use as a separator")
    return text


def row_keys(records: TableRecords) -> list[str]:
    """Each row's key text: composite keys joined by ``_`` in primary-key order."""
    return ["_".join(key_text(v) for v in key) for key in records.primary_keys()]


def build_lock_key(images: Iterable[TableRecords]) -> str:
    """The lock key of all rows in ``images``: ``table:pk1,pk2;table2:pk3``.

    Rows of the same table are merged (first-seen order, repeats dropped); empty images add
    nothing, so a branch that changed no row gets ``""``.
    """
    tables: dict[str, dict[str, None]] = {}
    for records in images:
        if not records.rows:
            continue
        name = records.table_name
        if any(c in name for c in (":", *_FORBIDDEN)):
            raise LockKeyError(f"table name {name!r} contains a lock key separator")
        keys = tables.setdefault(name, {})
        for key in row_keys(records):
            keys.setdefault(key, None)
    return ";".join(f"{name}:{','.join(keys)}" for name, keys in tables.items())
