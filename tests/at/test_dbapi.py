"""The DB-API proxy: ``pyseata.at.connect`` around raw connections, cursor semantics inside and
outside global transactions, executemany, and clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import ATError, DataSource, SQLNotSupportedError, connect
from pyseata.at.resource import registered_data_source

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import create_accounts, data_source, factory, undo_rows

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


class RollMeBackError(Exception):
    pass


def seed(db: Db) -> None:
    create_accounts(db)
    for i in range(1, 4):
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", (i, f"o{i}", i * 10))


def test_connect_wraps_a_raw_connection_and_declares_its_resource(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db)
    raw = factory(db)()
    conn = connect(raw, resource_id=f"raw-{db.kind}-{db.namespace}")
    source = registered_data_source(f"raw-{db.kind}-{db.namespace}")
    assert source is conn.data_source and source is not None
    source.create_undo_log_table()
    assert connect(factory(db)(), resource_id=source.resource_id).data_source is source  # the same resource
    with pytest.raises(RollMeBackError), seata.global_transaction():
        conn.cursor().execute("UPDATE account SET balance = 0")
        conn.commit()
        raise RollMeBackError
    # Phase two ran on a connection the resource opened like the raw one (same file, server, options).
    assert db.run("SELECT balance FROM account ORDER BY id") == [(10,), (20,), (30,)]
    conn.close()


def test_default_resource_id_names_the_database(db: Db) -> None:
    raw = factory(db)()
    conn = connect(raw)
    rid = conn.data_source.resource_id
    assert rid.startswith({"sqlite": "sqlite:", "postgres": "postgresql://", "mariadb": "mysql://"}[db.kind])
    conn.close()


def test_cursor_results_inside_a_global_transaction(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db)
    conn = data_source(db).connect()
    with seata.global_transaction():
        cur = conn.cursor()
        cur.execute(f"DELETE FROM account WHERE id > {db.p}", (1,))
        assert cur.rowcount == 2
        assert cur.description is None
        cur.execute("SELECT id FROM account ORDER BY id")  # not covered: the driver's own result
        assert cur.fetchall() == [(1,)]
        cur.executemany(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", [(7, "x", 1), (8, "y", 2)])
        assert cur.rowcount == 2
        assert len(conn.context.undo_items) == 2  # the DELETE, and the INSERT batch as one item
        conn.commit()
    assert db.run("SELECT id FROM account ORDER BY id") == [(1,), (7,), (8,)]
    conn.close()


def test_returning_rows_fetch_one_by_one(make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db("postgres")
    seed(db)
    conn = data_source(db).connect()
    with seata.global_transaction():
        cur = conn.cursor()
        cur.execute("UPDATE account SET balance = balance + 1 RETURNING id, balance")
        first = cur.fetchone()
        assert first is not None and len(first) == 2
        assert len(cur.fetchmany(1)) == 1
        assert len(list(cur)) == 1  # three rows in all
        assert cur.fetchone() is None
        assert cur.fetchall() == []
        conn.commit()
    conn.close()


def test_execute_returns_what_the_driver_returns(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db)
    conn = data_source(db).connect()
    cur = conn.cursor()
    outside = cur.execute(f"UPDATE account SET balance = 1 WHERE id = {db.p}", (1,))
    with seata.global_transaction():
        inside = cur.execute(f"UPDATE account SET balance = 2 WHERE id = {db.p}", (1,))
        conn.commit()
    if db.kind == "mariadb":  # PyMySQL returns the row count
        assert outside == inside == 1
    else:
        assert outside is cur and inside is cur
    conn.close()


def test_one_local_transaction_belongs_to_one_global_transaction(make_db: Any,
                                                                runtime: seata.ClientRuntime) -> None:
    db = make_db("sqlite")
    seed(db)
    conn = data_source(db).connect()
    with seata.global_transaction():
        conn.cursor().execute("UPDATE account SET balance = 5 WHERE id = 1")
        with seata.global_transaction(propagation=seata.Propagation.REQUIRES_NEW), \
                pytest.raises(ATError, match="commit or roll back the local transaction first"):
            conn.cursor().execute("UPDATE account SET balance = 6 WHERE id = 2")
        conn.rollback()
    assert undo_rows(db) == 0
    conn.close()


def test_unknown_drivers_and_memory_databases_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not know the driver"):
        connect(object())
    memory = sqlite3.connect(":memory:")
    with pytest.raises(ValueError, match="in-memory SQLite"):
        connect(memory)
    memory.close()


def test_connection_attributes_reach_the_driver(make_db: Any) -> None:
    db = make_db("postgres")
    conn = DataSource(factory(db), resource_id="attrs", register=False).connect()
    conn.autocommit = True
    assert conn.raw.autocommit is True
    assert conn.info.dbname == "test"
    with conn:
        conn.execute("SELECT 1")
    assert conn.raw.closed


def test_driver_shortcuts_that_bypass_the_cursor_are_refused_inside(make_db: Any,
                                                                    runtime: seata.ClientRuntime) -> None:
    db = make_db("sqlite")
    seed(db)
    conn = data_source(db).connect()
    with seata.global_transaction():
        with pytest.raises(SQLNotSupportedError, match="executescript"):
            conn.executescript("DELETE FROM account;")
        with pytest.raises(SQLNotSupportedError, match="executescript"):
            conn.cursor().executescript("DELETE FROM account;")
        conn.executemany("UPDATE account SET balance = ? WHERE id = ?", [(0, 1), (0, 2)])
        assert len(conn.context.undo_items) == 1  # covered, one item for the batch
        conn.rollback()
    conn.executescript("UPDATE account SET owner = 'x';")  # outside: the driver's own
    assert db.run("SELECT DISTINCT owner FROM account") == [("x",)]
    conn.close()
