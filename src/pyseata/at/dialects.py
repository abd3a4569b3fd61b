"""What differs between the SQL dialects AT mode speaks: small tables and flags, no logic per dialect.

A :class:`Dialect` holds the lexical rules (quotes, comments, dollar quoting) that decide where a
placeholder or a statement separator can be, the SQL flags the image queries need (``FOR UPDATE``,
``RETURNING``, identifier quoting and case folding), and the table from a column's type name to
its ``java.sql.Types`` code (the ``type`` of a ``Field`` in Seata's undo log).

:class:`Paramstyle` is the DB-API parameter style of one ``execute`` call, as the driver will read
it: ``sqlite3`` takes QMARK or NAMED, PyMySQL and psycopg take FORMAT or PYFORMAT (``%%`` is a
literal percent sign and placeholders count even inside string literals, because those drivers
substitute over the whole text), asyncpg takes DOLLAR. :func:`scan_parameters` finds every
placeholder with its position, so image queries can reuse the statement's own text and bind the
same parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

from pyseata.at.errors import SQLNotSupportedError

__all__ = [
    "DIALECTS",
    "MARIADB",
    "MYSQL",
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "JavaType",
    "NameCase",
    "ParamScan",
    "Paramstyle",
    "Placeholder",
    "code_spans",
    "fill",
    "fill_params",
    "get_dialect",
    "has_several_statements",
    "scan_parameters",
]


# --- java.sql.Types -------------------------------------------------------------------------------


class JavaType(IntEnum):
    """``java.sql.Types`` codes: the ``type`` of a Field in rollback_info."""

    BIT = -7
    TINYINT = -6
    SMALLINT = 5
    INTEGER = 4
    BIGINT = -5
    FLOAT = 6
    REAL = 7
    DOUBLE = 8
    NUMERIC = 2
    DECIMAL = 3
    CHAR = 1
    VARCHAR = 12
    LONGVARCHAR = -1
    DATE = 91
    TIME = 92
    TIMESTAMP = 93
    BINARY = -2
    VARBINARY = -3
    LONGVARBINARY = -4
    NULL = 0
    OTHER = 1111
    JAVA_OBJECT = 2000
    DISTINCT = 2001
    STRUCT = 2002
    ARRAY = 2003
    BLOB = 2004
    CLOB = 2005
    REF = 2006
    DATALINK = 70
    BOOLEAN = 16
    ROWID = -8
    NCHAR = -15
    NVARCHAR = -9
    LONGNVARCHAR = -16
    NCLOB = 2011
    SQLXML = 2009
    TIME_WITH_TIMEZONE = 2013
    TIMESTAMP_WITH_TIMEZONE = 2014


# The codes Seata's Java drivers report (MySQL Connector/J's MysqlType, pgjdbc's TypeInfoCache), so a
# Java RM reading our undo log finds the types it would have written itself.
_MYSQL_TYPES: Mapping[str, JavaType] = MappingProxyType({
    "bit": JavaType.BIT, "bool": JavaType.BIT, "boolean": JavaType.BIT,
    "tinyint": JavaType.TINYINT, "smallint": JavaType.SMALLINT, "mediumint": JavaType.INTEGER,
    "int": JavaType.INTEGER, "integer": JavaType.INTEGER, "bigint": JavaType.BIGINT,
    "decimal": JavaType.DECIMAL, "numeric": JavaType.DECIMAL, "dec": JavaType.DECIMAL, "fixed": JavaType.DECIMAL,
    "float": JavaType.REAL, "double": JavaType.DOUBLE, "real": JavaType.DOUBLE,
    "date": JavaType.DATE, "year": JavaType.DATE, "time": JavaType.TIME,
    "datetime": JavaType.TIMESTAMP, "timestamp": JavaType.TIMESTAMP,
    "char": JavaType.CHAR, "varchar": JavaType.VARCHAR, "tinytext": JavaType.VARCHAR,
    "text": JavaType.LONGVARCHAR, "mediumtext": JavaType.LONGVARCHAR, "longtext": JavaType.LONGVARCHAR,
    "json": JavaType.LONGVARCHAR, "enum": JavaType.CHAR, "set": JavaType.CHAR,
    "binary": JavaType.BINARY, "varbinary": JavaType.VARBINARY, "tinyblob": JavaType.VARBINARY,
    "blob": JavaType.LONGVARBINARY, "mediumblob": JavaType.LONGVARBINARY, "longblob": JavaType.LONGVARBINARY,
    "geometry": JavaType.BINARY, "uuid": JavaType.CHAR, "inet4": JavaType.CHAR, "inet6": JavaType.CHAR,
})

_POSTGRES_TYPES: Mapping[str, JavaType] = MappingProxyType({
    "int2": JavaType.SMALLINT, "smallint": JavaType.SMALLINT, "smallserial": JavaType.SMALLINT,
    "int4": JavaType.INTEGER, "integer": JavaType.INTEGER, "int": JavaType.INTEGER, "serial": JavaType.INTEGER,
    "int8": JavaType.BIGINT, "bigint": JavaType.BIGINT, "bigserial": JavaType.BIGINT, "oid": JavaType.BIGINT,
    "numeric": JavaType.NUMERIC, "decimal": JavaType.NUMERIC,
    "float4": JavaType.REAL, "real": JavaType.REAL, "float8": JavaType.DOUBLE, "double precision": JavaType.DOUBLE,
    "money": JavaType.DOUBLE, "bool": JavaType.BIT, "boolean": JavaType.BIT, "bit": JavaType.BIT,
    "char": JavaType.CHAR, "bpchar": JavaType.CHAR, "character": JavaType.CHAR,
    "varchar": JavaType.VARCHAR, "character varying": JavaType.VARCHAR, "text": JavaType.VARCHAR,
    "name": JavaType.VARCHAR, "bytea": JavaType.BINARY,
    "date": JavaType.DATE, "time": JavaType.TIME, "timetz": JavaType.TIME,
    "time without time zone": JavaType.TIME, "time with time zone": JavaType.TIME,
    "timestamp": JavaType.TIMESTAMP, "timestamptz": JavaType.TIMESTAMP,
    "timestamp without time zone": JavaType.TIMESTAMP, "timestamp with time zone": JavaType.TIMESTAMP,
    "xml": JavaType.SQLXML,
})

# SQLite's column affinity rules (https://sqlite.org/datatype3.html section 3.1), in their order.
_SQLITE_AFFINITY: tuple[tuple[str, JavaType], ...] = (
    ("INT", JavaType.BIGINT),
    ("CHAR", JavaType.VARCHAR), ("CLOB", JavaType.VARCHAR), ("TEXT", JavaType.VARCHAR),
    ("BLOB", JavaType.BLOB),
    ("REAL", JavaType.DOUBLE), ("FLOA", JavaType.DOUBLE), ("DOUB", JavaType.DOUBLE),
)


def _base_type(type_name: str) -> str:
    """``varchar(20)`` -> ``varchar``; ``int unsigned`` -> ``int``; ``timestamp(6) with time zone`` kept whole."""
    name = re.sub(r"\(.*?\)", "", type_name.strip().lower())
    name = " ".join(name.split())
    for suffix in (" unsigned", " zerofill", " signed"):
        name = name.replace(suffix, "")
    return name


def _mysql_java_type(type_name: str) -> JavaType:
    if type_name.strip().lower().startswith("tinyint(1)"):
        return JavaType.BIT  # Connector/J's tinyInt1isBit
    return _MYSQL_TYPES.get(_base_type(type_name), JavaType.OTHER)


def _postgres_java_type(type_name: str) -> JavaType:
    name = _base_type(type_name)
    if name.startswith("_") or name.endswith("[]"):
        return JavaType.ARRAY
    return _POSTGRES_TYPES.get(name, JavaType.OTHER)


def _sqlite_java_type(type_name: str) -> JavaType:
    upper = type_name.upper()
    if not upper.strip():
        return JavaType.BLOB
    for needle, code in _SQLITE_AFFINITY:
        if needle in upper:
            return code
    return JavaType.NUMERIC


# --- dialects -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quote:
    """One quoting form: strings and quoted identifiers alike, for the lexer."""

    open: str
    close: str
    doubled: bool = True  # a doubled closing character stands for itself
    backslash: bool = False  # a backslash escapes the next character


class NameCase(Enum):
    """What the database does to an unquoted identifier."""

    LOWER = "lower"  # PostgreSQL folds it to lower case
    KEEP = "keep"  # MySQL/SQLite keep it (and compare column names case-insensitively)


@dataclass(frozen=True)
class Dialect:
    """One SQL dialect as AT mode needs it."""

    name: str
    sqlglot: str  # sqlglot's read/write dialect name
    quotes: tuple[Quote, ...]
    identifier_quote: str
    hash_comments: bool = False
    dash_comment_needs_space: bool = False  # MySQL: "--" starts a comment only before whitespace
    nested_comments: bool = False
    dollar_quotes: bool = False
    escape_strings: bool = False  # PostgreSQL E'...' strings take backslash escapes
    for_update: str = " FOR UPDATE"
    insert_returning: bool = False
    update_returning: bool = False
    name_case: NameCase = NameCase.KEEP
    columns_case_insensitive: bool = True
    default_schema: str | None = None  # the schema whose name Seata leaves out of lock keys
    schema_in_lock_key: bool = True  # Seata's MySQL lock keys never name the database
    conflict_styles: frozenset[str] = frozenset()  # "duplicate" (ON DUPLICATE KEY), "on_conflict", "ignore"
    java_type_of: Callable[[str], JavaType] = field(default=lambda _name: JavaType.OTHER, repr=False)

    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier."""
        q = self.identifier_quote
        return q + name.replace(q, q + q) + q

    def qualified(self, schema: str | None, name: str) -> str:
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    def fold(self, name: str, quoted: bool) -> str:
        """The name the database stores for an identifier written as ``name``."""
        if quoted or self.name_case is NameCase.KEEP:
            return name
        return name.lower()

    def same_column(self, written: str, quoted: bool, actual: str) -> bool:
        """Whether a column written in SQL as ``written`` is the column ``actual`` of the table."""
        if self.columns_case_insensitive:
            return written.casefold() == actual.casefold()
        return self.fold(written, quoted) == actual

    def java_type(self, type_name: str) -> JavaType:
        return self.java_type_of(type_name)


