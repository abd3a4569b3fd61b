"""Hostile SQL for the AT recogniser, per dialect: random text, mutated real statements (the corpora
of test_recognizer) and generated DML shapes either come back as a recognised Statement whose
fragments are the statement's own text, or raise SQLNotSupportedError quoting the statement; never
an IndexError, KeyError, AttributeError or a sqlglot error of its own.

Bugs of the recogniser that are known go in ``KNOWN_BUGS`` (the properties let exactly those
through); the ones the fuzzers found are fixed, and ``FIXED_BUGS`` keeps them refused clearly.
"""

from __future__ import annotations

import traceback

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyseata.at.dialects import Paramstyle
from pyseata.at.errors import SQLNotSupportedError
from pyseata.at.recognizer import Fragment, Kind, Statement, recognize

from .test_recognizer import CORPUS, REFUSED, REFUSED_WITH_META

FUZZ = settings(max_examples=250, deadline=None)
DIALECTS = ("mysql", "postgres", "sqlite")
STYLES = (None, *(s.value for s in Paramstyle))
SEEDS: list[tuple[str, str, str | None]] = sorted(
    {(c.dialect, c.sql, c.style) for c in CORPUS}
    | {(d, sql, style) for d, sql, style, _ in REFUSED + REFUSED_WITH_META},
    key=repr,
)

# Known recogniser bugs, each as (exception type, a function its traceback passes through). Until they
# are fixed, recognize() raising exactly these is tolerated by the properties; anything else fails.
KNOWN_BUGS: list[tuple[type[BaseException], str, str]] = []  # none known

# Bugs found by the fuzzer and fixed; each must stay a clear refusal.
FIXED_BUGS: list[str] = [
    "INSERT INTO t (1) VALUES (1)",  # _insert(): a column list item that is not a name
    "INSERT INTO t VALUES (3E)",  # _number(): a numeric literal Decimal cannot read
    "{ : }",  # _parse(): sqlglot's parser raised AttributeError
    "SELECT " + "{" * 60,  # atheris (fuzz/fuzz_sql.py): RecursionError in sqlglot's parser
    "UPDATE t SET a = " + "(" * 2000 + "1" + ")" * 2000 + " WHERE id = 1",
]


def _known_bug(exc: BaseException) -> bool:
    frames = {frame.name for frame in traceback.extract_tb(exc.__traceback__)}
    return any(isinstance(exc, kind) and where in frames for kind, where, _ in KNOWN_BUGS)


def _fragment_is_own_text(stmt: Statement, fragment: Fragment | None) -> None:
    if fragment is None:
        return
    assert 0 <= fragment.start <= stmt.end <= len(stmt.sql)
    assert stmt.sql[fragment.start : fragment.start + len(fragment.sql)] == fragment.sql, fragment
    for p in fragment.placeholders:
        assert fragment.start <= p.start < p.end <= fragment.start + len(fragment.sql)
        assert stmt.sql[p.start : p.end] == p.text


def outcome(sql: str, dialect: str, style: str | None) -> Statement | SQLNotSupportedError | None:
    """Recognises ``sql`` and checks the result; None for a known bug."""
    try:
        stmt = recognize(sql, dialect, style)
    except SQLNotSupportedError as exc:
        assert exc.sql == sql
        message = str(exc)
        assert message.startswith("AT mode cannot run this statement safely: ")
        assert exc.reason.strip() and exc.reason in message
        assert " ".join(sql.split())[:40] in message  # it quotes the statement
        return exc
    except Exception as exc:
        if _known_bug(exc):
            return None
        raise
    assert isinstance(stmt, Statement) and stmt.sql == sql
    assert 0 < stmt.end <= len(sql)
    if stmt.intercepted:
        assert stmt.table is not None and stmt.table.name.text
    for fragment in (stmt.where, stmt.order_by, stmt.limit, stmt.returning, stmt.select_from):
        _fragment_is_own_text(stmt, fragment)
    for row in stmt.rows:
        for value in row:
            _fragment_is_own_text(stmt, value.fragment)
    assignments = stmt.assignments + (stmt.conflict.assignments if stmt.conflict else ())
    for assignment in assignments:
        assert assignment.columns
        _fragment_is_own_text(stmt, assignment.value)
    return stmt


