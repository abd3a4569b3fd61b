"""Before and after images: the queries that read them, the records that hold them, and their diff.

The queries (all I/O-free, built from a recognised :class:`~pyseata.at.recognizer.Statement` and
the table's :class:`~pyseata.at.meta.TableMeta`):

- :func:`before_image`: UPDATE/DELETE select every column of the rows the statement's own WHERE
  (ORDER BY, LIMIT) selects, ``FOR UPDATE``; SELECT ... FOR UPDATE selects its rows' primary
  keys; an upsert selects the rows its new values may conflict with (:func:`conflict_probe`).
- :func:`inserted_rows`: an INSERT whose rows give every key value selects them back by those
  values (the fragments of its VALUES, parameters and all).
- :func:`select_by_keys`: any rows by primary-key values (the after image of an UPDATE, rows whose
  keys the database generated), in chunks, with parameters ready for the driver.
- :func:`with_returning`: the statement with its primary key returned first, where RETURNING exists.
- :func:`check`: the refusals that need metadata (updating a primary key, LIMIT without an ORDER BY
  on the key, rows whose keys nothing can report).

:class:`TableRecords` holds an image as Seata's ``TableRecords`` does (rows of fields
``{name, keyType, type, value}``) plus the primary key in key order. :func:`diff_records` compares
two images exactly, per type, and names every row and column that differs: what the dirty-write
check prints before a rollback gives up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from pyseata.at.dialects import Paramstyle
from pyseata.at.errors import SQLNotSupportedError, TableMetaError
from pyseata.at.meta import TableMeta
from pyseata.at.recognizer import Fragment, InsertValue, Kind, Statement, ValueKind

__all__ = [
    "MISSING",
    "BatchQuery",
    "ColumnDiff",
    "Field",
    "KeySource",
    "KeyType",
    "Query",
    "Row",
    "RowDiff",
    "TableRecords",
    "batch_before_image",
    "batchable",
    "before_image",
    "check",
    "conflict_probe",
    "diff_records",
    "format_diff",
    "insert_keys",
    "inserted_rows",
    "same_value",
    "select_by_keys",
    "with_returning",
]

KEYS_PER_QUERY = 1000  # rows per primary-key lookup (Seata's limit for Oracle's IN lists)


# --- records ----------------------------------------------------------------------------------------


class KeyType(StrEnum):
    """Seata's ``KeyType``: whether a field is part of the primary key."""

    NULL = "NULL"
    PRIMARY_KEY = "PRIMARY_KEY"


@dataclass(frozen=True, slots=True)
class Field:
    """One column value of a row: Seata's ``Field`` (``type`` is the java.sql.Types code)."""

    name: str
    type: int
    value: Any
    key_type: KeyType = KeyType.NULL


@dataclass(frozen=True, slots=True)
class Row:
    """One row of an image: its fields in column order."""

    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def __getitem__(self, name: str) -> Any:
        return self.field(name).value

    def key(self, primary_key: Sequence[str]) -> tuple[Any, ...]:
        return tuple(self[name] for name in primary_key)


def _captured(value: Any) -> Any:
    """A driver's value as an image keeps it: bytes-like values become bytes, the rest stays."""
    return bytes(value) if isinstance(value, bytearray | memoryview) else value


