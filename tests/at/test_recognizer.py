"""Recognition corpora per dialect: statement -> kind, table, keys, image SQL; and the refusals.

Each row of ``CORPUS`` is one statement as an application would send it (with the driver's
paramstyle) and what AT mode must make of it, against the tables of ``META``: ``t`` (generated key
``id``, unique ``b``) and ``oi`` (composite key ``order_id, item_id``, declared in the other order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pyseata.at.dialects import JavaType, get_dialect
from pyseata.at.errors import SQLNotSupportedError
from pyseata.at.images import KeySource, before_image, check, insert_keys, inserted_rows, with_returning
from pyseata.at.meta import ColumnMeta, TableMeta, UniqueKey
from pyseata.at.recognizer import Kind, ValueKind, recognize


def _meta(dialect: str, name: str) -> TableMeta:
    d = get_dialect(dialect)
    schema = {"postgres": "public", "sqlite": "main"}.get(d.name, "test")
    if name == "t":
        columns = (
            ColumnMeta("id", "bigint", JavaType.BIGINT, False, None, True),
            ColumnMeta("a", "int", JavaType.INTEGER),
            ColumnMeta("b", "varchar(20)", JavaType.VARCHAR),
            ColumnMeta("c", "int", JavaType.INTEGER, True, "0"),
        )
        return TableMeta(d, schema, "t", columns, ("id",), (UniqueKey("t_b_key", ("b",)),), "t_pkey")
    columns = (
        ColumnMeta("item_id", "int", JavaType.INTEGER, False),
        ColumnMeta("order_id", "bigint", JavaType.BIGINT, False),
        ColumnMeta("qty", "int", JavaType.INTEGER),
    )
    return TableMeta(d, schema, "oi", columns, ("order_id", "item_id"), (), "oi_pkey")


@dataclass(frozen=True)
class Case:
    dialect: str
    sql: str
    kind: Kind
    style: str | None = None
    table: str | None = None  # as written: [schema.]name
    before: str | None = None  # the before-image query
    params: Any = None  # the statement's parameters
    bound: Any = None  # the before-image query's parameters
    keys: KeySource | None = None
    inserted: str | None = None  # the query for the inserted rows


T = "`id`, `a`, `b`, `c`"
TQ = '"id", "a", "b", "c"'
OI = '"item_id", "order_id", "qty"'

CORPUS: list[Case] = [
    # --- MySQL / MariaDB ---------------------------------------------------------------------------
    Case("mysql", "INSERT INTO t (id, a, b) VALUES (%s, %s, %s)", Kind.INSERT, "format", "t",
         keys=KeySource.VALUES, inserted=f"SELECT {T} FROM `test`.`t` WHERE `id` IN (%s)"),
    Case("mysql", "INSERT INTO t VALUES (1, 2, 'x', 3), (4, 5, 'y', 6)", Kind.INSERT, None, "t",
         keys=KeySource.VALUES, inserted=f"SELECT {T} FROM `test`.`t` WHERE `id` IN (1, 4)"),
    Case("mysql", "insert into t (a, b) values (%s, %s), (%s, %s)", Kind.INSERT, "format", "t",
         keys=KeySource.AUTO_INCREMENT),
    Case("mysql", "INSERT INTO t (id, a) VALUES (NULL, 1)", Kind.INSERT, None, "t", keys=KeySource.AUTO_INCREMENT),
    Case("mysql", "INSERT INTO t VALUE (8, 1, 'v', 0)", Kind.INSERT, None, "t", keys=KeySource.VALUES,
         inserted=f"SELECT {T} FROM `test`.`t` WHERE `id` IN (8)"),
    Case("mysql", "INSERT INTO t SET a = %(a)s, b = %(b)s", Kind.INSERT, "pyformat", "t",
         keys=KeySource.AUTO_INCREMENT),
    Case("mysql", "INSERT INTO `test`.`oi` (`qty`, `item_id`, `order_id`) VALUES (%s, %s, %s)", Kind.INSERT,
         "format", "test.oi", keys=KeySource.VALUES,
         inserted="SELECT `item_id`, `order_id`, `qty` FROM `test`.`oi` WHERE (`order_id`, `item_id`) IN ((%s, %s))"),
    Case("mysql", "UPDATE `test`.`t` SET `a` = %s WHERE `id` = %s", Kind.UPDATE, "format", "test.t",
         before=f"SELECT {T} FROM `test`.`t` WHERE `id` = %s FOR UPDATE", params=[1, 2], bound=[2]),
    Case("mysql", "UPDATE t SET a = a + 1 WHERE b LIKE 'x%%' AND c > %s ORDER BY id DESC LIMIT %s", Kind.UPDATE,
         "format", "t", before=f"SELECT {T} FROM t WHERE b LIKE 'x%%' AND c > %s ORDER BY id DESC LIMIT %s FOR UPDATE",
         params=[7, 2], bound=[7, 2]),
    Case("mysql", "UPDATE t SET a = %(a)s WHERE id = %(id)s # set a", Kind.UPDATE, "pyformat", "t",
         before=f"SELECT {T} FROM t WHERE id = %(id)s FOR UPDATE", params={"a": 1, "id": 9, "x": 0}, bound={"id": 9}),
    Case("mysql", "UPDATE t SET b = 'a;b' WHERE b = '50%'", Kind.UPDATE, None, "t",
         before=f"SELECT {T} FROM t WHERE b = '50%' FOR UPDATE", bound=None),
    Case("mysql", "DELETE FROM t WHERE id IN (SELECT x FROM u WHERE y = %s) ORDER BY id LIMIT 10", Kind.DELETE,
         "format", "t", before=f"SELECT {T} FROM t WHERE id IN (SELECT x FROM u WHERE y = %s) ORDER BY id LIMIT 10 "
         "FOR UPDATE", params=[3], bound=[3]),
    Case("mysql", "DELETE FROM t", Kind.DELETE, None, "t", before=f"SELECT {T} FROM t FOR UPDATE"),
    Case("mysql", "SELECT a FROM t WHERE id = %s FOR UPDATE", Kind.SELECT_FOR_UPDATE, "format", "t",
         before="SELECT `id` FROM t WHERE id = %s FOR UPDATE", params=[5], bound=[5]),
    Case("mysql", "INSERT INTO t (id, a, b) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE a = VALUES(a)",
         Kind.UPSERT, "format", "t",
         before=f"SELECT {T} FROM `test`.`t` WHERE (`id` = %s) OR (`b` = %s) FOR UPDATE", params=[1, 2, "q"],
         bound=[1, "q"]),
    Case("mysql", "INSERT INTO t (a, b) VALUES (1, 'k') ON DUPLICATE KEY UPDATE a = a + 1", Kind.UPSERT, None, "t",
         before=f"SELECT {T} FROM `test`.`t` WHERE (`b` = 'k') FOR UPDATE"),
    Case("mysql", "INSERT IGNORE INTO t (id, a) VALUES (%s, %s)", Kind.UPSERT, "format", "t",
         before=f"SELECT {T} FROM `test`.`t` WHERE (`id` = %s) FOR UPDATE", params=[4, 5], bound=[4]),
    Case("mysql", "SELECT * FROM t WHERE id = %s", Kind.SELECT, "format"),
    Case("mysql", "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE", Kind.SELECT),
    Case("mysql", "SHOW TABLES", Kind.OTHER),
    Case("mysql", "SET autocommit = 0", Kind.OTHER),
    Case("mysql", "START TRANSACTION", Kind.OTHER),
    Case("mysql", "CREATE TABLE x (id INT PRIMARY KEY)", Kind.DDL),
    Case("mysql", "ALTER TABLE t ADD COLUMN d INT", Kind.DDL),
    Case("mariadb", "DELETE FROM t WHERE id = %s RETURNING id", Kind.DELETE, "format", "t",
         before=f"SELECT {T} FROM t WHERE id = %s FOR UPDATE", params=[1], bound=[1]),
    # --- PostgreSQL --------------------------------------------------------------------------------
    Case("postgres", "INSERT INTO t (a, b) VALUES (%s, %s) RETURNING id", Kind.INSERT, "format", "t",
         keys=KeySource.AUTO_INCREMENT),
    Case("postgres", "INSERT INTO t DEFAULT VALUES", Kind.INSERT, None, "t", keys=KeySource.AUTO_INCREMENT),
    Case("postgres", "INSERT INTO public.t (id, a) VALUES (%(id)s, 1), (%(id2)s, 2)", Kind.INSERT, "pyformat",
         "public.t", keys=KeySource.VALUES,
         inserted=f'SELECT {TQ} FROM "public"."t" WHERE "id" IN (%(id)s, %(id2)s)'),
    Case("postgres", "INSERT INTO t (id, a) VALUES (nextval('s'), 1)", Kind.INSERT, None, "t",
         keys=KeySource.RETURNING),
    Case("postgres", 'UPDATE "public"."t" SET "a" = $1 WHERE "id" = $2 OR c = $2', Kind.UPDATE, "dollar",
         "public.t", before=f'SELECT {TQ} FROM "public"."t" WHERE "id" = $1 OR c = $1 FOR UPDATE', params=[10, 20],
         bound=[20]),
    Case("postgres", "UPDATE ONLY t AS x SET (a, c) = (%s, %s) WHERE x.id = %s RETURNING *", Kind.UPDATE, "format",
         "t", before=f"SELECT {TQ} FROM ONLY t AS x WHERE x.id = %s FOR UPDATE", params=[1, 2, 3], bound=[3]),
    Case("postgres", "UPDATE t SET b = $tag$it's; $1$tag$ WHERE id = $1 -- note ?", Kind.UPDATE, "dollar", "t",
         before=f"SELECT {TQ} FROM t WHERE id = $1 FOR UPDATE", params=[5], bound=[5]),
    Case("postgres", "UPDATE t SET b = E'\\'%%s?' WHERE a = ANY(%s)", Kind.UPDATE, "format", "t",
         before=f"SELECT {TQ} FROM t WHERE a = ANY(%s) FOR UPDATE", params=[[1, 2]], bound=[[1, 2]]),
    Case("postgres", "DELETE FROM t x WHERE x.b = %s RETURNING x.id", Kind.DELETE, "format", "t",
         before=f"SELECT {TQ} FROM t AS x WHERE x.b = %s FOR UPDATE", params=["z"], bound=["z"]),
    Case("postgres", "SELECT b FROM t WHERE a > %s ORDER BY id LIMIT 5 FOR UPDATE OF t NOWAIT",
         Kind.SELECT_FOR_UPDATE, "format", "t",
         before='SELECT "id" FROM t WHERE a > %s ORDER BY id LIMIT 5 FOR UPDATE OF t NOWAIT', params=[0], bound=[0]),
    Case("postgres", "INSERT INTO t (id, a) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a",
         Kind.UPSERT, "format", "t", before=f'SELECT {TQ} FROM "public"."t" WHERE ("id" = %s) FOR UPDATE',
         params=[1, 2], bound=[1]),
    Case("postgres", "INSERT INTO t (id, b) VALUES (1, 'x') ON CONFLICT ON CONSTRAINT t_b_key DO NOTHING",
         Kind.UPSERT, None, "t", before=f'SELECT {TQ} FROM "public"."t" WHERE ("b" = \'x\') FOR UPDATE'),
    Case("postgres", "INSERT INTO oi VALUES ($2, $1, 3) ON CONFLICT DO NOTHING", Kind.UPSERT, "dollar", "oi",
         before=f'SELECT {OI} FROM "public"."oi" WHERE ("order_id" = $1 AND "item_id" = $2) FOR UPDATE',
         params=[100, 7], bound=[100, 7]),
    Case("postgres", "SELECT * FROM t FOR SHARE", Kind.SELECT),
    Case("postgres", "UPDATE t SET a = 1 WHERE data ? 'k' AND id = %s", Kind.UPDATE, "format", "t",
         before=f"SELECT {TQ} FROM t WHERE data ? 'k' AND id = %s FOR UPDATE", params=[3], bound=[3]),
    Case("postgres", "SELECT id FROM t ORDER BY id OFFSET 2 FETCH FIRST 1 ROWS ONLY FOR UPDATE SKIP LOCKED",
         Kind.SELECT_FOR_UPDATE, None, "t",
         before='SELECT "id" FROM t ORDER BY id OFFSET 2 FETCH FIRST 1 ROWS ONLY FOR UPDATE SKIP LOCKED'),
    Case("postgres", "WITH x AS (SELECT 1) SELECT * FROM x", Kind.SELECT),
    Case("postgres", "SAVEPOINT s1", Kind.OTHER),
    Case("postgres", "EXPLAIN SELECT 1", Kind.OTHER),
    Case("postgres", "CREATE INDEX i ON t (a)", Kind.DDL),
    Case("postgres", "DROP TABLE IF EXISTS t", Kind.DDL),
    # --- SQLite ------------------------------------------------------------------------------------
    Case("sqlite", "INSERT INTO t (a, b) VALUES (?, ?)", Kind.INSERT, "qmark", "t", keys=KeySource.AUTO_INCREMENT),
    Case("sqlite", "INSERT INTO oi (order_id, item_id) VALUES (:o, :i)", Kind.INSERT, "named", "oi",
         keys=KeySource.VALUES,
         inserted=f'SELECT {OI} FROM "main"."oi" WHERE ("order_id", "item_id") IN ((:o, :i))'),
    Case("sqlite", "UPDATE [t] SET a = ? WHERE id = ? AND b <> '?'", Kind.UPDATE, "qmark", "t",
         before=f"SELECT {TQ} FROM \"t\" WHERE id = ? AND b <> '?'", params=[1, 2], bound=[2]),
    Case("sqlite", "DELETE FROM t WHERE a = :a OR c = :a", Kind.DELETE, "named", "t",
         before=f"SELECT {TQ} FROM t WHERE a = :a OR c = :a", params={"a": 1}, bound={"a": 1}),
    Case("sqlite", "INSERT OR IGNORE INTO t (id, a) VALUES (?, ?)", Kind.UPSERT, "qmark", "t",
         before=f'SELECT {TQ} FROM "main"."t" WHERE ("id" = ?)', params=[1, 2], bound=[1]),
    Case("sqlite", "INSERT INTO t (id, b) VALUES (?, ?) ON CONFLICT (b) DO UPDATE SET a = excluded.a",
         Kind.UPSERT, "qmark", "t", before=f'SELECT {TQ} FROM "main"."t" WHERE ("b" = ?)', params=[1, "b"],
         bound=["b"]),
    Case("sqlite", "PRAGMA foreign_keys = ON", Kind.OTHER),
    Case("sqlite", "BEGIN IMMEDIATE", Kind.OTHER),
]


def _id(case: Case) -> str:
    return f"{case.dialect}:{case.sql[:60]}"


@pytest.mark.parametrize("case", CORPUS, ids=_id)
def test_corpus(case: Case) -> None:
    stmt = recognize(case.sql, case.dialect, case.style)
    assert stmt.kind is case.kind
    assert stmt.intercepted is case.kind.intercepted
    if case.table is None:
        assert stmt.table is None or not stmt.intercepted
        return
    assert stmt.table is not None
    written = stmt.table.name.text if stmt.table.schema is None else f"{stmt.table.schema.text}.{stmt.table.name.text}"
    assert written == case.table
    meta = _meta(case.dialect, stmt.table.name.text)
    check(stmt, meta)
    if case.before is not None:
        query = before_image(stmt, meta)
        assert query is not None
        assert query.sql == case.before
        assert query.bind(case.params) == case.bound
    if case.keys is not None:
        assert insert_keys(stmt, meta) is case.keys
        query = inserted_rows(stmt, meta)
        assert (query.sql if query else None) == case.inserted


def test_values_rows_keep_each_value_and_its_kind() -> None:
    stmt = recognize("INSERT INTO t (id, a, b, c) VALUES (%s, -5, 'it''s', DEFAULT), (NULL, 1.50, x'0aff', now())",
                     "mysql", "format")
    assert [[v.kind for v in row] for row in stmt.rows] == [
        [ValueKind.PARAM, ValueKind.LITERAL, ValueKind.LITERAL, ValueKind.DEFAULT],
        [ValueKind.NULL, ValueKind.LITERAL, ValueKind.LITERAL, ValueKind.EXPRESSION],
    ]
    assert [v.literal for v in stmt.rows[0][1:3]] == [-5, "it's"]
    assert [v.fragment.sql for v in stmt.rows[1]] == ["NULL", "1.50", "x'0aff'", "now()"]
    assert stmt.rows[0][0].param == 0
    assert str(stmt.rows[1][1].literal) == "1.50" and stmt.rows[1][2].literal == b"\x0a\xff"
    assert [n.text for n in stmt.columns or ()] == ["id", "a", "b", "c"]


def test_set_clauses_and_conflict_are_recorded() -> None:
    stmt = recognize("UPDATE t SET a = a + %s, (b, c) = (%s, 1) WHERE id = %s", "postgres", "format")
    assert [[n.text for n in a.columns] for a in stmt.assignments] == [["a"], ["b", "c"]]
    assert [a.value.sql if a.value else None for a in stmt.assignments] == ["a + %s", "(%s, 1)"]
    up = recognize("INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1 WHERE t.a < 5", "postgres")
    assert up.conflict is not None
    assert (up.conflict.style, up.conflict.action, [n.text for n in up.conflict.target]) == ("on_conflict", "update",
                                                                                              ["id"])
    assert [a.columns[0].text for a in up.conflict.assignments] == ["a"]


def test_quoted_schema_qualified_names_and_alias() -> None:
    stmt = recognize('UPDATE "Sales"."Order Lines" AS ol SET qty = 1 WHERE ol.id = 2', "postgres")
    assert stmt.table is not None
    assert stmt.table.stored(stmt.dialect) == ("Sales", "Order Lines")
    assert stmt.table.sql(stmt.dialect) == '"Sales"."Order Lines" AS ol'
    unquoted = recognize("DELETE FROM Sales.Orders WHERE id = 1", "postgres")
    assert unquoted.table is not None and unquoted.table.stored(unquoted.dialect) == ("sales", "orders")
    mysql = recognize("DELETE FROM Sales.Orders WHERE id = 1", "mysql")
    assert mysql.table is not None and mysql.table.stored(mysql.dialect) == ("Sales", "Orders")


def test_returning_is_added_or_extended() -> None:
    meta = _meta("postgres", "t")
    plain = recognize("INSERT INTO t (a) VALUES (%s); ", "postgres", "format")
    assert with_returning(plain, meta) == ('INSERT INTO t (a) VALUES (%s) RETURNING "id"; ', 1)
    own = recognize("INSERT INTO t (a) VALUES (1) RETURNING a, b", "postgres")
    assert with_returning(own, meta) == ('INSERT INTO t (a) VALUES (1) RETURNING "id", a, b', 1)
    with pytest.raises(SQLNotSupportedError, match="mysql has no RETURNING"):
        with_returning(recognize("INSERT INTO t (a) VALUES (1)", "mysql"), _meta("mysql", "t"))


# --- refusals -------------------------------------------------------------------------------------

REFUSED: list[tuple[str, str, str | None, str]] = [
    ("mysql", "UPDATE t JOIN u ON t.id = u.id SET t.a = 1", None, "UPDATE ... JOIN"),
    ("mysql", "UPDATE t, u SET t.a = 1 WHERE t.id = u.id", None, "multi-table UPDATE"),
    ("mysql", "DELETE t, u FROM t JOIN u ON t.id = u.id", None, "multi-table DELETE"),
    ("mysql", "DELETE t FROM t JOIN u ON t.id = u.id WHERE u.x = 1", None, "multi-table DELETE"),
    ("postgres", "UPDATE t SET a = u.a FROM u WHERE t.id = u.id", None, "UPDATE ... FROM"),
    ("postgres", "DELETE FROM t USING u WHERE t.id = u.id", None, "DELETE ... USING"),
    ("mysql", "INSERT INTO t SELECT * FROM u", None, "INSERT ... SELECT"),
    ("postgres", "INSERT INTO t (a) SELECT a FROM u", None, "INSERT ... SELECT"),
    ("sqlite", "INSERT INTO t (a) SELECT a FROM u", None, "INSERT ... SELECT"),
    ("mysql", "UPDATE t SET a = 1; DELETE FROM t", None, "several statements"),
    ("sqlite", "DELETE FROM t; -- done\n SELECT 1", None, "several statements"),
    ("postgres", "UPDATE t SET a = WHERE", None, "cannot parse"),
    ("postgres", "UPDATE t SET a = 1 WHERE CURRENT OF c", None, "cannot parse"),
    ("mysql", "", None, "empty"),
    ("mysql", "/* only a comment */", None, "empty"),
    ("mysql", "FROBNICATE t", None, "FROBNICATE statements are not supported"),
    ("mysql", "REPLACE INTO t VALUES (1)", None, "REPLACE"),
    ("sqlite", "INSERT OR REPLACE INTO t VALUES (1)", None, "INSERT OR REPLACE"),
    ("sqlite", "REPLACE INTO t VALUES (1)", None, "REPLACE"),
    ("sqlite", "INSERT OR FAIL INTO t VALUES (1)", None, "INSERT OR FAIL"),
    ("postgres", "TRUNCATE TABLE t", None, "TRUNCATE"),
    ("postgres", "WITH x AS (SELECT 1) UPDATE t SET a = 1", None, "WITH on UPDATE"),
    ("postgres", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", None, "nested"),
    ("postgres", "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", None, "FOR UPDATE inside"),
    ("mysql", "CALL p(1)", None, "stored procedure"),
    ("postgres", "DO $$ BEGIN DELETE FROM t; END $$", None, "code block"),
    ("postgres", "EXECUTE stmt(1)", None, "prepared statement"),
    ("postgres", "EXPLAIN ANALYZE UPDATE t SET a = 1", None, "EXPLAIN ANALYZE"),
    ("postgres", "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", None, "EXPLAIN ANALYZE"),
    ("postgres", "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", None, "MERGE"),
    ("postgres", "COPY t FROM STDIN", None, "COPY"),
    ("mysql", "LOAD DATA INFILE 'x' INTO TABLE t", None, "LOAD DATA"),
    ("postgres", "SELECT * FROM t JOIN u ON t.id = u.id FOR UPDATE", None, "a join"),
    ("postgres", "SELECT a, count(*) FROM t GROUP BY a FOR UPDATE", None, "GROUP"),
    ("postgres", "SELECT 1 FROM t UNION SELECT 2 FROM u FOR UPDATE", None, "UNION"),
    ("mysql", "UPDATE t SET a = %s WHERE b = %(x)s", "format", "mixed"),
    ("mysql", "UPDATE t SET a = %s WHERE b LIKE 'x%'", "format", "write %% for a literal percent"),
    ("sqlite", "SELECT * FROM t WHERE id = ?1", "qmark", "numbered placeholder"),
    ("postgres", "INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = 2", None,
     "ON DUPLICATE KEY UPDATE is not postgres syntax"),
    ("mysql", "INSERT IGNORE INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = 2", None, "IGNORE together"),
]


@pytest.mark.parametrize(("dialect", "sql", "style", "reason"), REFUSED, ids=[f"{r[0]}:{r[1][:50]}" for r in REFUSED])
def test_refused(dialect: str, sql: str, style: str | None, reason: str) -> None:
    with pytest.raises(SQLNotSupportedError) as info:
        recognize(sql, dialect, style)
    assert reason in info.value.reason
    message = str(info.value)
    assert message.startswith("AT mode cannot run this statement safely: ")
    assert " ".join(sql.split())[:40] in message  # the message quotes the statement


REFUSED_WITH_META: list[tuple[str, str, str | None, str]] = [
    ("mysql", "UPDATE t SET id = 2 WHERE a = 1", None, "updates primary key column 'id'"),
    ("mysql", "UPDATE t SET `ID` = 2 WHERE a = 1", None, "updates primary key column 'id'"),
    ("postgres", "UPDATE oi SET (qty, item_id) = (1, 2)", None, "updates primary key column 'item_id'"),
    ("mysql", "INSERT INTO t (id, a) VALUES (1, 2) ON DUPLICATE KEY UPDATE id = 3", None, "primary key column 'id'"),
    ("postgres", "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id + 1", None,
     "primary key column 'id'"),
    ("mysql", "UPDATE t SET a = 1 ORDER BY a LIMIT 1", None, "LIMIT without an ORDER BY"),
    ("mysql", "DELETE FROM t LIMIT 1", None, "LIMIT without an ORDER BY"),
    ("mysql", "DELETE FROM oi ORDER BY order_id LIMIT 1", None, "LIMIT without an ORDER BY"),
    ("mysql", "SELECT * FROM t WHERE a > 1 LIMIT 1 FOR UPDATE", None, "LIMIT without an ORDER BY"),
    ("postgres", "SELECT * FROM t WHERE a > 1 FETCH FIRST 1 ROWS ONLY FOR UPDATE", None, "LIMIT without an ORDER BY"),
    ("postgres", "SELECT * FROM t OFFSET 3 FOR UPDATE SKIP LOCKED", None, "LIMIT without an ORDER BY"),
    ("mysql", "INSERT INTO t (id, a) VALUES (UUID_SHORT(), 1)", None, "mysql cannot report primary keys"),
    ("mysql", "INSERT INTO t (id, a) VALUES (1, 1), (DEFAULT, 2)", None, "mix of given and generated keys"),
    ("mysql", "INSERT INTO t (id, b) VALUES (%s, CONCAT('x', %s)) ON DUPLICATE KEY UPDATE a = 1", "format",
     "key column 'b' is an expression"),
    ("postgres", "INSERT INTO t (id) VALUES (1) ON CONFLICT (a) DO NOTHING", None, "matches no unique key"),
    ("postgres", "INSERT INTO t (id) VALUES (1) ON CONFLICT ON CONSTRAINT nope DO NOTHING", None,
     "constraint 'nope'"),
    ("postgres", "INSERT INTO oi (order_id, qty) VALUES (1, 2)", None, "primary key column 'item_id' gets no value"),
    ("sqlite", "INSERT INTO t (id, a, nope) VALUES (1, 2, 3)", None, "has no column 'nope'"),
    ("sqlite", "INSERT INTO t VALUES (1, 2, 3, 4, 5)", None, "has 4 columns"),
]


@pytest.mark.parametrize(("dialect", "sql", "style", "reason"), REFUSED_WITH_META,
                         ids=[f"{r[0]}:{r[1][:50]}" for r in REFUSED_WITH_META])
def test_refused_with_metadata(dialect: str, sql: str, style: str | None, reason: str) -> None:
    stmt = recognize(sql, dialect, style)
    assert stmt.table is not None
    with pytest.raises(SQLNotSupportedError) as info:
        check(stmt, _meta(dialect, stmt.table.name.text))
    assert reason in info.value.reason
