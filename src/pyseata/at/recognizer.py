"""Recognise a SQL statement for AT mode.

:func:`recognize` reads one statement with sqlglot in its dialect and returns a frozen
:class:`Statement`: what kind it is, which table, the columns, the VALUES rows, the SET clauses,
the conflict clause of an upsert, and *fragments* of the statement's own text (WHERE, ORDER BY,
LIMIT, RETURNING...) with the placeholders in them. It never touches a database. A statement AT
mode cannot make safe raises :class:`~pyseata.at.errors.SQLNotSupportedError` naming the statement
and the reason; plain SELECTs, DDL and session statements come back as kinds that are not
intercepted. The image queries built from a Statement are in :mod:`pyseata.at.images`: they reuse
the fragments verbatim, never SQL regenerated from the tree, so the before image selects exactly
the rows the statement changes, with the same parameters.

Supported, per dialect (mysql/mariadb, postgres, sqlite):

- INSERT ... VALUES, one row or many, with or without a column list (MySQL ``INSERT ... SET`` too),
  ``DEFAULT VALUES``, RETURNING; keys given in VALUES, numbered by the database
  (AUTO_INCREMENT, SERIAL/IDENTITY, SQLite rowid) or, where RETURNING exists, from defaults;
- UPDATE and DELETE of one table (alias, ``ONLY``, schema-qualified and quoted names, RETURNING,
  MySQL ORDER BY ... LIMIT when the ORDER BY names every primary-key column);
- SELECT ... FOR UPDATE on one table;
- upserts: MySQL ``ON DUPLICATE KEY UPDATE`` and ``INSERT IGNORE``, PostgreSQL/SQLite
  ``ON CONFLICT ... DO UPDATE`` / ``DO NOTHING`` and SQLite ``INSERT OR IGNORE``.

Refused: several statements in one call, unparseable SQL, UPDATE/DELETE over several tables
(JOIN, ``UPDATE ... FROM``, ``DELETE ... USING``, ``DELETE t1, t2``), INSERT ... SELECT, WITH on a
data-changing statement, data-changing statements nested in a query, updating a primary-key
column, LIMIT/OFFSET/FETCH without an ORDER BY on the primary key, REPLACE / ``INSERT OR REPLACE``,
``INSERT OR FAIL``, TRUNCATE, MERGE, COPY, CALL, EXECUTE, DO, LOAD DATA, ``EXPLAIN ANALYZE``, and
SELECT ... FOR UPDATE over a join, a UNION, or with GROUP BY/HAVING/DISTINCT. (The refusals that
need the table's metadata are raised by :func:`pyseata.at.images.check`.)

Not intercepted (run as they are): plain SELECT (also ``FOR SHARE``), DDL, and session statements
(SET, SHOW, BEGIN/COMMIT/ROLLBACK, SAVEPOINT, PRAGMA, EXPLAIN, LOCK...). A SELECT calling a function
that writes rows is not covered, as in Seata.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from pyseata.at.dialects import (
    Dialect,
    ParamScan,
    Paramstyle,
    Placeholder,
    get_dialect,
    has_several_statements,
    scan_parameters,
)
from pyseata.at.errors import SQLNotSupportedError

__all__ = [
    "Assignment",
    "Conflict",
    "Fragment",
    "InsertValue",
    "Kind",
    "Name",
    "Statement",
    "TableRef",
    "ValueKind",
    "recognize",
]


# --- records --------------------------------------------------------------------------------------


class Kind(StrEnum):
    """What a statement is, for AT mode."""

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SELECT_FOR_UPDATE = "SELECT_FOR_UPDATE"
    UPSERT = "UPSERT"
    SELECT = "SELECT"  # not intercepted: a plain query
    DDL = "DDL"  # not intercepted: CREATE, ALTER, DROP...
    OTHER = "OTHER"  # not intercepted: SET, SHOW, BEGIN, SAVEPOINT, PRAGMA...

    @property
    def intercepted(self) -> bool:
        return self in _INTERCEPTED


_INTERCEPTED = frozenset({Kind.INSERT, Kind.UPDATE, Kind.DELETE, Kind.SELECT_FOR_UPDATE, Kind.UPSERT})


class Name(NamedTuple):
    """An identifier as written: its text (without quotes) and whether it was quoted."""

    text: str
    quoted: bool = False

    def sql(self, dialect: Dialect) -> str:
        return dialect.quote(self.text) if self.quoted else self.text


@dataclass(frozen=True, slots=True)
class TableRef:
    """The statement's target table as written."""

    name: Name
    schema: Name | None = None
    alias: Name | None = None
    only: bool = False  # PostgreSQL ``ONLY t``: not the inheriting tables

    def sql(self, dialect: Dialect, *, alias: bool = True) -> str:
        text = self.name.sql(dialect) if self.schema is None else f"{self.schema.sql(dialect)}.{self.name.sql(dialect)}"
        if self.only:
            text = "ONLY " + text
        if alias and self.alias is not None:
            text += " AS " + self.alias.sql(dialect)
        return text

    def stored(self, dialect: Dialect) -> tuple[str | None, str]:
        """``(schema, name)`` as the database stores them: the key for a metadata lookup."""
        schema = None if self.schema is None else dialect.fold(*self.schema)
        return schema, dialect.fold(*self.name)


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of the statement's text, verbatim, and the placeholders in it."""

    sql: str
    start: int
    placeholders: tuple[Placeholder, ...] = ()


