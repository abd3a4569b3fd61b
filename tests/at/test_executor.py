"""AT phase one and two end to end on real SQLite, PostgreSQL and MariaDB with a real TC:
INSERT, UPDATE, DELETE, multi-row and composite keys, committed and rolled back."""

from __future__ import annotations

from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import ATConnection, DataSource, SQLNotSupportedError

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import RunningTc, create_accounts, data_source, undo_rows, wait_until

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


class RollMeBackError(Exception):
    pass


def rows(db: Db, sql: str = "SELECT id, owner, balance FROM account ORDER BY id") -> list[tuple[Any, ...]]:
    return db.run(sql)


def seed(db: Db) -> DataSource:
    create_accounts(db)
    p = db.p
    for i, (owner, balance) in enumerate([("ann", 100), ("bob", 50), ("cy", 7)], start=1):
        db.run(f"INSERT INTO account (id, owner, balance) VALUES ({p}, {p}, {p})", (i, owner, balance))
    return data_source(db)


def business(conn: ATConnection, p: str) -> None:
    cur = conn.cursor()
    cur.execute(f"UPDATE account SET balance = balance - {p} WHERE id = {p}", (10, 1))
    assert cur.rowcount == 1
    cur.execute(f"INSERT INTO account (id, owner, balance) VALUES ({p}, {p}, {p}), ({p}, {p}, {p})",
                (4, "dee", 1, 5, "eve", 2))
    assert cur.rowcount == 2
    cur.execute(f"DELETE FROM account WHERE owner = {p}", ("bob",))
    assert cur.rowcount == 1
    conn.commit()


def test_commit_keeps_changes_and_deletes_undo_logs(db: Db, runtime: seata.ClientRuntime, tc: RunningTc) -> None:
    ds = seed(db)
    conn = ds.connect()
    before = rows(db)
    with seata.global_transaction(name="at-commit") as tx:
        business(conn, db.p)
        assert undo_rows(db) == 1
    assert rows(db) != before
    assert [r[0] for r in rows(db)] == [1, 3, 4, 5]
    wait_until(lambda: undo_rows(db) == 0, "the committed branch's undo log is deleted")
    assert tc.status(tx.xid) is None
    conn.close()


def test_rollback_restores_before_images(db: Db, runtime: seata.ClientRuntime, tc: RunningTc) -> None:
    ds = seed(db)
    conn = ds.connect()
    before = rows(db)
    with pytest.raises(RollMeBackError), seata.global_transaction(name="at-rollback") as tx:
        business(conn, db.p)
        assert rows(db) != before
        raise RollMeBackError
    assert rows(db) == before
    assert undo_rows(db) == 0
    assert tc.status(tx.xid) is None
    conn.close()


def test_local_rollback_reaches_no_tc(db: Db, runtime: seata.ClientRuntime, tc: RunningTc) -> None:
    ds = seed(db)
    conn = ds.connect()
    before = rows(db)
    with seata.global_transaction(name="at-local-rollback") as tx:
        cur = conn.cursor()
        cur.execute(f"UPDATE account SET owner = {db.p} WHERE id = {db.p}", ("zed", 2))
        conn.rollback()
        branches = tc.thread.run(tc.coordinator.store.get_branches(tx.xid))
        assert branches == []
    assert rows(db) == before
    assert undo_rows(db) == 0
    conn.close()


# --- statement shapes -------------------------------------------------------------------------------------

AUTO_KEY = {
    "sqlite": "id INTEGER PRIMARY KEY",
    "postgres": "id SERIAL PRIMARY KEY",
    "mariadb": "id INT AUTO_INCREMENT PRIMARY KEY",
}