# --- random text ----------------------------------------------------------------------------------

WORDS = ["SELECT", "INSERT", "INTO", "VALUES", "VALUE", "UPDATE", "SET", "DELETE", "FROM", "WHERE", "ORDER BY",
         "LIMIT", "OFFSET", "FOR UPDATE", "FOR SHARE", "ON", "CONFLICT", "DUPLICATE KEY UPDATE", "DO", "NOTHING",
         "RETURNING", "WITH", "AS", "ONLY", "JOIN", "USING", "IGNORE", "OR", "DEFAULT", "NULL", "EXPLAIN", "UNION",
         "OVERRIDING", "SYSTEM", "USER", "t", "a", "b", "1", "-1", "1.5", "1e3", "'x'", "''", "x'0f'", "E'\\''",
         "(", ")", ",", "=", "*", ";", ".", "%s", "%(n)s", "%%", "?", ":n", ":1", "$1", "$$", "$q$x$q$", "--",
         "/*", "*/", "#", "`t`", '"t"', "[t]", "@v", "::int", "[", "]", "{", "}", "\n", "\u00e9", "\x00"]


@FUZZ
@given(st.sampled_from(DIALECTS), st.sampled_from(STYLES),
       st.lists(st.sampled_from(WORDS), max_size=16).map(" ".join) | st.text(max_size=60))
@example("postgres", None, "UPDATE t SET a = WHERE")
@example("mysql", None, "")
def test_random_text(dialect: str, style: str | None, sql: str) -> None:
    outcome(sql, dialect, style)


# --- mutated real statements ----------------------------------------------------------------------

PIECES = [*WORDS, " ", "'", '"', "`", "\\", "%", ":", "$", "?", "e", "E", "0x", "\t"]


@FUZZ
@given(st.sampled_from(SEEDS), st.sampled_from(DIALECTS), st.sampled_from(STYLES), st.data())
def test_mutated_statements(seed: tuple[str, str, str | None], dialect: str, style: str | None,
                            data: st.DataObject) -> None:
    own_dialect, sql, own_style = seed
    dialect = data.draw(st.sampled_from([own_dialect.replace("mariadb", "mysql"), dialect]), label="dialect")
    style = data.draw(st.sampled_from([own_style, style]), label="style")
    chars = list(sql)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(chars)), label="at")
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]), label="action")
        if action == "delete":
            del chars[at : at + data.draw(st.integers(1, 12))]
        elif action == "insert":
            chars[at:at] = data.draw(st.sampled_from(PIECES) | st.text(max_size=2)) + " "
        elif action == "replace" and at < len(chars):
            chars[at] = data.draw(st.sampled_from(PIECES))
        else:
            begin = data.draw(st.integers(0, len(chars)))
            chars[at:at] = chars[begin : begin + data.draw(st.integers(1, 20))]
    outcome("".join(chars), dialect, style)


# --- generated DML shapes -------------------------------------------------------------------------

PLACEHOLDERS = {None: ["1"], "format": ["%s"], "pyformat": ["%(p)s", "%(q)s"], "qmark": ["?"],
                "named": [":p", ":q"], "dollar": ["$1", "$2"], "numeric": [":1"]}
QUOTES = {"mysql": "`{}`", "postgres": '"{}"', "sqlite": '"{}"'}
UPSERTS = {  # "verb|tail" around INSERT's "INTO ... VALUES ..."
    "mysql": ["INSERT| ON DUPLICATE KEY UPDATE {c} = VALUES({c})", "INSERT IGNORE|",
              "INSERT| ON DUPLICATE KEY UPDATE {c} = {c} + 1"],
    "postgres": ["INSERT| ON CONFLICT ({c}) DO UPDATE SET {c} = EXCLUDED.{c}", "INSERT| ON CONFLICT DO NOTHING",
                 "INSERT| ON CONFLICT ON CONSTRAINT k DO NOTHING"],
    "sqlite": ["INSERT| ON CONFLICT ({c}) DO UPDATE SET {c} = excluded.{c}", "INSERT OR IGNORE|",
               "INSERT| ON CONFLICT DO NOTHING"],
}