class ValueKind(StrEnum):
    PARAM = "param"  # exactly one placeholder
    LITERAL = "literal"  # a string, number, boolean or hex literal
    NULL = "null"
    DEFAULT = "default"  # the DEFAULT keyword
    EXPRESSION = "expression"  # anything else: evaluated by the database


@dataclass(frozen=True, slots=True)
class InsertValue:
    """One value of a VALUES row. ``literal`` is the Python value of a LITERAL."""

    kind: ValueKind
    fragment: Fragment
    literal: Any = None

    @property
    def param(self) -> int | str | None:
        return self.fragment.placeholders[0].key if self.kind is ValueKind.PARAM else None


@dataclass(frozen=True, slots=True)
class Assignment:
    """One SET item: the column(s) it sets and the text of the new value."""

    columns: tuple[Name, ...]
    value: Fragment | None


@dataclass(frozen=True, slots=True)
class Conflict:
    """What an upsert does with a row whose key exists.

    ``style`` is "duplicate" (MySQL ON DUPLICATE KEY UPDATE), "on_conflict" (PostgreSQL/SQLite) or
    "ignore" (INSERT IGNORE, INSERT OR IGNORE); ``action`` is "update" or "nothing".
    """

    style: str
    action: str
    target: tuple[Name, ...] = ()
    constraint: Name | None = None
    assignments: tuple[Assignment, ...] = ()


@dataclass(frozen=True)
class Statement:
    """One recognised statement. Fields that do not apply to its kind are empty."""

    kind: Kind
    sql: str
    dialect: Dialect = field(repr=False)
    params: ParamScan = field(repr=False)
    table: TableRef | None = None
    columns: tuple[Name, ...] | None = None  # INSERT's column list; None: all columns in order
    rows: tuple[tuple[InsertValue, ...], ...] = ()
    assignments: tuple[Assignment, ...] = ()
    where: Fragment | None = None
    order_by: Fragment | None = None
    order_columns: tuple[Name, ...] | None = None  # ORDER BY as plain columns; None if it is not
    limit: Fragment | None = None  # UPDATE/DELETE: after LIMIT; SELECT: its LIMIT/OFFSET/FETCH clauses
    returning: Fragment | None = None
    conflict: Conflict | None = None
    select_from: Fragment | None = None  # SELECT ... FOR UPDATE: from FROM to the end
    end: int = 0  # offset just after the last token (before a trailing ";" or comment)

    @property
    def intercepted(self) -> bool:
        return self.kind.intercepted

    @property
    def style(self) -> Paramstyle | None:
        return self.params.style


# --- tokens ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # sqlglot's token type name
    word: str  # upper-cased text
    start: int
    end: int  # exclusive
    depth: int  # bracket depth before this token


_OPEN = frozenset({"L_PAREN", "L_BRACKET", "L_BRACE"})
_CLOSE = frozenset({"R_PAREN", "R_BRACKET", "R_BRACE"})


def _tokenize(text: str, d: Dialect, sql: str) -> list[_Tok]:
    try:
        raw = sqlglot.Dialect.get_or_raise(d.sqlglot).tokenize(text)
    except SqlglotError as exc:
        raise SQLNotSupportedError(sql, f"cannot parse it ({exc})") from exc
    out: list[_Tok] = []
    depth = 0
    for t in raw:
        kind = t.token_type.name
        if kind in _CLOSE:
            depth -= 1
        out.append(_Tok(kind, t.text.upper(), t.start, t.end + 1, depth))
        if kind in _OPEN:
            depth += 1
    while out and out[-1].kind == "SEMICOLON":
        out.pop()
    return out