def roundtrip(db: Db, ds: DataSource, work: Any, table_sql: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(rows before, rows after a committed run of ``work``, rows after a rolled-back run)."""
    conn = ds.connect()
    start = rows(db, table_sql)
    with seata.global_transaction(name="at-shape"):
        work(conn)
        conn.commit()
    committed = rows(db, table_sql)
    with pytest.raises(RollMeBackError), seata.global_transaction(name="at-shape-rollback"):
        work(conn)
        conn.commit()
        assert rows(db, table_sql) != committed
        raise RollMeBackError
    assert rows(db, table_sql) == committed
    conn.close()
    return start, committed, rows(db, table_sql)


def test_composite_keys(db: Db, runtime: seata.ClientRuntime) -> None:
    t = "VARCHAR(16)"
    db.run(f"CREATE TABLE order_line (order_id {t} NOT NULL, line INTEGER NOT NULL, sku {t}, qty INTEGER, "
           "PRIMARY KEY (order_id, line))")
    p = db.p
    db.run(f"INSERT INTO order_line VALUES ({p}, {p}, {p}, {p})", ("A", 1, "x", 1))
    ds = data_source(db)
    counter = iter(range(2, 100))

    def work(conn: ATConnection) -> None:
        n = next(counter)
        cur = conn.cursor()
        cur.execute(f"INSERT INTO order_line VALUES ({p}, {p}, {p}, {p}), ({p}, {p}, {p}, {p})",
                    ("A", n * 10, "y", 2, "B", n, "z", 3))
        cur.execute(f"UPDATE order_line SET qty = qty + 1 WHERE order_id = {p}", ("A",))
        cur.execute(f"DELETE FROM order_line WHERE order_id = {p} AND line = {p}", ("A", 1))

    _start, committed, _ = roundtrip(db, ds, work, "SELECT * FROM order_line ORDER BY order_id, line")
    assert ("A", 1, "x", 1) not in committed
    assert ("A", 20, "y", 3) in committed


def test_generated_keys_multi_row(db: Db, runtime: seata.ClientRuntime) -> None:
    db.run(f"CREATE TABLE item ({AUTO_KEY[db.kind]}, name VARCHAR(32) NOT NULL)")
    ds = data_source(db)

    def work(conn: ATConnection) -> None:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO item (name) VALUES ({db.p}), ({db.p}), ({db.p})", ("a", "b", "c"))
        assert cur.rowcount == 3

    _, committed, _ = roundtrip(db, ds, work, "SELECT id, name FROM item ORDER BY id")
    assert [r[1] for r in committed] == ["a", "b", "c"]


def test_mysql_dialect_numbers_rows_from_lastrowid(make_db: Any, runtime: seata.ClientRuntime) -> None:
    """MySQL has no RETURNING: keys are lastrowid + i * @@auto_increment_increment (here on MariaDB
    driven as MySQL), after images selected back."""
    db = make_db("mariadb")
    db.run("CREATE TABLE item (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) NOT NULL)")
    db.run("INSERT INTO item (name) VALUES ('old')")
    ds = data_source(db, dialect="mysql")

    def work(conn: ATConnection) -> None:
        cur = conn.cursor()
        cur.execute("INSERT INTO item (name) VALUES (%s), (%s)", ("a", "b"))
        cur.execute("INSERT INTO item (id, name) VALUES (%s, %s)", (1000 + cur.lastrowid, "given"))
        cur.execute("UPDATE item SET name = CONCAT(name, '!') WHERE name = %s", ("old",))

    start, committed, _ = roundtrip(db, ds, work, "SELECT id, name FROM item ORDER BY id")
    assert [r[1] for r in committed] == ["old!", "a", "b", "given"]
    assert len(start) == 1


UPSERTS = {
    "sqlite": "INSERT INTO stock (sku, qty) VALUES (?, ?), (?, ?) ON CONFLICT (sku) DO UPDATE SET qty = stock.qty + "
              "excluded.qty",
    "postgres": "INSERT INTO stock (sku, qty) VALUES (%s, %s), (%s, %s) ON CONFLICT (sku) DO UPDATE SET qty = "
                "stock.qty + excluded.qty",
    "mariadb": "INSERT INTO stock (sku, qty) VALUES (%s, %s), (%s, %s) ON DUPLICATE KEY UPDATE qty = qty + "
               "VALUES(qty)",
}


def test_upsert_updates_and_inserts(db: Db, runtime: seata.ClientRuntime) -> None:
    db.run(f"CREATE TABLE stock ({AUTO_KEY[db.kind]}, sku VARCHAR(16) NOT NULL UNIQUE, qty INTEGER NOT NULL)")
    db.run(f"INSERT INTO stock (sku, qty) VALUES ({db.p}, {db.p})", ("old", 5))
    ds = data_source(db)
    fresh = iter(range(100))

    def work(conn: ATConnection) -> None:
        conn.cursor().execute(UPSERTS[db.kind], ("old", 1, f"new{next(fresh)}", 7))

    start, committed, _ = roundtrip(db, ds, work, "SELECT sku, qty FROM stock ORDER BY sku")
    assert start == [("old", 5)]
    assert committed == [("new0", 7), ("old", 6)]


IGNORES = {
    "sqlite": "INSERT OR IGNORE INTO stock (sku, qty) VALUES (?, ?), (?, ?)",
    "postgres": "INSERT INTO stock (sku, qty) VALUES (%s, %s), (%s, %s) ON CONFLICT DO NOTHING",
    "mariadb": "INSERT IGNORE INTO stock (sku, qty) VALUES (%s, %s), (%s, %s)",
}


def test_insert_ignoring_conflicts(db: Db, runtime: seata.ClientRuntime) -> None:
    db.run(f"CREATE TABLE stock ({AUTO_KEY[db.kind]}, sku VARCHAR(16) NOT NULL UNIQUE, qty INTEGER NOT NULL)")
    db.run(f"INSERT INTO stock (sku, qty) VALUES ({db.p}, {db.p})", ("old", 5))
    ds = data_source(db)
    fresh = iter(range(100))

    def work(conn: ATConnection) -> None:
        conn.cursor().execute(IGNORES[db.kind], ("old", 1, f"new{next(fresh)}", 7))

    _start, committed, _ = roundtrip(db, ds, work, "SELECT sku, qty FROM stock ORDER BY sku")
    assert committed == [("new0", 7), ("old", 5)]


def test_callers_returning_and_named_parameters(make_db: Any, runtime: seata.ClientRuntime) -> None:
    for kind, named in (("sqlite", ":v, :k"), ("postgres", "%(v)s, %(k)s")):
        db = make_db(kind)
        create_accounts(db)
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", (1, "ann", 10))
        conn = data_source(db).connect()
        value, key = named.split(", ")
        with seata.global_transaction():
            cur = conn.cursor()
            cur.execute(f"UPDATE account SET balance = {value} WHERE id = {key} RETURNING owner", {"v": 3, "k": 1})
            assert cur.fetchall() == [("ann",)]
            assert [d[0] for d in cur.description] == ["owner"]
            assert cur.rowcount == 1
            conn.commit()
        assert db.run("SELECT balance FROM account") == [(3,)]
        conn.close()


def test_autocommit_connection_commits_each_statement(db: Db, runtime: seata.ClientRuntime) -> None:
    ds = seed(db)
    raw = ds.connect().raw
    autocommit = {"sqlite": ("isolation_level", None), "postgres": ("autocommit", True)}
    if db.kind == "mariadb":
        raw.autocommit(True)
    else:
        setattr(raw, *autocommit[db.kind])
    conn = ds.wrap(raw)
    with pytest.raises(RollMeBackError), seata.global_transaction():
        conn.cursor().execute(f"UPDATE account SET balance = 0 WHERE id = {db.p}", (1,))
        assert db.run("SELECT balance FROM account WHERE id = 1") == [(0,)]  # committed locally already
        assert undo_rows(db) == 1
        raise RollMeBackError
    assert db.run("SELECT balance FROM account WHERE id = 1") == [(100,)]
    assert (raw.get_autocommit() if db.kind == "mariadb" else getattr(raw, autocommit[db.kind][0])) == \
        autocommit.get(db.kind, ("", True))[1]
    conn.close()


def test_refused_statement_never_runs(db: Db, runtime: seata.ClientRuntime) -> None:
    ds = seed(db)
    conn = ds.connect()
    with pytest.raises(RollMeBackError), seata.global_transaction():
        cur = conn.cursor()
        with pytest.raises(SQLNotSupportedError, match="primary key"):
            cur.execute(f"UPDATE account SET id = 9 WHERE id = {db.p}", (1,))
        with pytest.raises(SQLNotSupportedError):
            cur.execute("INSERT INTO account SELECT * FROM account")
        conn.commit()
        raise RollMeBackError
    assert [r[0] for r in rows(db)] == [1, 2, 3]
    conn.close()


def test_outside_a_global_transaction_the_proxy_is_transparent(db: Db) -> None:
    ds = seed(db)
    conn = ds.connect()
    cur = conn.cursor()
    cur.execute(f"UPDATE account SET balance = balance + 1 WHERE id = {db.p}", (1,))
    assert cur.rowcount == 1
    conn.commit()
    assert undo_rows(db) == 0
    assert conn.context.undo_items == []
    assert rows(db)[0] == (1, "ann", 101)
    conn.close()


def test_savepoint_rollback_forgets_later_undo_items(make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db("postgres")
    ds = seed(db)
    conn = ds.connect()
    with pytest.raises(RollMeBackError), seata.global_transaction():
        cur = conn.cursor()
        cur.execute("UPDATE account SET balance = 1 WHERE id = 1")
        cur.execute("SAVEPOINT s1")
        cur.execute("UPDATE account SET balance = 2 WHERE id = 2")
        assert len(conn.context.undo_items) == 2
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        assert len(conn.context.undo_items) == 1
        assert conn.context.lock_key().endswith("account:1")
        conn.commit()
        assert [r[2] for r in rows(db)] == [1, 50, 7]
        raise RollMeBackError
    assert [r[2] for r in rows(db)] == [100, 50, 7]
    conn.close()


def test_commit_as_sql_goes_through_the_proxy(make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db("mariadb")
    ds = seed(db)
    conn = ds.connect()
    with pytest.raises(RollMeBackError), seata.global_transaction():
        cur = conn.cursor()
        cur.execute("UPDATE account SET balance = 1 WHERE id = 1")
        cur.execute("COMMIT")
        assert undo_rows(db) == 1
        raise RollMeBackError
    assert [r[2] for r in rows(db)] == [100, 50, 7]
    conn.close()