_SINGLE = Quote("'", "'")
_SINGLE_BACKSLASH = Quote("'", "'", backslash=True)
_DOUBLE = Quote('"', '"')
_DOUBLE_BACKSLASH = Quote('"', '"', backslash=True)
_BACKTICK = Quote("`", "`")
_BRACKET = Quote("[", "]", doubled=False)

MYSQL = Dialect(
    name="mysql", sqlglot="mysql",
    quotes=(_SINGLE_BACKSLASH, _DOUBLE_BACKSLASH, _BACKTICK), identifier_quote="`",
    hash_comments=True, dash_comment_needs_space=True, schema_in_lock_key=False,
    conflict_styles=frozenset({"duplicate", "ignore"}), java_type_of=_mysql_java_type,
)
MARIADB = Dialect(
    name="mariadb", sqlglot="mysql",
    quotes=(_SINGLE_BACKSLASH, _DOUBLE_BACKSLASH, _BACKTICK), identifier_quote="`",
    hash_comments=True, dash_comment_needs_space=True, insert_returning=True, schema_in_lock_key=False,
    conflict_styles=frozenset({"duplicate", "ignore"}), java_type_of=_mysql_java_type,
)
POSTGRES = Dialect(
    name="postgres", sqlglot="postgres",
    quotes=(_SINGLE, _DOUBLE), identifier_quote='"',
    nested_comments=True, dollar_quotes=True, escape_strings=True,
    insert_returning=True, update_returning=True,
    name_case=NameCase.LOWER, columns_case_insensitive=False, default_schema="public",
    conflict_styles=frozenset({"on_conflict"}), java_type_of=_postgres_java_type,
)
SQLITE = Dialect(
    name="sqlite", sqlglot="sqlite",
    quotes=(_SINGLE, _DOUBLE, _BACKTICK, _BRACKET), identifier_quote='"',
    for_update="",  # SQLite locks the whole database; the executor begins with BEGIN IMMEDIATE
    insert_returning=True, update_returning=True, default_schema="main",
    conflict_styles=frozenset({"on_conflict", "ignore"}), java_type_of=_sqlite_java_type,
)