def _parse_text(sql: str, scan: ParamScan) -> str:
    """``sql`` with every placeholder replaced by ``?`` and ``%%`` by ``%``, keeping every offset."""
    chars = list(sql)
    for p in scan.placeholders:
        chars[p.start : p.end] = "?" + " " * (p.end - p.start - 1)
    for pos in scan.escapes:
        chars[pos + 1] = " "
    return "".join(chars)


class _Ctx:
    """The statement being recognised: its text, tokens and placeholders."""

    def __init__(self, sql: str, d: Dialect, scan: ParamScan, tokens: list[_Tok]) -> None:
        self.sql = sql
        self.d = d
        self.scan = scan
        # A placeholder's "?" marker is one character; its token spans the whole placeholder.
        ends = {p.start: p.end for p in scan.placeholders}
        self.tokens = [replace(t, end=ends.get(t.start, t.end)) for t in tokens]

    def refuse(self, reason: str) -> SQLNotSupportedError:
        return SQLNotSupportedError(self.sql, reason)

    def fragment(self, first: int, last: int) -> Fragment | None:
        """The text from token ``first`` to token ``last`` (inclusive); None when empty."""
        if last < first:
            return None
        start, end = self.tokens[first].start, self.tokens[last].end
        inside = tuple(p for p in self.scan.placeholders if start <= p.start and p.end <= end)
        return Fragment(self.sql[start:end], start, inside)

    def find(self, kinds: frozenset[str], begin: int = 0, *, depth: int = 0) -> int | None:
        """The first token at ``depth`` from ``begin`` whose kind (or word) is in ``kinds``."""
        for i in range(begin, len(self.tokens)):
            t = self.tokens[i]
            if t.depth == depth and (t.kind in kinds or t.word in kinds):
                return i
        return None

    def clause(self, keyword: str, ends: frozenset[str], begin: int = 0) -> Fragment | None:
        """The text after top-level ``keyword`` up to the next top-level token in ``ends``."""
        at = self.find(frozenset({keyword}), begin)
        if at is None:
            return None
        stop = self.find(ends, at + 1)
        return self.fragment(at + 1, (len(self.tokens) if stop is None else stop) - 1)

    def split(self, first: int, last: int, depth: int) -> list[tuple[int, int]]:
        """Token ranges between commas at ``depth`` within ``first..last``."""
        parts: list[tuple[int, int]] = []
        begin = first
        for i in range(first, last + 1):
            if self.tokens[i].kind == "COMMA" and self.tokens[i].depth == depth:
                parts.append((begin, i - 1))
                begin = i + 1
        parts.append((begin, last))
        return parts


# --- recognition ----------------------------------------------------------------------------------

_PASS_THROUGH = frozenset({
    "SET", "SHOW", "USE", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA",
    "DESCRIBE", "DESC", "LOCK", "UNLOCK", "VACUUM", "ANALYZE", "ANALYSE", "GRANT", "REVOKE", "DECLARE",
    "FETCH", "CLOSE", "MOVE", "PREPARE", "DEALLOCATE", "LISTEN", "NOTIFY", "UNLISTEN", "RESET", "DISCARD",
    "CHECKPOINT", "FLUSH", "OPTIMIZE", "CHECK", "REINDEX", "CLUSTER", "KILL", "HELP", "ATTACH", "DETACH",
    "ABORT",
})
_DDL_WORDS = frozenset({"CREATE", "ALTER", "DROP", "RENAME", "COMMENT"})
_REFUSED_WORDS: Mapping[str, str] = MappingProxyType({
    "REPLACE": "REPLACE deletes and re-inserts rows without telling which; use INSERT ... ON DUPLICATE KEY UPDATE",
    "TRUNCATE": "TRUNCATE removes rows no undo log can restore",
    "MERGE": "MERGE is not supported in AT mode",
    "COPY": "COPY changes rows AT mode cannot image",
    "LOAD": "LOAD DATA changes rows AT mode cannot image",
    "CALL": "a stored procedure changes rows AT mode cannot see",
    "EXECUTE": "a prepared statement's SQL is not visible to AT mode",
    "EXEC": "a prepared statement's SQL is not visible to AT mode",
    "DO": "an anonymous code block changes rows AT mode cannot see",
    "HANDLER": "HANDLER statements are not supported in AT mode",
    "UPSERT": "UPSERT statements are not supported in AT mode",
})

_ANALYZE = re.compile(r"\bANALY[SZ]E\b", re.IGNORECASE)
_parsing = threading.local()


