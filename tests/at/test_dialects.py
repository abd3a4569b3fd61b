"""Where placeholders and statement separators can be, per dialect and paramstyle; type codes."""

from __future__ import annotations

import pytest

from pyseata.at.dialects import (
    JavaType,
    Paramstyle,
    code_spans,
    get_dialect,
    has_several_statements,
    scan_parameters,
)
from pyseata.at.errors import SQLNotSupportedError

SCANS: list[tuple[str, str, str, list[int | str]]] = [
    # dialect, style, SQL, the parameter keys found in order
    ("sqlite", "qmark", "SELECT '?', \"?\", `?`, [?] FROM t WHERE a = ? -- ?\n AND b = ? /* ? */", [0, 1]),
    ("sqlite", "named", "UPDATE t SET a = :a WHERE b = ':no' AND c = :c_1", ["a", "c_1"]),
    ("postgres", "dollar", "SELECT $1::int, $tag$ $2 $tag$, $$ $3 $$, E'\\' $4', '$5' FROM t WHERE a = $2", [0, 1]),
    ("postgres", "dollar", "SELECT a$1 FROM t /* $1 /* nested $1 */ still $1 */ WHERE b = $10", [9]),
    ("postgres", "numeric", "SELECT a::text FROM t WHERE b = :2 AND c = :1", [1, 0]),
    ("mysql", "qmark", "SELECT 'it\\'s ?' FROM t # ?\nWHERE a = ? AND b = \"?\" AND c = `?`", [0]),
    ("mysql", "qmark", "SELECT a--?\nFROM t WHERE b = ?", [0, 1]),  # "--" without a space is minus minus
    ("mysql", "format", "SELECT '%s', a %% 2 FROM t WHERE b = %s", [0, 1]),  # drivers substitute inside literals
    ("postgres", "pyformat", "SELECT %(a)s, %(b)s, %(a)s, %(b)b", ["a", "b", "a", "b"]),
]


@pytest.mark.parametrize(("dialect", "style", "sql", "keys"), SCANS, ids=[f"{s[0]}-{s[1]}-{i}" for i, s in
                                                                        enumerate(SCANS)])
def test_placeholders(dialect: str, style: str, sql: str, keys: list[int | str]) -> None:
    scan = scan_parameters(sql, get_dialect(dialect), style)
    assert [p.key for p in scan.placeholders] == keys
    assert all(sql[p.start : p.end] == p.text for p in scan.placeholders)


def test_percent_escapes_are_recorded() -> None:
    scan = scan_parameters("SELECT 'a%%', 5 %% 2 WHERE x = %s", get_dialect("mysql"), Paramstyle.FORMAT)
    assert scan.escapes == (9, 16) and [p.start for p in scan.placeholders] == [31]


def test_no_parameters_means_no_scanning() -> None:
    assert scan_parameters("SELECT '50%' WHERE a = ?", get_dialect("mysql"), None).placeholders == ()


@pytest.mark.parametrize(("sql", "several"), [
    ("UPDATE t SET a = 1", False),
    ("UPDATE t SET a = 1;", False),
    ("UPDATE t SET a = 1; -- done", False),
    ("UPDATE t SET a = ';'", False),
    ("UPDATE t SET a = 1; UPDATE t SET a = 2", True),
    ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql", False),
])
def test_several_statements(sql: str, several: bool) -> None:
    assert has_several_statements(sql, get_dialect("postgres")) is several


def test_unterminated_literal_runs_to_the_end() -> None:
    d = get_dialect("postgres")
    assert code_spans("SELECT 'abc", d) == [(0, 7)]
    assert code_spans("SELECT 1 /* open", d) == [(0, 9)]


def test_unknown_dialect_is_named() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'oracle'"):
        get_dialect("oracle")


def test_bad_percent_placeholder() -> None:
    with pytest.raises(SQLNotSupportedError, match="%d"):
        scan_parameters("SELECT %d", get_dialect("mysql"), "format")


@pytest.mark.parametrize(("dialect", "type_name", "code"), [
    ("mysql", "bigint(20) unsigned", JavaType.BIGINT),
    ("mysql", "tinyint(1)", JavaType.BIT),
    ("mysql", "decimal(10,2)", JavaType.DECIMAL),
    ("mysql", "datetime(6)", JavaType.TIMESTAMP),
    ("mysql", "longblob", JavaType.LONGVARBINARY),
    ("mariadb", "json", JavaType.LONGVARCHAR),
    ("postgres", "int4", JavaType.INTEGER),
    ("postgres", "timestamptz", JavaType.TIMESTAMP),
    ("postgres", "_int4", JavaType.ARRAY),
    ("postgres", "jsonb", JavaType.OTHER),
    ("postgres", "bytea", JavaType.BINARY),
    ("sqlite", "VARCHAR(20)", JavaType.VARCHAR),
    ("sqlite", "BIGINT", JavaType.BIGINT),
    ("sqlite", "DOUBLE PRECISION", JavaType.DOUBLE),
    ("sqlite", "", JavaType.BLOB),
    ("sqlite", "DECIMAL(10,2)", JavaType.NUMERIC),
])
def test_java_type_codes(dialect: str, type_name: str, code: JavaType) -> None:
    assert get_dialect(dialect).java_type(type_name) is code