DIALECTS: Mapping[str, Dialect] = MappingProxyType({
    "mysql": MYSQL, "mariadb": MARIADB, "postgres": POSTGRES, "postgresql": POSTGRES, "sqlite": SQLITE,
})


def get_dialect(dialect: str | Dialect) -> Dialect:
    if isinstance(dialect, Dialect):
        return dialect
    try:
        return DIALECTS[dialect.lower()]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {dialect!r}; known: {', '.join(sorted(DIALECTS))}") from None


# --- lexing: where code is ------------------------------------------------------------------------

_IDENT_CHAR = re.compile(r"[\w$]")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$")


def code_spans(sql: str, dialect: Dialect) -> list[tuple[int, int]]:
    """``(start, end)`` of the parts of ``sql`` that are code: not in a literal, quoted name or comment.

    An unterminated literal or comment runs to the end of the text (the database will refuse it).
    """
    spans: list[tuple[int, int]] = []
    start = i = 0
    n = len(sql)
    while i < n:
        skip_to = _non_code_end(sql, i, dialect)
        if skip_to is None:
            i += 1
            continue
        if i > start:
            spans.append((start, i))
        start = i = skip_to
    if start < n:
        spans.append((start, n))
    return spans


def _non_code_end(sql: str, i: int, d: Dialect) -> int | None:
    """If a literal, quoted name or comment starts at ``i``, the index just after it."""
    c = sql[i]
    two = sql[i : i + 2]
    if two == "--" and (not d.dash_comment_needs_space or i + 2 >= len(sql) or sql[i + 2] in " \t\r\n\f\v"):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if c == "#" and d.hash_comments:
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if two == "/*":
        return _block_comment_end(sql, i, d.nested_comments)
    if c == "$" and d.dollar_quotes and not (i and _IDENT_CHAR.match(sql[i - 1])):
        tag = _DOLLAR_TAG.match(sql, i)
        if tag:
            end = sql.find(tag.group(), tag.end())
            return len(sql) if end < 0 else end + len(tag.group())
        return None
    if c in "eE" and d.escape_strings and two[1:] == "'" and not (i and _IDENT_CHAR.match(sql[i - 1])):
        return _quoted_end(sql, i + 1, _SINGLE_BACKSLASH)
    for quote in d.quotes:
        if c == quote.open:
            return _quoted_end(sql, i, quote)
    return None