class _QuietWhileParsing(logging.Filter):
    """Drops sqlglot's own warnings ("falling back to a Command") raised inside :func:`recognize`:
    the statements concerned are refused or passed through here, with our own message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_parsing, "active", False)


logging.getLogger("sqlglot").addFilter(_QuietWhileParsing())


def recognize(sql: str, dialect: Dialect | str, style: Paramstyle | str | None = None) -> Statement:
    """Recognise one statement written for ``dialect`` whose parameters use ``style``.

    ``style`` is the DB-API paramstyle of the call (None when it has no parameters): see
    :class:`~pyseata.at.dialects.Paramstyle`. Raises :class:`SQLNotSupportedError` for a statement
    AT mode must not run.
    """
    d = get_dialect(dialect)
    scan = scan_parameters(sql, d, style)
    if has_several_statements(sql, d):
        raise SQLNotSupportedError(sql, "several statements in one call; run them one at a time")
    text = _parse_text(sql, scan)
    tokens = _tokenize(text, d, sql)
    if not tokens:
        raise SQLNotSupportedError(sql, "the statement is empty")
    if d.name == "postgres":
        text, tokens = _without_overriding(sql, text, tokens)
    ctx = _Ctx(sql, d, scan, tokens)
    quick = _by_first_word(ctx)
    if quick is not None:
        return Statement(quick, sql, d, scan, end=ctx.tokens[-1].end)
    tree = _parse(text, ctx)
    nested = next((n for n in tree.walk() if n is not tree and isinstance(n, _DML)), None)
    if nested is not None:
        raise ctx.refuse(f"a data-changing statement ({type(nested).__name__.upper()}) nested in a query or WITH")
    handler = next((h for cls, h in _HANDLERS if isinstance(tree, cls)), None)
    if handler is None:
        raise ctx.refuse(f"{ctx.tokens[0].word} statements are not supported in AT mode")
    return replace(handler(ctx, tree), end=ctx.tokens[-1].end)


def _without_overriding(sql: str, text: str, tokens: list[_Tok]) -> tuple[str, list[_Tok]]:
    """A PostgreSQL INSERT's ``OVERRIDING SYSTEM VALUE`` (given values win over an identity) left out
    of what is parsed, which sqlglot cannot read; it changes nothing AT mode looks at.
    ``OVERRIDING USER VALUE`` is refused: the rows would not get the key values the statement gives."""
    if tokens[0].word != "INSERT":
        return text, tokens
    for i, tok in enumerate(tokens[:-2]):
        if tok.word == "OVERRIDING" and tok.depth == 0 and tokens[i + 2].word == "VALUE":
            if tokens[i + 1].word != "SYSTEM":
                raise SQLNotSupportedError(sql, "OVERRIDING USER VALUE makes the database replace the given "
                                                "key values, so AT mode cannot find the inserted rows")
            start, end = tok.start, tokens[i + 2].end
            return text[:start] + " " * (end - start) + text[end:], tokens[:i] + tokens[i + 3 :]
    return text, tokens


def _by_first_word(ctx: _Ctx) -> Kind | None:
    word = ctx.tokens[0].word
    if word in _REFUSED_WORDS:
        raise ctx.refuse(_REFUSED_WORDS[word])
    if word == "EXPLAIN":
        if _ANALYZE.search(ctx.sql, ctx.tokens[0].end):
            raise ctx.refuse("EXPLAIN ANALYZE runs the statement it explains")
        return Kind.OTHER
    if word in _PASS_THROUGH:
        return Kind.OTHER
    if word in _DDL_WORDS:
        return Kind.DDL
    return None


def _parse(text: str, ctx: _Ctx) -> exp.Expr:
    _parsing.active = True
    try:
        trees = sqlglot.parse(text, read=ctx.d.sqlglot)
    except SqlglotError as exc:
        raise ctx.refuse(f"cannot parse it ({_first_line(exc)})") from exc
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:  # sqlglot's own slips ("{ : }")
        raise ctx.refuse(f"cannot parse it ({type(exc).__name__} in the SQL parser)") from exc
    except RecursionError:  # sqlglot parses recursively: "{{{..." or "(((..." some dozens deep
        raise ctx.refuse("cannot parse it (nested too deeply for the SQL parser)") from None
    finally:
        _parsing.active = False
    found = [t for t in trees if t is not None]
    if len(found) != 1:
        raise ctx.refuse("several statements in one call; run them one at a time")
    tree: exp.Expr = found[0]
    return tree


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)


def _table_ref(ctx: _Ctx, node: exp.Expr | None, what: str) -> TableRef:
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise ctx.refuse(f"the {what} target is not a plain table")
    if node.args.get("catalog"):
        raise ctx.refuse("three-part table names (catalog.schema.table) are not supported")
    alias = node.args.get("alias")
    alias_id = alias.this if isinstance(alias, exp.TableAlias) else None
    return TableRef(
        name=_name(node.this),
        schema=_name(node.args["db"]) if isinstance(node.args.get("db"), exp.Identifier) else None,
        alias=_name(alias_id) if isinstance(alias_id, exp.Identifier) else None,
        only=bool(node.args.get("only")),
    )


def _name(ident: exp.Identifier) -> Name:
    return Name(ident.this, bool(ident.quoted))


def _insert_column(ctx: _Ctx, item: exp.Expr) -> Name:
    """One name of an INSERT's column list; anything else there ("(1)", "(@a)") is refused."""
    if isinstance(item, exp.Identifier):
        return _name(item)
    if isinstance(item, exp.Column) and isinstance(item.this, exp.Identifier) and not item.table:
        return _name(item.this)
    raise ctx.refuse(f"cannot read the INSERT column {item.sql()!r}")