@dataclass(frozen=True)
class TableRecords:
    """An image of one table: Seata's ``TableRecords``, plus its primary key in key order."""

    table_name: str
    primary_key: tuple[str, ...]
    rows: tuple[Row, ...] = ()

    @classmethod
    def empty(cls, meta: TableMeta) -> TableRecords:
        return cls(meta.lock_name, meta.primary_key)

    @classmethod
    def from_rows(cls, meta: TableMeta, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> TableRecords:
        """An image from a query's result: ``columns`` are its column names (``cursor.description``)."""
        resolved = []
        for name in columns:
            column = meta.find_column(name, quoted=True) or meta.find_column(name)
            if column is None:
                raise TableMetaError(meta.display_name, f"has no column {name!r} (the image query returned it)")
            key = KeyType.PRIMARY_KEY if column.name in meta.primary_key else KeyType.NULL
            resolved.append((column.name, int(column.java_type), key))
        missing = set(meta.primary_key) - {name for name, _t, _k in resolved}
        if missing:
            raise TableMetaError(meta.display_name, f"the image lacks primary key column(s) {sorted(missing)}")
        built = tuple(
            Row(tuple(Field(name, jtype, _captured(value), key) for (name, jtype, key), value in zip(
                resolved, row, strict=True)))
            for row in rows
        )
        return cls(meta.lock_name, meta.primary_key, built)

    @classmethod
    def from_cursor(cls, meta: TableMeta, cursor: Any) -> TableRecords:
        """An image from an executed DB-API cursor (reads all its rows)."""
        return cls.from_rows(meta, [d[0] for d in cursor.description], cursor.fetchall())

    def __len__(self) -> int:
        return len(self.rows)

    def primary_keys(self) -> list[tuple[Any, ...]]:
        """Each row's primary-key values, in key order."""
        pk = self.primary_key
        return [row.key(pk) for row in self.rows]


# --- exact comparison -------------------------------------------------------------------------------


def _same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _same_decimal(a: Decimal, b: Decimal) -> bool:
    return a.as_tuple() == b.as_tuple()  # digits, exponent and sign: 1.0 is not 1.00


def _same_datetime(a: datetime, b: datetime) -> bool:
    # An aware value is an instant: the database stores no offset (PostgreSQL timestamptz), and the
    # offset a driver attaches is the reading session's time zone, which may differ between processes.
    # (Compared through UTC: Python's own == says False for any time in a DST gap or fold, PEP 495.)
    if (a.tzinfo is None) != (b.tzinfo is None):
        return False
    if a.tzinfo is None:
        return a == b
    return _utc(a) == _utc(b)


def _utc(value: datetime) -> datetime:
    offset = value.utcoffset()
    assert offset is not None
    return value.replace(tzinfo=None) - offset


def _same_time(a: time, b: time) -> bool:
    return a == b and a.utcoffset() == b.utcoffset()  # a timetz keeps its offset


def _same_dict(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


def _same_sequence(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))


_SAME: Mapping[type, Callable[[Any, Any], bool]] = MappingProxyType({
    float: _same_float,
    Decimal: _same_decimal,
    datetime: _same_datetime,
    time: _same_time,
    dict: _same_dict,
    list: _same_sequence,
    tuple: _same_sequence,
})


def same_value(a: Any, b: Any) -> bool:
    """Whether two column values are the same, exactly: same type, same value (NaN equals NaN,
    0.0 is not -0.0, 1.0 is not 1.00, True is not 1, an aware datetime is compared as an instant).
    """
    if type(a) is not type(b):
        return False
    same = _SAME.get(type(a))
    return same(a, b) if same is not None else bool(a == b)


MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()


@dataclass(frozen=True, slots=True)
class ColumnDiff:
    column: str
    expected: Any
    actual: Any


@dataclass(frozen=True, slots=True)
class RowDiff:
    """How one row differs. ``change``: "missing" (expected, now absent), "extra" (present, not
    expected) or "changed" (``columns`` lists each column that differs)."""

    table: str
    key: tuple[Any, ...]
    primary_key: tuple[str, ...]
    change: str
    columns: tuple[ColumnDiff, ...] = ()

    def describe(self, expected: str = "expected", actual: str = "now") -> str:
        row = f"{self.table}({', '.join(f'{n}={v!r}' for n, v in zip(self.primary_key, self.key, strict=True))})"
        if self.change == "missing":
            return f"row {row}: in the {expected}, but no longer there"
        if self.change == "extra":
            return f"row {row}: there {actual}, but not in the {expected}"
        cols = "; ".join(f"{c.column}: {expected} {c.expected!r}, {actual} {c.actual!r}" for c in self.columns)
        return f"row {row}: {cols}"


def _row_key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A dict key that tells apart values ``==`` would merge (1 and 1.0, Decimal 1.0 and 1.00)."""
    return tuple((type(v).__name__, repr(v)) for v in values)


def diff_records(expected: TableRecords, actual: TableRecords) -> tuple[RowDiff, ...]:
    """Every difference between two images of the same table, row by row and column by column.

    Rows are matched by primary key. Empty when the images are the same (see :func:`same_value`).
    """
    pk = expected.primary_key
    now = {_row_key(row.key(pk)): row for row in actual.rows}
    diffs: list[RowDiff] = []
    for row in expected.rows:
        key = row.key(pk)
        other = now.pop(_row_key(key), None)
        if other is None:
            diffs.append(RowDiff(expected.table_name, key, pk, "missing"))
            continue
        fields = {f.name: f for f in other.fields}
        changed = tuple(
            ColumnDiff(f.name, f.value, fields[f.name].value if f.name in fields else MISSING)
            for f in row.fields
            if f.name not in fields or not same_value(f.value, fields[f.name].value)
        )
        if changed:
            diffs.append(RowDiff(expected.table_name, key, pk, "changed", changed))
    diffs.extend(RowDiff(expected.table_name, row.key(pk), pk, "extra") for row in now.values())
    return tuple(diffs)


def format_diff(diffs: Sequence[RowDiff], expected: str = "after image", actual: str = "now") -> str:
    """One line per differing row, as the dirty-write report prints them."""
    return "\n".join(d.describe(expected, actual) for d in diffs)


# --- queries ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """SQL to run, and which of the statement's parameters it takes (``refs``, in order)."""

    sql: str
    style: Paramstyle | None
    refs: tuple[int | str, ...] = ()

    def bind(self, params: Sequence[Any] | Mapping[str, Any] | None) -> list[Any] | dict[str, Any] | None:
        """The parameters for this query, taken from the statement's ``params``.

        None when the statement ran without parameters. Otherwise a list or a dict, possibly
        empty: a ``%`` style driver must still be given it, so that ``%%`` reads as ``%``.
        """
        if self.style is None:
            return None
        if params is None:
            raise ValueError("this query takes the statement's parameters, but none were given")
        if self.style.named:
            if not isinstance(params, Mapping):
                raise TypeError(f"{self.style.value} parameters must be a mapping")
            return {str(ref): params[str(ref)] for ref in self.refs}
        if isinstance(params, Mapping):
            raise TypeError(f"{self.style.value} parameters must be a sequence")
        return [params[int(ref)] for ref in self.refs]


class KeySource(StrEnum):
    """Where an INSERT's primary-key values come from."""

    VALUES = "values"  # every row gives them: select the rows back by those values
    AUTO_INCREMENT = "auto_increment"  # the database numbers them: cursor.lastrowid, or RETURNING
    RETURNING = "returning"  # defaults or expressions make them: only RETURNING can report them


class _Builder:
    """Assembles a :class:`Query` from literal text and statement fragments."""

    def __init__(self, style: Paramstyle | None) -> None:
        self.style = style
        self.parts: list[str] = []
        self.refs: list[int | str] = []
        self.numbers: dict[int | str, int] = {}

    def raw(self, text: str) -> _Builder:
        self.parts.append(text.replace("%", "%%") if self.style is not None and self.style.percent else text)
        return self

    def fragment(self, fragment: Fragment) -> _Builder:
        pos = 0
        style = self.style
        for p in fragment.placeholders:
            self.parts.append(fragment.sql[pos : p.start - fragment.start])
            pos = p.end - fragment.start
            if style is not None and style.renumbered:
                if p.key not in self.numbers:
                    self.numbers[p.key] = len(self.refs)
                    self.refs.append(p.key)
                self.parts.append(style.render(self.numbers[p.key]))
                continue
            self.parts.append(p.text)
            if not (style is not None and style.named and p.key in self.refs):
                self.refs.append(p.key)
        self.parts.append(fragment.sql[pos:])
        return self

    def build(self) -> Query:
        return Query("".join(self.parts), self.style, tuple(self.refs))


def _columns_sql(meta: TableMeta, names: Sequence[str] | None = None) -> str:
    return ", ".join(meta.dialect.quote(c) for c in (meta.column_names if names is None else names))


def _refuse(stmt: Statement, reason: str) -> SQLNotSupportedError:
    return SQLNotSupportedError(stmt.sql, reason)


def check(stmt: Statement, meta: TableMeta) -> None:
    """Refusals that need the table's metadata: primary-key updates, unsafe LIMIT, unknown keys."""
    assignments = list(stmt.assignments)
    if stmt.conflict is not None:
        assignments += stmt.conflict.assignments
    for assignment in assignments:
        for name in assignment.columns:
            column = meta.find_column(*name)
            if column is not None and column.name in meta.primary_key:
                raise _refuse(stmt, f"it updates primary key column {column.name!r}; AT mode names rows by primary key")
            if column is not None and column.identity_always:
                raise _refuse(stmt, f"it sets identity column {column.name!r} (GENERATED ALWAYS): the new number "
                                    "could never be undone, since no UPDATE can set the old one back")
    if stmt.limit is not None and not _orders_by_key(stmt, meta):
        raise _refuse(stmt, "LIMIT without an ORDER BY naming every primary-key column may change other rows "
                            "than the before image selected")
    if stmt.kind in (Kind.INSERT, Kind.UPSERT):
        insert_keys(stmt, meta)
    if stmt.kind is Kind.UPSERT:
        conflict_probe(stmt, meta)


def _orders_by_key(stmt: Statement, meta: TableMeta) -> bool:
    if stmt.order_columns is None:
        return False
    named = {c.name for n in stmt.order_columns if (c := meta.find_column(*n)) is not None}
    return set(meta.primary_key) <= named


def before_image(stmt: Statement, meta: TableMeta) -> Query | None:
    """The query whose rows are the before image (None for INSERT, whose before image is empty).

    UPDATE and DELETE: every column of the rows the statement's WHERE (ORDER BY, LIMIT) selects,
    locked. SELECT ... FOR UPDATE: the primary keys of the rows it locks. Upserts: the rows the
    new values may conflict with (:func:`conflict_probe`).
    """
    check(stmt, meta)
    d = stmt.dialect
    if stmt.kind in (Kind.UPDATE, Kind.DELETE):
        assert stmt.table is not None
        b = _Builder(stmt.style).raw(f"SELECT {_columns_sql(meta)} FROM {stmt.table.sql(d)}")
        for keyword, fragment in ((" WHERE ", stmt.where), (" ORDER BY ", stmt.order_by), (" LIMIT ", stmt.limit)):
            if fragment is not None:
                b.raw(keyword).fragment(fragment)
        return b.raw(d.for_update).build()
    if stmt.kind is Kind.SELECT_FOR_UPDATE:
        assert stmt.select_from is not None
        return _Builder(stmt.style).raw(f"SELECT {_columns_sql(meta, meta.primary_key)} ").fragment(
            stmt.select_from).build()
    if stmt.kind is Kind.UPSERT:
        return conflict_probe(stmt, meta)
    if stmt.kind is Kind.INSERT:
        return None
    raise ValueError(f"{stmt.kind} statements have no images")


def batchable(stmt: Statement) -> bool:
    """Whether one before image can serve every parameter set of an ``executemany``: an UPDATE or
    DELETE whose WHERE reads only the row itself (no subquery, which could see rows an earlier set
    changed) and which has no ORDER BY / LIMIT. A row an earlier set did not change still matches
    a later set's WHERE exactly when it did at the start, so the union of every set's matches,
    read before any set runs, holds every row the batch changes."""
    if stmt.kind not in (Kind.UPDATE, Kind.DELETE) or stmt.order_by is not None or stmt.limit is not None:
        return False
    return stmt.where is None or _SELECT.search(stmt.where.sql) is None


_SELECT = re.compile(r"\bSELECT\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BatchQuery:
    """The before image of ``sets`` parameter sets of a :func:`batchable` statement: its WHERE once
    per set, joined by OR, in the driver's positional ``style``; ``refs`` are the parameters each
    set gives, in order."""

    sql: str
    refs: tuple[int | str, ...]

    def bind(self, sets: Sequence[Sequence[Any] | Mapping[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for params in sets:
            if isinstance(params, Mapping):
                out.extend(params[str(ref)] for ref in self.refs)
            else:
                out.extend(params[int(ref)] for ref in self.refs)
        return out


def batch_before_image(stmt: Statement, meta: TableMeta, style: Paramstyle, sets: int) -> BatchQuery:
    """The locked query for the rows any of ``sets`` parameter sets would change (see :func:`batchable`)."""
    check(stmt, meta)
    assert stmt.table is not None and batchable(stmt)
    d = stmt.dialect
    percent = style.percent

    def raw(text: str) -> str:
        return text.replace("%", "%%") if percent else text

    parts = [raw(f"SELECT {_columns_sql(meta)} FROM {stmt.table.sql(d)}")]
    where = stmt.where
    refs: list[int | str] = [p.key for p in where.placeholders] if where is not None else []
    if where is not None:
        parts.append(" WHERE ")
        marks = 0
        for i in range(sets):
            parts.append(" OR (" if i else "(")
            pos = 0
            for p in where.placeholders:
                parts.append(where.sql[pos : p.start - where.start])
                parts.append(style.render(marks))
                marks += 1
                pos = p.end - where.start
            parts.append(where.sql[pos:])
            parts.append(")")
    parts.append(raw(d.for_update))
    return BatchQuery("".join(parts), tuple(refs))


def _row_columns(stmt: Statement, meta: TableMeta, width: int) -> tuple[str, ...]:
    """The table columns a VALUES row of ``width`` values fills, in order."""
    if stmt.columns is None:
        if width > len(meta.columns):
            raise _refuse(stmt, f"a row has {width} values but {meta.display_name} has {len(meta.columns)} columns")
        return meta.column_names[:width]
    names = []
    for name in stmt.columns:
        column = meta.find_column(*name)
        if column is None:
            raise _refuse(stmt, f"{meta.display_name} has no column {name.text!r}")
        names.append(column.name)
    if len(names) != width:
        raise _refuse(stmt, f"a row has {width} values for {len(names)} columns")
    return tuple(names)


def _row_values(stmt: Statement, meta: TableMeta) -> list[dict[str, InsertValue]]:
    return [dict(zip(_row_columns(stmt, meta, len(row)), row, strict=True)) for row in stmt.rows]


_GIVEN = frozenset({ValueKind.PARAM, ValueKind.LITERAL})


def insert_keys(stmt: Statement, meta: TableMeta) -> KeySource:
    """Where the primary keys of the rows an INSERT adds come from; refuses when nothing can tell."""
    sources: set[KeySource] = set()
    for row in _row_values(stmt, meta):
        for pk in meta.primary_key:
            value, column = row.get(pk), meta.column(pk)
            if value is not None and value.kind in _GIVEN:
                sources.add(KeySource.VALUES)
            elif value is not None and value.kind is ValueKind.EXPRESSION:
                sources.add(KeySource.RETURNING)
            elif column.auto_increment:
                sources.add(KeySource.AUTO_INCREMENT)
            elif column.default is not None and (value is None or value.kind is ValueKind.DEFAULT):
                sources.add(KeySource.RETURNING)
            else:
                raise _refuse(stmt, f"primary key column {pk!r} gets no value")
    # A mix of sources: only RETURNING tells which row got which key.
    source = sources.pop() if len(sources) == 1 else KeySource.RETURNING
    if source is KeySource.RETURNING and not stmt.dialect.insert_returning:
        raise _refuse(stmt, f"{stmt.dialect.name} cannot report primary keys made by defaults or expressions "
                            "(or a mix of given and generated keys); give the key values")
    return source


def inserted_rows(stmt: Statement, meta: TableMeta) -> Query | None:
    """For an INSERT whose rows give every key value: the query for the inserted rows (else None)."""
    if stmt.kind is not Kind.INSERT or insert_keys(stmt, meta) is not KeySource.VALUES:
        return None
    d = meta.dialect
    b = _Builder(stmt.style).raw(f"SELECT {_columns_sql(meta)} FROM {meta.qualified} WHERE ")
    composite = len(meta.primary_key) > 1
    b.raw(f"({_columns_sql(meta, meta.primary_key)}) IN (" if composite else f"{d.quote(meta.primary_key[0])} IN (")
    for i, row in enumerate(_row_values(stmt, meta)):
        b.raw(", " if i else "").raw("(" if composite else "")
        for j, pk in enumerate(meta.primary_key):
            b.raw(", " if j else "").fragment(row[pk].fragment)
        b.raw(")" if composite else "")
    return b.raw(")").build()


def select_by_keys(
    meta: TableMeta, keys: Sequence[Sequence[Any]], style: Paramstyle | str, *, for_update: bool = False
) -> list[tuple[str, list[Any] | dict[str, Any]]]:
    """Queries (with their parameters) for the rows whose primary keys are ``keys``, in chunks.

    ``keys`` are tuples in primary-key order; ``style`` is the driver's paramstyle.
    """
    st = Paramstyle(style)
    d = meta.dialect
    head = f"SELECT {_columns_sql(meta)} FROM {meta.qualified} WHERE "
    composite = len(meta.primary_key) > 1
    target = f"({_columns_sql(meta, meta.primary_key)})" if composite else d.quote(meta.primary_key[0])
    if st.percent:
        head, target = head.replace("%", "%%"), target.replace("%", "%%")
    out: list[tuple[str, list[Any] | dict[str, Any]]] = []
    for begin in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[begin : begin + KEYS_PER_QUERY]
        flat = [v for key in chunk for v in key]
        marks = [st.render(f"k{i}" if st.named else i) for i in range(len(flat))]
        width = len(meta.primary_key)
        groups = [marks[i : i + width] for i in range(0, len(marks), width)]
        items = ", ".join(f"({', '.join(g)})" if composite else g[0] for g in groups)
        sql = f"{head}{target} IN ({items}){d.for_update if for_update else ''}"
        params: list[Any] | dict[str, Any] = {f"k{i}": v for i, v in enumerate(flat)} if st.named else flat
        out.append((sql, params))
    return out


def conflict_probe(stmt: Statement, meta: TableMeta) -> Query | None:
    """For an upsert: the locked query for existing rows its new rows may conflict with.

    Each row is matched on every unique key it can conflict on (the ON CONFLICT target, or the
    primary key and each unique key). A key whose value is NULL, or the database's next number,
    cannot conflict and is skipped; one whose value is an expression or a default is refused.
    None when no row can conflict.
    """
    if stmt.kind is not Kind.UPSERT or stmt.conflict is None:
        return None
    d = meta.dialect
    conditions: list[list[tuple[str, Fragment]]] = []
    for row in _row_values(stmt, meta):
        for key in _conflict_keys(stmt, meta):
            condition = _key_condition(stmt, meta, row, key)
            if condition is not None:
                conditions.append(condition)
    if not conditions:
        return None
    b = _Builder(stmt.style).raw(f"SELECT {_columns_sql(meta)} FROM {meta.qualified} WHERE ")
    for i, condition in enumerate(conditions):
        b.raw(" OR " if i else "").raw("(")
        for j, (column, fragment) in enumerate(condition):
            b.raw(" AND " if j else "").raw(f"{d.quote(column)} = ").fragment(fragment)
        b.raw(")")
    return b.raw(d.for_update).build()


def _conflict_keys(stmt: Statement, meta: TableMeta) -> tuple[tuple[str, ...], ...]:
    conflict = stmt.conflict
    assert conflict is not None
    keys = meta.unique_column_sets()
    if conflict.target:
        wanted = set()
        for name in conflict.target:
            column = meta.find_column(*name)
            if column is None:
                raise _refuse(stmt, f"{meta.display_name} has no column {name.text!r}")
            wanted.add(column.name)
        match = [k for k in keys if set(k) == wanted]
        if not match:
            raise _refuse(stmt, "the ON CONFLICT target matches no unique key of the table "
                                "(partial and expression indexes are not supported)")
        return (match[0],)
    if conflict.constraint is not None:
        constraint = meta.dialect.fold(*conflict.constraint)
        if constraint == meta.primary_key_name:
            return (meta.primary_key,)
        match = [u.columns for u in meta.unique_keys if u.name == constraint]
        if not match:
            raise _refuse(stmt, f"constraint {constraint!r} is not a unique key AT mode knows")
        return (match[0],)
    return keys


def _key_condition(
    stmt: Statement, meta: TableMeta, row: dict[str, InsertValue], key: tuple[str, ...]
) -> list[tuple[str, Fragment]] | None:
    condition: list[tuple[str, Fragment]] = []
    for column_name in key:
        value, column = row.get(column_name), meta.column(column_name)
        if value is not None and value.kind in _GIVEN:
            condition.append((column_name, value.fragment))
            continue
        if value is not None and value.kind is ValueKind.EXPRESSION:
            raise _refuse(stmt, f"the value of key column {column_name!r} is an expression; AT mode needs a "
                                "literal or a parameter to find the row it may conflict with")
        if value is not None and value.kind is ValueKind.NULL:
            return None  # NULL never conflicts
        if column.auto_increment or column.default is None:
            return None  # a fresh number, or NULL: no conflict on this key
        raise _refuse(stmt, f"key column {column_name!r} takes its default; AT mode cannot find the row it may "
                            "conflict with")
    return condition


def with_returning(stmt: Statement, meta: TableMeta, columns: Sequence[str] | None = None) -> tuple[str, int]:
    """The statement with ``columns`` (default: the primary key) returned first, and how many.

    The executor reads the first ``n`` columns of each returned row for itself and hands the rest
    (the statement's own RETURNING list, if any) to the caller.
    """
    d = stmt.dialect
    allowed = d.insert_returning if stmt.kind in (Kind.INSERT, Kind.UPSERT) else d.update_returning
    if not allowed or stmt.kind not in (Kind.INSERT, Kind.UPSERT, Kind.UPDATE, Kind.DELETE):
        raise _refuse(stmt, f"{d.name} has no RETURNING for {stmt.kind.value}")
    names = _columns_sql(meta, meta.primary_key if columns is None else columns)
    if stmt.style is not None and stmt.style.percent:
        names = names.replace("%", "%%")
    if stmt.returning is not None:
        at = stmt.returning.start
        return f"{stmt.sql[:at]}{names}, {stmt.sql[at:]}", len(columns or meta.primary_key)
    end = stmt.end
    return f"{stmt.sql[:end]} RETURNING {names}{stmt.sql[end:]}", len(columns or meta.primary_key)