def _block_comment_end(sql: str, i: int, nested: bool) -> int:
    depth = 0
    j = i
    while j < len(sql):
        two = sql[j : j + 2]
        if two == "/*" and (nested or depth == 0):
            depth += 1
            j += 2
        elif two == "*/":
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(sql)


def _quoted_end(sql: str, i: int, quote: Quote) -> int:
    j = i + 1
    while j < len(sql):
        c = sql[j]
        if quote.backslash and c == "\\":
            j += 2
            continue
        if c == quote.close:
            if quote.doubled and sql[j + 1 : j + 2] == quote.close:
                j += 2
                continue
            return j + 1
        j += 1
    return len(sql)


def has_several_statements(sql: str, dialect: Dialect) -> bool:
    """Whether code follows a ``;`` (one trailing ``;`` and comments after it are fine)."""
    spans = code_spans(sql, dialect)
    seen_separator = False
    for start, end in spans:
        for ch in sql[start:end]:
            if ch == ";":
                seen_separator = True
            elif not ch.isspace() and seen_separator:
                return True
    return False


# --- parameters -----------------------------------------------------------------------------------


class Paramstyle(StrEnum):
    """The DB-API parameter style of one execute call (asyncpg's ``$1`` is DOLLAR)."""

    QMARK = "qmark"  # ?             sqlite3 with a sequence
    NUMERIC = "numeric"  # :1
    NAMED = "named"  # :name         sqlite3 with a mapping
    FORMAT = "format"  # %s          PyMySQL, psycopg with a sequence
    PYFORMAT = "pyformat"  # %(name)s  PyMySQL, psycopg with a mapping
    DOLLAR = "dollar"  # $1          asyncpg

    @property
    def named(self) -> bool:
        return self in (Paramstyle.NAMED, Paramstyle.PYFORMAT)

    @property
    def percent(self) -> bool:
        """The driver substitutes over the whole text, so ``%`` must be written ``%%``."""
        return self in (Paramstyle.FORMAT, Paramstyle.PYFORMAT)

    @property
    def renumbered(self) -> bool:
        """Placeholders carry their parameter's number, so a new query numbers them afresh."""
        return self in (Paramstyle.NUMERIC, Paramstyle.DOLLAR)

    def render(self, key: int | str) -> str:
        """The placeholder for positional parameter ``key`` (0-based) or named parameter ``key``."""
        return _RENDER[self](key)


def fill(template: str, style: Paramstyle) -> str:
    """``template`` with each ``{}`` replaced by a placeholder in ``style`` (named ones: p0, p1...)."""
    parts = template.split("{}")
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        out.append(style.render(f"p{i}" if style.named else i))
        out.append(part)
    return "".join(out)