def _column_names(ctx: _Ctx, target: exp.Expr) -> tuple[Name, ...]:
    items = target.expressions if isinstance(target, exp.Tuple) else [target]
    names: list[Name] = []
    for item in items:
        if not isinstance(item, exp.Column) or not isinstance(item.this, exp.Identifier):
            raise ctx.refuse(f"cannot read the assigned column {item.sql()!r}")
        names.append(_name(item.this))
    return tuple(names)


_UPDATE_ENDS = frozenset({"WHERE", "ORDER_BY", "LIMIT", "RETURNING", "FROM"})
_WHERE_ENDS = frozenset({"ORDER_BY", "LIMIT", "RETURNING"})


def _assignments(ctx: _Ctx, items: list[exp.Expr], first: int, last: int) -> tuple[Assignment, ...]:
    """SET items from the tree, each with the text of its value (split at top-level commas)."""
    ranges = ctx.split(first, last, 0) if last >= first else []
    if len(ranges) != len(items):
        raise ctx.refuse("cannot read the SET clause")
    out: list[Assignment] = []
    for item, (begin, end) in zip(items, ranges, strict=True):
        if not isinstance(item, exp.EQ):
            raise ctx.refuse(f"cannot read the SET item {item.sql()!r}")
        eq = ctx.find(frozenset({"EQ"}), begin)
        value = ctx.fragment(eq + 1, end) if eq is not None and eq <= end else None
        out.append(Assignment(_column_names(ctx, item.this), value))
    return tuple(out)


def _order(ctx: _Ctx, tree: exp.Expr) -> tuple[Fragment | None, tuple[Name, ...] | None]:
    order = tree.args.get("order")
    if order is None:
        return None, None
    fragment = ctx.clause("ORDER_BY", frozenset({"LIMIT", "RETURNING", "FOR", "LOCK"}))
    names: list[Name] = []
    for item in order.expressions:
        inner = item.this if isinstance(item, exp.Ordered) else item
        if not isinstance(inner, exp.Column) or not isinstance(inner.this, exp.Identifier):
            return fragment, None
        names.append(_name(inner.this))
    return fragment, tuple(names)


def _update(ctx: _Ctx, tree: exp.Expr) -> Statement:
    _no_with(ctx, tree, "UPDATE")
    table = tree.this
    if isinstance(table, exp.Table) and table.args.get("joins"):
        joined = any(j.args.get("on") or j.args.get("using") or j.args.get("kind") for j in table.args["joins"])
        raise ctx.refuse("UPDATE ... JOIN is not supported" if joined else "multi-table UPDATE is not supported")
    if tree.args.get("from_") or tree.args.get("from"):
        raise ctx.refuse("UPDATE ... FROM (a join) is not supported")
    ref = _table_ref(ctx, table, "UPDATE")
    set_at = ctx.find(frozenset({"SET"}))
    if set_at is None:
        raise ctx.refuse("cannot find the SET clause")
    stop = ctx.find(_UPDATE_ENDS, set_at + 1)
    assignments = _assignments(ctx, tree.expressions, set_at + 1, (len(ctx.tokens) if stop is None else stop) - 1)
    if not assignments:
        raise ctx.refuse("cannot read the SET clause")
    order, order_columns = _order(ctx, tree)
    return Statement(
        Kind.UPDATE, ctx.sql, ctx.d, ctx.scan, table=ref, assignments=assignments,
        where=ctx.clause("WHERE", _WHERE_ENDS), order_by=order, order_columns=order_columns,
        limit=ctx.clause("LIMIT", frozenset({"RETURNING"})) if tree.args.get("limit") else None,
        returning=ctx.clause("RETURNING", frozenset()),
    )


