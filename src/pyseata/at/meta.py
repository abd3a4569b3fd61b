"""Table metadata: columns in order, their types, the primary key, unique keys, the generated column.

Reading is an I/O-free flow, :func:`table_meta_flow`: a generator that yields :class:`Fetch` steps
("run this query, send me its rows") and returns a :class:`TableMeta`. :func:`read_table_meta`
drives it on a DB-API connection; an async driver drives the same flow with ``await``. The
catalogs read are SQLite's ``pragma_table_info``/``pragma_index_list``, MySQL/MariaDB's
``information_schema`` and PostgreSQL's ``pg_catalog`` (through ``to_regclass``, so an unqualified
name follows the ``search_path`` exactly as the statement will).

:class:`TableMetaCache` keeps the metadata of one resource (one database) by table, as Seata's
``TableMetaCacheFactory`` does; ``refresh`` re-reads after DDL.

A table without a primary key raises :class:`~pyseata.at.errors.TableMetaError`: AT mode names
rows by primary key in images, lock keys and undo SQL, so it cannot cover such a table.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from pyseata.at.dialects import Dialect, JavaType, Paramstyle, fill, fill_params, get_dialect
from pyseata.at.errors import TableMetaError

__all__ = [
    "ColumnMeta",
    "Fetch",
    "MetaFlow",
    "TableMeta",
    "TableMetaCache",
    "UniqueKey",
    "read_table_meta",
    "run_flow",
    "table_meta_flow",
]


@dataclass(frozen=True, slots=True)
class ColumnMeta:
    """One column. ``default`` is the database's text of the default expression, or None.

    ``generated``: the database computes the value from other columns (PostgreSQL ``GENERATED
    ALWAYS AS (...) STORED``, MySQL/MariaDB virtual and stored columns); no statement may write it.
    ``identity_always``: PostgreSQL ``GENERATED ALWAYS AS IDENTITY``; an INSERT may write it only
    with ``OVERRIDING SYSTEM VALUE``, an UPDATE never. (SQLite hides generated columns from
    ``pragma_table_info``: AT mode never sees them there.)
    """

    name: str
    type_name: str
    java_type: JavaType
    nullable: bool = True
    default: str | None = None
    auto_increment: bool = False
    generated: bool = False
    identity_always: bool = False

    @property
    def writable(self) -> bool:
        """Whether an UPDATE may set this column to a given value."""
        return not (self.generated or self.identity_always)


@dataclass(frozen=True, slots=True)
class UniqueKey:
    """A unique index or constraint other than the primary key, over whole column values."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TableMeta:
    """What AT mode knows about one table. ``schema`` is the resolved schema (database for MySQL)."""

    dialect: Dialect = field(repr=False)
    schema: str | None
    name: str
    columns: tuple[ColumnMeta, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[UniqueKey, ...] = ()
    primary_key_name: str | None = None  # the primary key's constraint (index) name, when it has one

    def __post_init__(self) -> None:
        if not self.primary_key:
            raise TableMetaError(self.display_name, "has no primary key; AT mode needs one to identify rows")
        missing = [pk for pk in self.primary_key if pk not in self._by_name]
        if missing:
            raise TableMetaError(self.display_name, f"primary key column(s) {missing} are not among its columns")

    @cached_property
    def _by_name(self) -> dict[str, ColumnMeta]:
        return {c.name: c for c in self.columns}

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def display_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def qualified(self) -> str:
        """The table as a quoted, schema-qualified SQL name."""
        return self.dialect.qualified(self.schema, self.name)

    @property
    def lock_name(self) -> str:
        """The table name Seata puts in lock keys and undo images (schema only when not the default)."""
        d = self.dialect
        if not d.schema_in_lock_key or self.schema is None or self.schema == d.default_schema:
            return self.name
        return f"{self.schema}.{self.name}"

    @property
    def auto_increment(self) -> str | None:
        """The column the database numbers by itself (AUTO_INCREMENT, SERIAL/IDENTITY, rowid alias)."""
        return next((c.name for c in self.columns if c.auto_increment), None)

    def column(self, name: str) -> ColumnMeta:
        try:
            return self._by_name[name]
        except KeyError:
            raise TableMetaError(self.display_name, f"has no column {name!r}") from None

    def find_column(self, written: str, quoted: bool = False) -> ColumnMeta | None:
        """The column a statement means by ``written`` (case rules of the dialect), or None."""
        return next((c for c in self.columns if self.dialect.same_column(written, quoted, c.name)), None)

    def unique_column_sets(self) -> tuple[tuple[str, ...], ...]:
        """The primary key, then every unique key: the column sets an upsert can conflict on."""
        return (self.primary_key, *(u.columns for u in self.unique_keys))


# --- the reading flow -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetch:
    """A step of a flow: run ``sql`` with ``params`` and send back all rows as a list of tuples."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any] | None


MetaFlow = Generator[Fetch, list[tuple[Any, ...]], TableMeta]

_DEFAULT_STYLE: Mapping[str, Paramstyle] = MappingProxyType({
    "sqlite": Paramstyle.QMARK, "mysql": Paramstyle.FORMAT, "mariadb": Paramstyle.FORMAT,
    "postgres": Paramstyle.FORMAT,
})


_sql = fill
_params = fill_params


def table_meta_flow(
    dialect: Dialect | str, name: str, schema: str | None = None, *, style: Paramstyle | str | None = None
) -> MetaFlow:
    """Read one table's metadata. ``name`` and ``schema`` are the stored names (already case-folded)."""
    d = get_dialect(dialect)
    st = Paramstyle(style) if style is not None else _DEFAULT_STYLE[d.name]
    reader = _READERS[d.name]
    return reader(d, name, schema, st)


def _sqlite_flow(d: Dialect, name: str, schema: str | None, st: Paramstyle) -> MetaFlow:
    # pragma_table_list (SQLite 3.37+) resolves the name as SQLite does: any case, temp before main.
    tables = yield Fetch(_sql('SELECT schema, name, wr FROM pragma_table_list({})', st), _params([name], st))
    found = [t for t in tables if schema is None or t[0] == schema]
    if not found:
        raise TableMetaError(_display(schema, name), "not found")
    schema, name, without_rowid = found[0]
    args = _params([name, schema], st)
    cols = yield Fetch(_sql('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info({}, {})', st), args)
    indexes = yield Fetch(_sql('SELECT name, "unique", origin, partial FROM pragma_index_list({}, {})', st), args)
    unique: list[UniqueKey] = []
    for index_name, is_unique, origin, partial in indexes:
        if not is_unique or partial or origin == "pk":
            continue
        info = yield Fetch(_sql("SELECT seqno, cid, name FROM pragma_index_info({}, {}) ORDER BY seqno", st),
                           _params([index_name, schema], st))
        if info and all(cid >= 0 for _seq, cid, _n in info):  # cid -2: an expression
            unique.append(UniqueKey(index_name, tuple(col for _seq, _cid, col in info)))
    pk = tuple(col for col, *_rest in sorted((r for r in cols if r[4]), key=lambda r: r[4]))
    # An INTEGER PRIMARY KEY of a rowid table is the rowid: SQLite numbers it when no value is given.
    rowid_alias = len(pk) == 1 and not without_rowid and any(
        r[0] == pk[0] and str(r[1]).upper() == "INTEGER" for r in cols
    )
    columns = tuple(
        ColumnMeta(
            name=col, type_name=str(type_name), java_type=d.java_type(str(type_name)),
            nullable=not notnull and not (rowid_alias and col == pk[0]), default=dflt,
            auto_increment=rowid_alias and col == pk[0],
        )
        for col, type_name, notnull, dflt, _pk in cols
    )
    return TableMeta(d, schema, name, columns, pk, tuple(sorted(unique, key=lambda u: u.name)))


_MYSQL_COLUMNS = (
    "SELECT TABLE_SCHEMA, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE({}, DATABASE()) AND TABLE_NAME = {} "
    "ORDER BY ORDINAL_POSITION"
)
_MYSQL_INDEXES = (
    "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART "
    "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE({}, DATABASE()) AND TABLE_NAME = {} "
    "ORDER BY INDEX_NAME, SEQ_IN_INDEX"
)


def _mysql_flow(d: Dialect, name: str, schema: str | None, st: Paramstyle) -> MetaFlow:
    cols = yield Fetch(_sql(_MYSQL_COLUMNS, st), _params([schema, name], st))
    if not cols:
        raise TableMetaError(_display(schema, name), "not found (or the current database is not set)")
    resolved = _text(cols[0][0])
    indexes = yield Fetch(_sql(_MYSQL_INDEXES, st), _params([resolved, name], st))
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in indexes:
        grouped.setdefault(_text(row[0]), []).append(row)
    pk: tuple[str, ...] = ()
    unique: list[UniqueKey] = []
    for index_name, rows in grouped.items():
        if int(rows[0][1]):  # NON_UNIQUE
            continue
        # A functional index has no column; a prefix index (SUB_PART) is unique on a prefix only.
        if any(r[2] is None or r[3] is not None for r in rows):
            continue
        key = tuple(_text(r[2]) for r in rows)
        if index_name == "PRIMARY":
            pk = key
        else:
            unique.append(UniqueKey(index_name, key))
    columns = tuple(
        ColumnMeta(
            name=_text(col), type_name=_text(ctype), java_type=d.java_type(_text(ctype)),
            nullable=_text(nullable) == "YES", default=_mysql_default(dflt),
            auto_increment="auto_increment" in _text(extra).lower(),
            generated=_MYSQL_GENERATED.search(_text(extra)) is not None,
        )
        for _schema, col, ctype, nullable, dflt, extra in cols
    )
    return TableMeta(d, resolved, name, columns, pk, tuple(unique), "PRIMARY")


# EXTRA of a virtual or stored generated column (MySQL 8's DEFAULT_GENERATED is an expression default).
_MYSQL_GENERATED = re.compile(r"\b(?:VIRTUAL|STORED|PERSISTENT) GENERATED\b", re.IGNORECASE)


def _mysql_default(value: Any) -> str | None:
    text = None if value is None else _text(value)
    return None if text == "NULL" else text  # MariaDB writes a NULL default as the word NULL


_PG_COLUMNS = (
    "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typname, "
    "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "JOIN pg_type t ON t.oid = a.atttypid "
    "LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
    "WHERE c.oid = to_regclass({}) ORDER BY a.attnum"
)
_PG_INDEXES = (
    "SELECT ic.relname, i.indisprimary, a.attname "
    "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
    "WHERE i.indrelid = to_regclass({}) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
    "AND k.ord <= i.indnkeyatts "
    "ORDER BY i.indisprimary DESC, ic.relname, k.ord"
)


def _postgres_flow(d: Dialect, name: str, schema: str | None, st: Paramstyle) -> MetaFlow:
    regclass = d.qualified(schema, name)
    cols = yield Fetch(_sql(_PG_COLUMNS, st), _params([regclass], st))
    if not cols:
        where = "not found (in the search_path)" if schema is None else "not found"
        raise TableMetaError(_display(schema, name), where)
    resolved_schema, resolved_name = cols[0][0], cols[0][1]
    indexes = yield Fetch(_sql(_PG_INDEXES, st), _params([regclass], st))
    pk: list[str] = []
    pk_name: str | None = None
    unique: dict[str, list[str]] = {}
    for index_name, primary, col in indexes:
        if primary:
            pk_name = index_name
        (pk if primary else unique.setdefault(index_name, [])).append(col)
    columns = tuple(
        ColumnMeta(
            name=col, type_name=type_name, java_type=d.java_type(typname), nullable=not notnull, default=dflt,
            auto_increment=bool(identity) or (dflt is not None and dflt.startswith("nextval(")),
            generated=bool(generated), identity_always=identity == "a",
        )
        for _n, _c, col, type_name, typname, notnull, dflt, identity, generated in cols
    )
    keys = tuple(UniqueKey(n, tuple(c)) for n, c in unique.items())
    return TableMeta(d, resolved_schema, resolved_name, columns, tuple(pk), keys, pk_name)


_READERS: Mapping[str, Callable[[Dialect, str, str | None, Paramstyle], MetaFlow]] = MappingProxyType({
    "sqlite": _sqlite_flow, "mysql": _mysql_flow, "mariadb": _mysql_flow, "postgres": _postgres_flow,
})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _display(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


# --- driving a flow on a DB-API connection ----------------------------------------------------------


def run_flow(connection: Any, flow: Generator[Fetch, list[tuple[Any, ...]], Any]) -> Any:
    """Drive a flow of :class:`Fetch` steps on a DB-API connection; return what the flow returns."""
    try:
        step = next(flow)
        while True:
            cursor = connection.cursor()
            try:
                if step.params is None:
                    cursor.execute(step.sql)
                else:
                    cursor.execute(step.sql, step.params)
                rows = [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
            step = flow.send(rows)
    except StopIteration as done:
        return done.value


def read_table_meta(
    connection: Any, dialect: Dialect | str, name: str, schema: str | None = None,
    *, style: Paramstyle | str | None = None,
) -> TableMeta:
    """Read one table's metadata through a DB-API connection (sqlite3, PyMySQL, psycopg...)."""
    meta: TableMeta = run_flow(connection, table_meta_flow(dialect, name, schema, style=style))
    return meta


# --- cache ------------------------------------------------------------------------------------------


class TableMetaCache:
    """The metadata of one resource's tables, read once and kept until refreshed.

    Keys are ``(schema, name)`` as stored (the caller folds case, see ``Dialect.fold``); an
    unqualified name is its own key, since its schema depends on the connection's search path.
    """

    def __init__(self, dialect: Dialect | str, *, style: Paramstyle | str | None = None) -> None:
        self.dialect = get_dialect(dialect)
        self.style = style
        self._tables: dict[tuple[str | None, str], TableMeta] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str, schema: str | None = None) -> TableMeta | None:
        with self._lock:
            return self._tables.get((schema, name))

    def store(self, meta: TableMeta, name: str, schema: str | None = None) -> None:
        with self._lock:
            self._tables[(schema, name)] = meta

    def flow(self, name: str, schema: str | None = None) -> MetaFlow:
        """The reading flow for a table, for drivers that run flows themselves (async ones)."""
        return table_meta_flow(self.dialect, name, schema, style=self.style)

    def get(self, connection: Any, name: str, schema: str | None = None) -> TableMeta:
        """The cached metadata, read through ``connection`` on first use."""
        meta = self.lookup(name, schema)
        if meta is None:
            meta = read_table_meta(connection, self.dialect, name, schema, style=self.style)
            self.store(meta, name, schema)
        return meta

    def refresh(self, connection: Any, name: str | None = None, schema: str | None = None) -> None:
        """Re-read one table (or every cached table when ``name`` is None), e.g. after DDL."""
        with self._lock:
            keys = [(schema, name)] if name is not None else list(self._tables)
        for key_schema, key_name in keys:
            self.store(read_table_meta(connection, self.dialect, key_name, key_schema, style=self.style),
                       key_name, key_schema)

    def invalidate(self, name: str | None = None, schema: str | None = None) -> None:
        """Forget one table (or all); the next ``get`` reads it again."""
        with self._lock:
            if name is None:
                self._tables.clear()
            else:
                self._tables.pop((schema, name), None)