def fill_params(values: Sequence[Any], style: Paramstyle) -> list[Any] | dict[str, Any]:
    """The parameters for a query made by :func:`fill`."""
    return {f"p{i}": v for i, v in enumerate(values)} if style.named else list(values)


_RENDER: Mapping[Paramstyle, Callable[[int | str], str]] = MappingProxyType({
    Paramstyle.QMARK: lambda _k: "?",
    Paramstyle.FORMAT: lambda _k: "%s",
    Paramstyle.NUMERIC: lambda k: f":{int(k) + 1}",
    Paramstyle.DOLLAR: lambda k: f"${int(k) + 1}",
    Paramstyle.NAMED: lambda k: f":{k}",
    Paramstyle.PYFORMAT: lambda k: f"%({k})s",
})


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One parameter placeholder in a statement: where it is and which parameter it takes.

    ``key`` is the 0-based parameter index for positional styles and the name for named ones.
    """

    start: int
    end: int
    key: int | str
    text: str


@dataclass(frozen=True, slots=True)
class ParamScan:
    """The placeholders of a statement and, for ``%`` styles, the positions of ``%%`` escapes."""

    style: Paramstyle | None
    placeholders: tuple[Placeholder, ...] = ()
    escapes: tuple[int, ...] = ()


_PERCENT = re.compile(r"%(?:\((?P<name>[^)]*)\))?(?P<conv>.?)", re.DOTALL)
_CODE_PATTERNS: Mapping[Paramstyle, re.Pattern[str]] = MappingProxyType({
    Paramstyle.QMARK: re.compile(r"\?(?P<num>\d*)"),
    Paramstyle.NAMED: re.compile(r"(?<![:\w]):(?P<name>[A-Za-z_]\w*)"),
    Paramstyle.NUMERIC: re.compile(r"(?<![:\w]):(?P<num>\d+)"),
    Paramstyle.DOLLAR: re.compile(r"(?<![\w$])\$(?P<num>\d+)"),
})


def scan_parameters(sql: str, dialect: Dialect, style: Paramstyle | str | None) -> ParamScan:
    """Every placeholder of ``sql`` written in ``style`` (None: the call has no parameters).

    Raises :class:`SQLNotSupportedError` for a ``%`` the driver would not accept or placeholders of
    two kinds in one statement.
    """
    if style is None:
        return ParamScan(None)
    style = Paramstyle(style)
    if style.percent:
        return _scan_percent(sql, style)
    pattern = _CODE_PATTERNS[style]
    found: list[Placeholder] = []
    for start, end in code_spans(sql, dialect):
        for m in pattern.finditer(sql, start, end):
            found.append(Placeholder(m.start(), m.end(), _key(style, m, len(found)), m.group()))
    return ParamScan(style, tuple(found))


def _key(style: Paramstyle, m: re.Match[str], ordinal: int) -> int | str:
    if style is Paramstyle.QMARK:
        if m.group("num"):
            raise SQLNotSupportedError(m.string, f"numbered placeholder {m.group()} is not supported; use ? or :name")
        return ordinal
    if style is Paramstyle.NAMED:
        return m.group("name")
    number = int(m.group("num"))
    if number < 1:
        raise SQLNotSupportedError(m.string, f"parameter {m.group()} does not exist (numbering starts at 1)")
    return number - 1


def _scan_percent(sql: str, style: Paramstyle) -> ParamScan:
    found: list[Placeholder] = []
    escapes: list[int] = []
    for m in _PERCENT.finditer(sql):
        name, conv = m.group("name"), m.group("conv")
        if conv == "%" and name is None:
            escapes.append(m.start())
            continue
        if conv not in ("s", "b", "t"):  # psycopg also takes %b and %t
            raise SQLNotSupportedError(
                sql, f"{m.group()!r} at offset {m.start()} is not a placeholder; write %% for a literal percent sign"
            )
        if (name is not None) != (style is Paramstyle.PYFORMAT):
            wanted = "%(name)s" if style is Paramstyle.PYFORMAT else "%s"
            raise SQLNotSupportedError(sql, f"placeholder {m.group()!r} mixed with {wanted} placeholders")
        found.append(Placeholder(m.start(), m.end(), name if name is not None else len(found), m.group()))
    return ParamScan(style, tuple(found), tuple(escapes))