def _delete(ctx: _Ctx, tree: exp.Expr) -> Statement:
    _no_with(ctx, tree, "DELETE")
    if tree.args.get("tables"):
        raise ctx.refuse("multi-table DELETE is not supported")
    if tree.args.get("using"):
        raise ctx.refuse("DELETE ... USING (a join) is not supported")
    table = tree.this
    if isinstance(table, exp.Table) and table.args.get("joins"):
        raise ctx.refuse("DELETE ... JOIN is not supported")
    ref = _table_ref(ctx, table, "DELETE")
    order, order_columns = _order(ctx, tree)
    return Statement(
        Kind.DELETE, ctx.sql, ctx.d, ctx.scan, table=ref,
        where=ctx.clause("WHERE", _WHERE_ENDS), order_by=order, order_columns=order_columns,
        limit=ctx.clause("LIMIT", frozenset({"RETURNING"})) if tree.args.get("limit") else None,
        returning=ctx.clause("RETURNING", frozenset()),
    )


def _no_with(ctx: _Ctx, tree: exp.Expr, what: str) -> None:
    if tree.args.get("with_") or tree.args.get("with"):
        raise ctx.refuse(f"WITH on {what} is not supported")


def _select(ctx: _Ctx, tree: exp.Expr) -> Statement:
    locks = tree.args.get("locks") or []
    if not any(lock.args.get("update") for lock in locks):
        if isinstance(tree, exp.Query) and any(
            any(lock.args.get("update") for lock in (s.args.get("locks") or [])) for s in tree.find_all(exp.Select)
        ):
            raise ctx.refuse("FOR UPDATE inside a UNION or subquery is not supported")
        return Statement(Kind.SELECT, ctx.sql, ctx.d, ctx.scan)
    if not isinstance(tree, exp.Select):
        raise ctx.refuse("SELECT ... FOR UPDATE over a UNION is not supported")
    if tree.args.get("with_") or tree.args.get("with"):
        raise ctx.refuse("WITH on SELECT ... FOR UPDATE is not supported")
    if tree.args.get("joins"):
        raise ctx.refuse("SELECT ... FOR UPDATE over several tables (a join) is not supported")
    for arg in ("group", "having", "distinct"):
        if tree.args.get(arg):
            raise ctx.refuse(f"SELECT ... FOR UPDATE with {arg.upper()} is not supported")
    from_ = tree.args.get("from_") or tree.args.get("from")
    if not isinstance(from_, exp.From):
        raise ctx.refuse("SELECT ... FOR UPDATE without a FROM table")
    ref = _table_ref(ctx, from_.this, "SELECT ... FOR UPDATE")
    at = ctx.find(frozenset({"FROM"}))
    assert at is not None
    order, order_columns = _order(ctx, tree)
    return Statement(
        Kind.SELECT_FOR_UPDATE, ctx.sql, ctx.d, ctx.scan, table=ref,
        where=ctx.clause("WHERE", frozenset({"ORDER_BY", "LIMIT", "FOR", "LOCK", "OFFSET", "FETCH"})),
        order_by=order, order_columns=order_columns, select_from=ctx.fragment(at, len(ctx.tokens) - 1),
        limit=_row_limit(ctx) if tree.args.get("limit") or tree.args.get("offset") else None,
    )


def _row_limit(ctx: _Ctx) -> Fragment | None:
    """A SELECT's LIMIT / OFFSET / FETCH clauses, keywords included."""
    at = ctx.find(frozenset({"LIMIT", "OFFSET", "FETCH"}))
    if at is None:
        return None
    stop = ctx.find(frozenset({"FOR", "LOCK"}), at + 1)
    return ctx.fragment(at, (len(ctx.tokens) if stop is None else stop) - 1)


# --- INSERT ---------------------------------------------------------------------------------------

_ALTERNATIVES: Mapping[str, str | None] = MappingProxyType({
    "REPLACE": "INSERT OR REPLACE deletes and re-inserts rows without telling which; use ON CONFLICT DO UPDATE",
    "FAIL": "INSERT OR FAIL keeps the rows inserted before a failing one, which no undo log would cover",
    "IGNORE": None, "ABORT": None, "ROLLBACK": None,
})