@st.composite
def shapes(draw: st.DrawFn) -> tuple[str, str, str | None, Kind, str]:
    """A well-formed single-table DML statement, its dialect and style, the kind it is, its table."""
    dialect = draw(st.sampled_from(DIALECTS))
    style = draw(st.sampled_from(["format", "pyformat"] if dialect == "mysql" else
                                 ["format", "pyformat", "dollar"] if dialect == "postgres" else ["qmark", "named"]))
    style = draw(st.sampled_from([style, None]))
    names = st.sampled_from(["t", "orders", "a", "b", "c", "id", "qty", "\u00e9t\u00e9", "x1"])
    table = draw(names)
    written = draw(st.sampled_from([table, QUOTES[dialect].format(table), f"s.{table}"]))
    params = PLACEHOLDERS[style]
    value = st.one_of(st.sampled_from(params), st.integers(-(10**20), 10**20).map(str),
                      st.sampled_from(["NULL", "'it''s'", "1.5", "-2", "1e3", "x'0a'", "(1 + 2)", "lower('A')"]))
    columns = draw(st.lists(names.filter(lambda n: n != table), min_size=1, max_size=4, unique=True))
    where = draw(st.sampled_from(["", " WHERE id = {v}", " WHERE a > {v} AND b LIKE 'x%%'",
                                  " WHERE (a, b) IN (({v}, 2))", " WHERE id IN (SELECT id FROM u WHERE c = {v})"]))
    if style not in ("format", "pyformat"):
        where = where.replace("%%", "%")
    where = where.format(v=draw(value))
    kind = draw(st.sampled_from([Kind.INSERT, Kind.UPSERT, Kind.UPDATE, Kind.DELETE, Kind.SELECT_FOR_UPDATE]))
    if kind in (Kind.INSERT, Kind.UPSERT):
        rows = draw(st.lists(st.lists(value, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=3))
        verb = "INSERT"
        tail = ""
        if kind is Kind.UPSERT:
            column = columns[0]
            verb, tail = draw(st.sampled_from(UPSERTS[dialect])).format(c=column).split("|")
        sql = (f"{verb} INTO {written} ({', '.join(columns)}) VALUES "
               + ", ".join("(" + ", ".join(row) + ")" for row in rows) + tail)
    elif kind is Kind.UPDATE:
        sets = ", ".join(f"{c} = {draw(value)}" for c in columns)
        sql = f"UPDATE {written} SET {sets}{where}"
    elif kind is Kind.DELETE:
        sql = f"DELETE FROM {written}{where}"
    else:
        sql = f"SELECT {', '.join(columns)} FROM {written}{where} FOR UPDATE"
    if dialect == "postgres" and kind is not Kind.SELECT_FOR_UPDATE:
        sql += draw(st.sampled_from(["", " RETURNING *"]))
    sql += draw(st.sampled_from(["", ";", " ;  ", " -- done", " /* done */"]))
    if style is None:
        sql = sql.replace("%%", "%")
    return sql, dialect, style, kind, table


@FUZZ
@given(shapes())
@example(("UPDATE t SET a = %s WHERE id = %s", "mysql", "format", Kind.UPDATE, "t"))
def test_generated_statements_are_recognised(shape: tuple[str, str, str | None, Kind, str]) -> None:
    sql, dialect, style, kind, table = shape
    result = outcome(sql, dialect, style)
    if result is None:  # a known bug
        return
    assert isinstance(result, Statement), f"{sql!r} ({dialect}, {style}) refused: {result}"
    assert result.kind is kind
    assert result.table is not None and result.table.name.text == table


# --- the fixed bugs, still refused ----------------------------------------------------------------


@pytest.mark.parametrize("sql", FIXED_BUGS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_fixed_bug_gives_a_clear_error(dialect: str, sql: str) -> None:
    with pytest.raises(SQLNotSupportedError):
        recognize(sql, dialect)


def test_the_checks_can_fail() -> None:
    with pytest.raises(AssertionError):
        _fragment_is_own_text(recognize("DELETE FROM t WHERE a = 1", "mysql"), Fragment("a = 2", 21))
    with pytest.raises(ValueError, match="not a valid Paramstyle"):
        outcome("DELETE FROM t", "mysql", "no such style")  # not a known bug: it propagates
