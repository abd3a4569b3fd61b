"""Columns the database fills by itself, through a real AT rollback: PostgreSQL ``GENERATED ALWAYS
AS IDENTITY`` (the undo INSERT of a deleted row needs ``OVERRIDING SYSTEM VALUE``), and generated
(computed) columns on all three databases, which no undo INSERT or UPDATE may write."""

from __future__ import annotations

from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import SQLNotSupportedError
from pyseata.client.context import bound

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import data_source, undo_rows

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures

DDL = {
    # seq: an identity that is not the key; doubled: computed, stored.
    "postgres": "CREATE TABLE item (id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "seq BIGINT GENERATED ALWAYS AS IDENTITY (START WITH 100), name TEXT NOT NULL, qty INT NOT NULL, "
                "doubled INT GENERATED ALWAYS AS (qty * 2) STORED)",
    "mariadb": "CREATE TABLE item (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL, qty INT NOT NULL, "
               "doubled INT AS (qty * 2) VIRTUAL, tripled INT AS (qty * 3) STORED)",
    "sqlite": "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INT NOT NULL, "
              "doubled INT GENERATED ALWAYS AS (qty * 2) VIRTUAL, tripled INT GENERATED ALWAYS AS (qty * 3) STORED)",
}

STATEMENTS = {
    "delete": ["DELETE FROM item WHERE id = 1"],
    "update": ["UPDATE item SET qty = 40, name = 'changed' WHERE id = 2"],
    "insert": ["INSERT INTO item (name, qty) VALUES ('new', 7)"],
    "all": ["DELETE FROM item WHERE id = 1", "UPDATE item SET qty = 40 WHERE id = 2",
            "INSERT INTO item (name, qty) VALUES ('new', 7)", "DELETE FROM item WHERE id = 2"],
}


def items(db: Db) -> list[tuple[Any, ...]]:
    return db.run("SELECT * FROM item ORDER BY id")


@pytest.mark.parametrize("what", sorted(STATEMENTS))
def test_rollback_restores_rows_with_database_filled_columns(db: Db, what: str, runtime: seata.ClientRuntime) -> None:
    db.run(DDL[db.kind])
    db.run("INSERT INTO item (name, qty) VALUES ('a', 1), ('b', 2)")
    ds = data_source(db)
    seeded = items(db)
    assert [row[-1] for row in seeded] == ([2, 4] if db.kind == "postgres" else [3, 6])  # computed by the database
    conn = ds.connect()
    tx = seata.begin(name=f"identity-{what}")
    with bound(tx.xid):
        cur = conn.cursor()
        for sql in STATEMENTS[what]:
            cur.execute(sql)
        conn.commit()
    assert items(db) != seeded
    tx.rollback()
    assert items(db) == seeded  # the same ids, identity numbers and computed values
    assert undo_rows(db) == 0
    conn.close()


def test_an_update_of_an_always_identity_is_refused(make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db("postgres")
    db.run(DDL["postgres"])
    db.run("INSERT INTO item (name, qty) VALUES ('a', 1)")
    ds = data_source(db)
    seeded = items(db)
    conn = ds.connect()
    with seata.global_transaction():
        with pytest.raises(SQLNotSupportedError, match="identity column 'seq'"):
            conn.cursor().execute("UPDATE item SET seq = DEFAULT WHERE id = 1")  # a new number: no undo for it
        conn.rollback()
    assert items(db) == seeded
    conn.close()


def test_phase_one_insert_overriding_the_identity_rolls_back(make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db("postgres")
    db.run(DDL["postgres"])
    ds = data_source(db)
    conn = ds.connect()
    tx = seata.begin()
    with bound(tx.xid):
        conn.cursor().execute("INSERT INTO item (id, name, qty) OVERRIDING SYSTEM VALUE VALUES (%s, 'x', 1)", (50,))
        conn.commit()
    assert [row[0] for row in items(db)] == [50]
    tx.rollback()
    assert items(db) == []
    conn.close()


def test_overriding_user_value_is_refused() -> None:
    from pyseata.at.recognizer import recognize

    recognize("INSERT INTO item (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'x')", "postgres")
    with pytest.raises(SQLNotSupportedError, match="OVERRIDING USER VALUE"):
        recognize("INSERT INTO item (id, name) OVERRIDING USER VALUE VALUES (1, 'x')", "postgres")