def _insert(ctx: _Ctx, tree: exp.Expr) -> Statement:
    _no_with(ctx, tree, "INSERT")
    alternative = str(tree.args.get("alternative") or "").upper()
    if alternative:
        reason = _ALTERNATIVES.get(alternative, f"INSERT OR {alternative} is not supported")
        if reason is not None:
            raise ctx.refuse(reason)
    target = tree.this
    columns: tuple[Name, ...] | None = None
    if isinstance(target, exp.Schema):
        columns = tuple(_insert_column(ctx, c) for c in target.expressions)
        target = target.this
    ref = _table_ref(ctx, target, "INSERT")
    source = tree.expression
    if source is None and tree.args.get("default"):
        rows: tuple[tuple[InsertValue, ...], ...] = ((),)
    elif isinstance(source, exp.Values):
        rows = _rows(ctx, source)
    else:
        raise ctx.refuse("INSERT ... SELECT is not supported: the new rows' keys are not known before it runs")
    conflict = _conflict(ctx, tree, alternative)
    return Statement(
        Kind.UPSERT if conflict else Kind.INSERT, ctx.sql, ctx.d, ctx.scan, table=ref, columns=columns,
        rows=rows, conflict=conflict, returning=ctx.clause("RETURNING", frozenset()),
    )


def _rows(ctx: _Ctx, values: exp.Values) -> tuple[tuple[InsertValue, ...], ...]:
    """Each VALUES row, from the tree, with each value's text (or MySQL's ``INSERT ... SET`` form)."""
    trees = [t.expressions if isinstance(t, exp.Tuple) else [t] for t in values.expressions]
    at = ctx.find(frozenset({"VALUES", "VALUE"}))
    ranges: list[list[tuple[int, int]]] = []
    if at is not None:
        i = at + 1
        while i < len(ctx.tokens) and ctx.tokens[i].kind == "L_PAREN" and ctx.tokens[i].depth == 0:
            close = ctx.find(frozenset({"R_PAREN"}), i + 1)
            if close is None:
                break
            ranges.append(ctx.split(i + 1, close - 1, 1) if close > i + 1 else [])
            i = close + 1
            if i < len(ctx.tokens) and ctx.tokens[i].kind == "COMMA" and ctx.tokens[i].depth == 0:
                i += 1
    else:
        set_at = ctx.find(frozenset({"SET"}))
        if set_at is not None:
            stop = ctx.find(frozenset({"ON", "RETURNING"}), set_at + 1)
            items = ctx.split(set_at + 1, (len(ctx.tokens) if stop is None else stop) - 1, 0)
            eqs = [ctx.find(frozenset({"EQ"}), b) for b, _e in items]
            ranges.append([(eq + 1, e) for eq, (_b, e) in zip(eqs, items, strict=True) if eq is not None])
    if [len(r) for r in ranges] != [len(t) for t in trees]:
        raise ctx.refuse("cannot read the VALUES rows")
    rows = []
    for row_tree, row_ranges in zip(trees, ranges, strict=True):
        row = []
        for node, (first, last) in zip(row_tree, row_ranges, strict=True):
            fragment = ctx.fragment(first, last)
            if fragment is None:
                raise ctx.refuse("cannot read the VALUES rows")
            row.append(_value(ctx, node, fragment))
        rows.append(tuple(row))
    return tuple(rows)


def _value(ctx: _Ctx, node: exp.Expr, fragment: Fragment) -> InsertValue:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Placeholder) and len(fragment.placeholders) == 1:
        return InsertValue(ValueKind.PARAM, fragment)
    if isinstance(node, exp.Null):
        return InsertValue(ValueKind.NULL, fragment)
    if isinstance(node, exp.Var | exp.Column) and node.name.upper() == "DEFAULT" and not fragment.placeholders:
        return InsertValue(ValueKind.DEFAULT, fragment)
    for cls, convert in _LITERALS:
        if isinstance(node, cls):
            value = convert(node)
            if value is _BAD_NUMBER:
                raise ctx.refuse(f"cannot read the number {fragment.sql.strip()!r}")
            if value is not _NOT_LITERAL:
                return InsertValue(ValueKind.LITERAL, fragment, value)
    return InsertValue(ValueKind.EXPRESSION, fragment)


_NOT_LITERAL = object()
_BAD_NUMBER = object()  # a numeric literal that is no number ("3E"): refused


def _number(node: exp.Expr) -> object:
    if not isinstance(node, exp.Literal) or node.is_string:
        return _NOT_LITERAL
    text = str(node.this)
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return Decimal(text)
    except InvalidOperation:  # "3E"
        return _BAD_NUMBER


def _negative(node: exp.Expr) -> object:
    value = _number(node.this)
    return value if value is _NOT_LITERAL or value is _BAD_NUMBER else -value  # type: ignore[operator]


def _hex(node: exp.Expr) -> object:
    try:
        return bytes.fromhex(str(node.this))
    except ValueError:
        return _NOT_LITERAL


