"""Image queries run on real databases, TableRecords built from their rows, and the exact diff."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pyseata.at.dialects import JavaType, get_dialect
from pyseata.at.images import (
    MISSING,
    Field,
    KeySource,
    KeyType,
    Row,
    TableRecords,
    before_image,
    conflict_probe,
    diff_records,
    format_diff,
    insert_keys,
    inserted_rows,
    same_value,
    select_by_keys,
    with_returning,
)
from pyseata.at.meta import ColumnMeta, TableMeta, read_table_meta
from pyseata.at.recognizer import recognize

from .conftest import Db

SCHEMA = {
    "sqlite": "CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, b VARCHAR(20) UNIQUE, c INT DEFAULT 0)",
    "postgres": "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, a INT, b VARCHAR(20) UNIQUE, c INT DEFAULT 0)",
    "mariadb": "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, a INT, b VARCHAR(20) UNIQUE, "
               "c INT DEFAULT 0)",
}
ORDER_ITEMS = (
    "CREATE TABLE oi (item_id INT NOT NULL, order_id BIGINT NOT NULL, qty INT, PRIMARY KEY (order_id, item_id))"
)


def _setup(db: Db) -> TableMeta:
    db.run(SCHEMA[db.kind])
    for i in range(1, 6):
        db.run(f"INSERT INTO t (id, a, b, c) VALUES ({i}, {i * 10}, 'b{i}', {i % 2})")
    if db.kind == "postgres":  # explicit ids do not move the sequence
        db.run("SELECT setval(pg_get_serial_sequence('t', 'id'), 5)")
    return read_table_meta(db.conn, db.dialect, "t")


def _records(db: Db, meta: TableMeta, sql: str, params: Any) -> TableRecords:
    columns, rows = db.query(sql, params)
    return TableRecords.from_rows(meta, columns, rows)


def _by_keys(db: Db, meta: TableMeta, keys: list[tuple[Any, ...]]) -> TableRecords:
    rows: list[tuple[Any, ...]] = []
    columns: list[str] = []
    for sql, params in select_by_keys(meta, keys, db.style):
        columns, found = db.query(sql, params)
        rows += found
    return TableRecords.from_rows(meta, columns or list(meta.column_names), rows)


def test_update_images_cover_exactly_the_changed_rows(db: Db) -> None:
    meta = _setup(db)
    sql = f"UPDATE t SET a = a + {db.p} WHERE c = {db.p} AND b <> 'b%'"
    sql = sql.replace("'b%'", "'b%%'") if db.style.percent else sql
    params = [7, 1]
    stmt = recognize(sql, db.dialect, db.style)
    query = before_image(stmt, meta)
    assert query is not None
    before = _records(db, meta, query.sql, query.bind(params))
    assert sorted(before.primary_keys()) == [(1,), (3,), (5,)]
    db.run(sql, params)
    after = _by_keys(db, meta, before.primary_keys())
    diffs = diff_records(before, after)
    assert [(d.key, [c.column for c in d.columns]) for d in diffs] == [((1,), ["a"]), ((3,), ["a"]), ((5,), ["a"])]
    assert [c.actual - c.expected for d in diffs for c in d.columns] == [7, 7, 7]


def test_delete_before_image_with_named_parameters(db: Db) -> None:
    meta = _setup(db)
    marker = ":lo" if db.kind == "sqlite" else "%(lo)s"
    style = "named" if db.kind == "sqlite" else "pyformat"
    sql = f"DELETE FROM t WHERE id >= {marker}"
    stmt = recognize(sql, db.dialect, style)
    query = before_image(stmt, meta)
    assert query is not None
    before = _records(db, meta, query.sql, query.bind({"lo": 4, "unused": 0}))
    db.run(sql, {"lo": 4})
    assert sorted(before.primary_keys()) == [(4,), (5,)]
    assert len(_by_keys(db, meta, before.primary_keys())) == 0


def test_inserted_rows_by_their_given_keys(db: Db) -> None:
    meta = _setup(db)
    sql = f"INSERT INTO t (id, a, b) VALUES ({db.p}, {db.p}, 'x'), (42, 1, 'y')"
    stmt = recognize(sql, db.dialect, db.style)
    assert insert_keys(stmt, meta) is KeySource.VALUES
    db.run(sql, [41, 2])
    query = inserted_rows(stmt, meta)
    assert query is not None
    after = _records(db, meta, query.sql, query.bind([41, 2]))
    assert sorted(after.primary_keys()) == [(41,), (42,)]


def test_generated_keys_by_lastrowid_or_returning(db: Db) -> None:
    meta = _setup(db)
    stmt = recognize(f"INSERT INTO t (a, b) VALUES ({db.p}, {db.p})", db.dialect, db.style)
    assert insert_keys(stmt, meta) is KeySource.AUTO_INCREMENT
    sql, width = with_returning(stmt, meta)
    rows = db.run(sql, [99, "new"])
    keys = [tuple(r[:width]) for r in rows]
    assert len(keys) == 1 and keys[0][0] > 5
    after = _by_keys(db, meta, keys)
    assert after.rows[0]["b"] == "new"
    if db.kind != "postgres":  # sqlite3 and PyMySQL also report the key as lastrowid
        cursor = db.conn.cursor()
        cursor.execute(stmt.sql, [98, "newer"])
        assert cursor.lastrowid == keys[0][0] + 1


def test_upsert_probe_finds_the_row_it_will_update(db: Db) -> None:
    meta = _setup(db)
    sql = {
        "mariadb": "INSERT INTO t (id, a, b) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE a = VALUES(a)",
        "postgres": "INSERT INTO t (id, a, b) VALUES (%s, %s, %s) ON CONFLICT (b) DO UPDATE SET a = EXCLUDED.a",
        "sqlite": "INSERT INTO t (id, a, b) VALUES (?, ?, ?) ON CONFLICT (b) DO UPDATE SET a = excluded.a",
    }[db.kind]
    params = [77, 1234, "b3"]  # id 77 is new, b3 belongs to row 3
    stmt = recognize(sql, db.dialect, db.style)
    probe = conflict_probe(stmt, meta)
    assert probe is not None
    before = _records(db, meta, probe.sql, probe.bind(params))
    assert before.primary_keys() == [(3,)]
    db.run(sql, params)
    after = _records(db, meta, probe.sql, probe.bind(params))
    assert [(d.key, [(c.column, c.actual) for c in d.columns]) for d in diff_records(before, after)] == [
        ((3,), [("a", 1234)])
    ]


def test_select_for_update_reads_the_locked_keys(db: Db) -> None:
    meta = _setup(db)
    stmt = recognize(f"SELECT a, b FROM t WHERE a > {db.p} ORDER BY id LIMIT 2 FOR UPDATE",
                     db.dialect, db.style) if db.kind != "sqlite" else None
    if stmt is None:  # SQLite has no FOR UPDATE: a plain SELECT
        assert recognize("SELECT a FROM t WHERE a > ? ORDER BY id", "sqlite", "qmark").intercepted is False
        return
    query = before_image(stmt, meta)
    assert query is not None
    assert db.run(query.sql, query.bind([15])) == [(2,), (3,)]


def test_composite_keys_in_key_order(db: Db) -> None:
    db.run(ORDER_ITEMS)
    db.run("INSERT INTO oi VALUES (1, 100, 5), (2, 100, 6), (1, 200, 7)")
    meta = read_table_meta(db.conn, db.dialect, "oi")
    records = _by_keys(db, meta, [(100, 2), (200, 1)])
    assert sorted(records.primary_keys()) == [(100, 2), (200, 1)]
    assert [f.key_type for f in records.rows[0].fields] == [KeyType.PRIMARY_KEY, KeyType.PRIMARY_KEY, KeyType.NULL]


def test_select_by_keys_chunks_long_key_lists(db: Db) -> None:
    meta = _setup(db)
    queries = select_by_keys(meta, [(i,) for i in range(2500)], db.style)
    assert len(queries) == 3
    assert sum(len(db.run(sql, params)) for sql, params in queries) == 5


# --- diff and exact comparison ----------------------------------------------------------------------

SAME = [
    (1, 1), (None, None), ("a", "a"), (b"\x00", b"\x00"), (float("nan"), float("nan")), (0.1, 0.1),
    (Decimal("1.50"), Decimal("1.50")), (Decimal("NaN"), Decimal("NaN")),
    (datetime(2024, 1, 1, 12, tzinfo=UTC), datetime(2024, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))),
    ({"a": [1, 2.0]}, {"a": [1, 2.0]}), ([1, None], [1, None]),
]
DIFFERENT = [
    (1, 1.0), (True, 1), (0.0, -0.0), (Decimal("1.5"), Decimal("1.50")), (1, None), ("a", b"a"),
    (datetime(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC)), (datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 0, 1)),
    (time(1, tzinfo=UTC), time(2, tzinfo=timezone(timedelta(hours=1)))), ({"a": 1}, {"a": 1.0}), ([1], [True]),
    (float("nan"), 0.0),
]


@pytest.mark.parametrize(("a", "b"), SAME, ids=[repr(p) for p in SAME])
def test_same_value(a: Any, b: Any) -> None:
    assert same_value(a, b) and same_value(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=[repr(p) for p in DIFFERENT])
def test_different_value(a: Any, b: Any) -> None:
    assert not same_value(a, b) and not same_value(b, a)


def _image(*rows: tuple[Any, ...]) -> TableRecords:
    def row(values: tuple[Any, ...]) -> Row:
        names = ("id", "a", "b")
        return Row(tuple(Field(n, JavaType.INTEGER, v, KeyType.PRIMARY_KEY if n == "id" else KeyType.NULL)
                         for n, v in zip(names, values, strict=True)))

    return TableRecords("t_order", ("id",), tuple(row(r) for r in rows))


def test_diff_names_every_row_and_column_that_differs() -> None:
    after = _image((1, 10, "x"), (2, 20, "y"), (3, 30, "z"))
    now = _image((1, 10, "x"), (2, 21, "Y"), (4, 40, "w"))
    diffs = diff_records(after, now)
    assert [(d.key, d.change) for d in diffs] == [((2,), "changed"), ((3,), "missing"), ((4,), "extra")]
    assert format_diff(diffs).splitlines() == [
        "row t_order(id=2): a: after image 20, now 21; b: after image 'y', now 'Y'",
        "row t_order(id=3): in the after image, but no longer there",
        "row t_order(id=4): there now, but not in the after image",
    ]
    assert diff_records(after, after) == ()


def test_diff_reports_a_column_that_disappeared() -> None:
    expected = _image((1, 10, "x"))
    narrower = TableRecords("t_order", ("id",), (Row(expected.rows[0].fields[:2]),))
    (diff,) = diff_records(expected, narrower)
    assert diff.columns[0].column == "b" and diff.columns[0].actual is MISSING


def test_rows_are_matched_by_exact_key() -> None:
    a = TableRecords("t", ("k",), (Row((Field("k", JavaType.DECIMAL, Decimal("1.0"), KeyType.PRIMARY_KEY),)),))
    b = TableRecords("t", ("k",), (Row((Field("k", JavaType.DECIMAL, Decimal("1.00"), KeyType.PRIMARY_KEY),)),))
    assert [d.change for d in diff_records(a, b)] == ["missing", "extra"]


def test_image_rows_need_the_key_and_known_columns() -> None:
    d = get_dialect("sqlite")
    columns = (ColumnMeta("id", "INTEGER", JavaType.BIGINT), ColumnMeta("v", "REAL", JavaType.DOUBLE))
    meta = TableMeta(d, None, "t", columns, ("id",))
    records = TableRecords.from_rows(meta, ["ID", "v"], [(1, math.pi), (2, None)])  # SQLite's names are case-blind
    assert records.rows[0].field("id") == Field("id", JavaType.BIGINT, 1, KeyType.PRIMARY_KEY)
    assert records.rows[1]["v"] is None
    with pytest.raises(LookupError, match="lacks primary key"):
        TableRecords.from_rows(meta, ["v"], [(1.0,)])
    with pytest.raises(LookupError, match="no column 'w'"):
        TableRecords.from_rows(meta, ["id", "w"], [(1, 2)])
    assert TableRecords.from_rows(meta, ["id", "v"], [(memoryview(b"1"), 0.0)]).rows[0]["id"] == b"1"