_LITERALS: tuple[tuple[type[exp.Expr], Callable[[exp.Expr], object]], ...] = (
    (exp.Literal, lambda n: str(n.this) if n.is_string else _number(n)),
    (exp.Neg, _negative),
    (exp.Boolean, lambda n: bool(n.this)),
    (exp.HexString, _hex),
)


def _conflict(ctx: _Ctx, tree: exp.Expr, alternative: str) -> Conflict | None:
    node = tree.args.get("conflict")
    ignore = bool(tree.args.get("ignore")) or alternative == "IGNORE"
    if node is None:
        if not ignore:
            return None
        _allowed(ctx, "ignore")
        return Conflict("ignore", "nothing")
    if ignore:
        raise ctx.refuse("IGNORE together with an ON CONFLICT clause is not supported")
    style = "duplicate" if node.args.get("duplicate") else "on_conflict"
    _allowed(ctx, style)
    action = "nothing" if "NOTHING" in str(node.args.get("action") or "").upper() else "update"
    target = tuple(
        _column_names(ctx, k.this if isinstance(k, exp.Ordered) else k)[0] for k in node.args.get("conflict_keys") or []
    )
    constraint = node.args.get("constraint")
    assignments: tuple[Assignment, ...] = ()
    if action == "update":
        keyword = ctx.find(frozenset({"UPDATE"}) if style == "duplicate" else frozenset({"SET"}),
                           ctx.find(frozenset({"ON"})) or 0)
        if keyword is None:
            raise ctx.refuse("cannot read the conflict's SET clause")
        stop = ctx.find(frozenset({"WHERE", "RETURNING"}), keyword + 1)
        assignments = _assignments(ctx, node.expressions, keyword + 1, (len(ctx.tokens) if stop is None else stop) - 1)
    return Conflict(
        style, action, target,
        _name(constraint) if isinstance(constraint, exp.Identifier) else None, assignments,
    )


_UPSERT_NAMES: Mapping[str, str] = MappingProxyType({
    "duplicate": "INSERT ... ON DUPLICATE KEY UPDATE",
    "on_conflict": "INSERT ... ON CONFLICT",
    "ignore": "INSERT IGNORE",
})


def _allowed(ctx: _Ctx, style: str) -> None:
    if style not in ctx.d.conflict_styles:
        raise ctx.refuse(f"{_UPSERT_NAMES[style]} is not {ctx.d.name} syntax")


def _not_intercepted(kind: Kind) -> Callable[[_Ctx, exp.Expr], Statement]:
    return lambda ctx, _tree: Statement(kind, ctx.sql, ctx.d, ctx.scan)


def _refused(reason: str) -> Callable[[_Ctx, exp.Expr], Statement]:
    def handler(ctx: _Ctx, _tree: exp.Expr) -> Statement:
        raise ctx.refuse(reason)

    return handler


def _command(ctx: _Ctx, tree: exp.Expr) -> Statement:
    word = str(tree.this).upper()
    if word in _REFUSED_WORDS:
        raise ctx.refuse(_REFUSED_WORDS[word])
    if word in _PASS_THROUGH:
        return Statement(Kind.OTHER, ctx.sql, ctx.d, ctx.scan)
    raise ctx.refuse(f"{word} statements are not supported in AT mode")


_HANDLERS: tuple[tuple[type[exp.Expr], Callable[[_Ctx, exp.Expr], Statement]], ...] = (
    (exp.Insert, _insert),
    (exp.Update, _update),
    (exp.Delete, _delete),
    (exp.Select, _select),
    (exp.SetOperation, _select),
    (exp.Values, _not_intercepted(Kind.SELECT)),
    (exp.Subquery, _select),
    (exp.TruncateTable, _refused(_REFUSED_WORDS["TRUNCATE"])),
    (exp.Merge, _refused(_REFUSED_WORDS["MERGE"])),
    (exp.Copy, _refused(_REFUSED_WORDS["COPY"])),
    (exp.Create, _not_intercepted(Kind.DDL)),
    (exp.Drop, _not_intercepted(Kind.DDL)),
    (exp.Alter, _not_intercepted(Kind.DDL)),
    (exp.Command, _command),
    (exp.Transaction, _not_intercepted(Kind.OTHER)),
    (exp.Commit, _not_intercepted(Kind.OTHER)),
    (exp.Rollback, _not_intercepted(Kind.OTHER)),
    (exp.Set, _not_intercepted(Kind.OTHER)),
    (exp.Use, _not_intercepted(Kind.OTHER)),
    (exp.Pragma, _not_intercepted(Kind.OTHER)),
    (exp.Describe, _not_intercepted(Kind.OTHER)),
)

